//! Relations: the children of an event (`/v1/rooms/{roomId}/relations/{eventId}[/{relType}
//! [/{eventType}]]`, paginated either way and optionally recursive), the threads of a room
//! (`/v1/rooms/{roomId}/threads`, latest activity first), and the checks a new relation must
//! pass (same room; no thread rooted at a relation).

use tokio_postgres::types::ToSql;
use trellis_core::{Error, Result, StreamToken};
use trellis_proto::rooms::{GetRelationsRequest, GetRelationsResponse, GetThreadsRequest, GetThreadsResponse};
use trellis_storage::events::{COLUMNS, EventRow, Viewer};

use crate::{Rooms, access::Access};

/// How deep `recurse=true` follows relations of relations (the spec asks for at least 3).
const RECURSION_DEPTH: i32 = 3;
const DEFAULT_LIMIT: u32 = 5;
const MAX_LIMIT: u32 = 1000;

const SELECT_PARENT: &str = "SELECT room_id FROM events WHERE event_id = $1";
const SELECT_PARENT_RELATION: &str = "SELECT 1 FROM event_relations WHERE event_id = $1";

impl Rooms {
    /// Refuses a relation the server would not aggregate sensibly: to an event of another
    /// room, or a thread whose root is itself a relation (like Synapse).
    pub(crate) async fn check_relation(&self, room_id: &str, relation: Option<(String, String)>) -> Result<()> {
        let Some((rel_type, parent)) = relation else { return Ok(()) };
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_PARENT).await?;
        if let Some(row) = client.query_opt(&stmt, &[&parent]).await?
            && row.get::<_, &str>(0) != room_id
        {
            return Err(Error::invalid_param("Relations must be in the same room"));
        }
        if rel_type == "m.thread" {
            let stmt = client.prepare_cached(SELECT_PARENT_RELATION).await?;
            if client.query_opt(&stmt, &[&parent]).await?.is_some() {
                return Err(Error::invalid_param("Cannot start threads from an event with a relation"));
            }
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(user = %req.user_id, room_id = %req.room_id, event_id = %req.event_id))]
    pub(crate) async fn get_relations(&self, req: GetRelationsRequest) -> Result<GetRelationsResponse> {
        let client = self.pool.get().await?;
        let access = Access::load(&client, &req.user_id, &req.room_id).await?;
        let sql = format!("SELECT {COLUMNS} FROM events WHERE event_id = $1 AND room_id = $2");
        let parent = client.query_opt(&client.prepare_cached(&sql).await?, &[&req.event_id, &req.room_id]).await?;
        if !parent.map(|r| EventRow::from_row(&r)).is_some_and(|p| access.sees(&p)) {
            return Err(Error::not_found("Event not found"));
        }
        let parse = |t: &str| t.parse::<StreamToken>().map(|t| t.events);
        let from = req.from.as_deref().filter(|f| !f.is_empty()).map(parse).transpose()?;
        let to = req.to.as_deref().filter(|t| !t.is_empty()).map(parse).transpose()?;
        let limit = i64::from(if req.limit == 0 { DEFAULT_LIMIT } else { req.limit.min(MAX_LIMIT) });
        let ceiling = access.upper(self.announced_position());
        let (lower, upper, order) = if req.forwards {
            (from.unwrap_or(0), to.map_or(ceiling, |t| t.min(ceiling)), "ASC")
        } else {
            (to.unwrap_or(0), from.map_or(ceiling, |f| f.min(ceiling)), "DESC")
        };
        let depth = if req.recurse { RECURSION_DEPTH } else { 1 };
        let sql = format!(
            "WITH RECURSIVE rel(event_id, depth) AS ( \
               SELECT event_id, 1 FROM event_relations WHERE relates_to = $1 \
               UNION ALL SELECT r.event_id, rel.depth + 1 FROM event_relations r \
                 JOIN rel ON r.relates_to = rel.event_id WHERE rel.depth < $2) \
             SELECT {COLUMNS} FROM events WHERE room_id = $3 AND pos > $4 AND pos <= $5 AND event_id IN \
               (SELECT r.event_id FROM event_relations r JOIN rel ON rel.event_id = r.event_id \
                WHERE ($6::text IS NULL OR r.rel_type = $6) AND ($7::text IS NULL OR r.type = $7)) \
             ORDER BY pos {order} LIMIT $8"
        );
        let args: [&(dyn ToSql + Sync); 8] =
            [&req.event_id, &depth, &req.room_id, &lower, &upper, &req.rel_type, &req.event_type, &limit];
        let rows: Vec<EventRow> =
            client.query(&client.prepare_cached(&sql).await?, &args).await?.iter().map(EventRow::from_row).collect();
        let next_batch = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|r| StreamToken::new(if req.forwards { r.pos } else { r.pos - 1 }).to_string()))
            .flatten();
        let viewer = Viewer { user_id: &req.user_id, device_id: &req.device_id };
        Ok(GetRelationsResponse {
            chunk_json: access.serve(&client, viewer, rows).await?,
            next_batch,
            prev_batch: req.from.filter(|f| !f.is_empty()),
            recursion_depth: req.recurse.then_some(RECURSION_DEPTH as u32),
        })
    }

    #[tracing::instrument(skip_all, fields(user = %req.user_id, room_id = %req.room_id))]
    pub(crate) async fn get_threads(&self, req: GetThreadsRequest) -> Result<GetThreadsResponse> {
        let client = self.pool.get().await?;
        let access = Access::load(&client, &req.user_id, &req.room_id).await?;
        let from = req.from.as_deref().filter(|f| !f.is_empty()).map(|t| t.parse::<StreamToken>()).transpose()?;
        let upper = access.upper(self.announced_position());
        let upper = from.map_or(upper, |f| f.events.min(upper));
        let limit = i64::from(if req.limit == 0 { DEFAULT_LIMIT } else { req.limit.min(MAX_LIMIT) });
        // Threads the user participated in: they sent the root or a reply.
        let participated = if req.participated {
            " AND (e.sender = $4 OR EXISTS (SELECT 1 FROM event_relations r WHERE r.relates_to = t.root_id \
               AND r.rel_type = 'm.thread' AND r.sender = $4))"
        } else {
            " AND $4::text IS NOT NULL"
        };
        let sql = format!(
            "SELECT t.latest_pos, {} FROM threads t JOIN events e ON e.event_id = t.root_id \
             WHERE t.room_id = $1 AND t.latest_pos <= $2{participated} ORDER BY t.latest_pos DESC LIMIT $3",
            COLUMNS.split(", ").map(|c| format!("e.{}", c.trim())).collect::<Vec<_>>().join(", ")
        );
        let stmt = client.prepare_cached(&sql).await?;
        let found = client.query(&stmt, &[&req.room_id, &upper, &limit, &req.user_id]).await?;
        let next_batch = (found.len() as i64 == limit)
            .then(|| found.last().map(|r| StreamToken::new(r.get::<_, i64>(0) - 1).to_string()))
            .flatten();
        // The event columns follow the thread's position.
        let rows: Vec<EventRow> = found.iter().map(|r| EventRow::from_row_at(r, 1)).collect();
        let viewer = Viewer { user_id: &req.user_id, device_id: &req.device_id };
        Ok(GetThreadsResponse { chunk_json: access.serve(&client, viewer, rows).await?, next_batch })
    }
}
