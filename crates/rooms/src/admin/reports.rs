//! Event reports for the server's admins: the reports of events users made
//! (`POST /rooms/{roomId}/report/{eventId}`, kept in `content_reports`), listed newest first
//! by default, one in detail with the reported event, and deleted once dealt with.

use trellis_core::{Error, Result, time::now_ms};
use trellis_proto::rooms::{
    AdminEventReportEntry, AdminEventReportList, AdminEventReportRequest, AdminListEventReportsRequest, Empty,
};
use trellis_storage::events::{COLUMNS, EventRow, Format};

use crate::Rooms;

const MAX_LIMIT: i64 = 1000;

/// A report with its event's sender and its room's name and canonical alias (`$1`.. are the
/// filters the callers add).
const SELECT: &str = "SELECT c.id, c.received_ts, c.room_id, c.event_id, c.reporter, c.reason, \
       (SELECT e.sender FROM events e WHERE e.event_id = c.event_id) AS sender, \
       (SELECT trellis_jsonb(e.content)->>'name' FROM current_state s JOIN events e ON e.event_id = s.event_id \
          WHERE s.room_id = c.room_id AND s.type = 'm.room.name' AND s.state_key = '') AS name, \
       (SELECT trellis_jsonb(e.content)->>'alias' FROM current_state s JOIN events e ON e.event_id = s.event_id \
          WHERE s.room_id = c.room_id AND s.type = 'm.room.canonical_alias' AND s.state_key = '') AS alias \
     FROM content_reports c";
const FILTER: &str = " WHERE c.event_id IS NOT NULL AND ($1::text IS NULL OR c.room_id = $1) \
     AND ($2::text IS NULL OR c.reporter = $2)";
const DELETE: &str = "DELETE FROM content_reports WHERE id = $1 AND event_id IS NOT NULL";

fn entry(r: &tokio_postgres::Row) -> AdminEventReportEntry {
    AdminEventReportEntry {
        id: r.get("id"),
        received_ts: r.get("received_ts"),
        room_id: r.get("room_id"),
        event_id: r.get("event_id"),
        user_id: r.get("reporter"),
        reason: r.get("reason"),
        sender: r.get("sender"),
        name: r.get("name"),
        canonical_alias: r.get("alias"),
        event_json: None,
    }
}

impl Rooms {
    pub(crate) async fn admin_list_event_reports(
        &self,
        req: AdminListEventReportsRequest,
    ) -> Result<AdminEventReportList> {
        if req.from < 0 || req.limit < 0 {
            return Err(Error::invalid_param("from and limit must not be negative"));
        }
        let client = self.pool.get().await?;
        let filters: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&req.room_id, &req.user_id];
        let total: i64 =
            client.query_one(&format!("SELECT count(*) FROM content_reports c{FILTER}"), &filters).await?.get(0);
        let dir = if req.backwards { "DESC" } else { "ASC" };
        let sql = format!("{SELECT}{FILTER} ORDER BY c.received_ts {dir}, c.id {dir} LIMIT $3 OFFSET $4");
        let limit = req.limit.min(MAX_LIMIT);
        let rows = client.query(&sql, &[&req.room_id, &req.user_id, &limit, &req.from]).await?;
        Ok(AdminEventReportList { reports: rows.iter().map(entry).collect(), total })
    }

    /// One report with its event (`M_NOT_FOUND` for an unknown ID).
    pub(crate) async fn admin_event_report(&self, req: AdminEventReportRequest) -> Result<AdminEventReportEntry> {
        let client = self.pool.get().await?;
        let sql = format!("{SELECT} WHERE c.id = $1 AND c.event_id IS NOT NULL");
        let row =
            client.query_opt(&sql, &[&req.id]).await?.ok_or_else(|| Error::not_found("Event report not found"))?;
        let mut report = entry(&row);
        let event = format!("SELECT {COLUMNS} FROM events WHERE event_id = $1");
        if let Some(row) = client.query_opt(&event, &[&report.event_id]).await? {
            report.event_json = Some(EventRow::from_row(&row).render(None, Format::Client, now_ms()));
        }
        Ok(report)
    }

    pub(crate) async fn admin_delete_event_report(&self, req: AdminEventReportRequest) -> Result<Empty> {
        let client = self.pool.get().await?;
        if client.execute(DELETE, &[&req.id]).await? == 0 {
            return Err(Error::not_found("Event report not found"));
        }
        tracing::info!(report = req.id, "event report deleted");
        Ok(Empty {})
    }
}
