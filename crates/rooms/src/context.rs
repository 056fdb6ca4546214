//! One event (`/rooms/{roomId}/event/{eventId}`) and the context around it
//! (`/rooms/{roomId}/context/{eventId}`): what the user may see, with bundled aggregations.

use ruma::api::client::filter::LazyLoadOptions;
use tokio_postgres::types::ToSql;
use trellis_core::{Error, ErrorCode, Result, StreamToken, time::now_ms};
use trellis_proto::rooms::{EventResponse, GetContextRequest, GetContextResponse, GetEventRequest};
use trellis_storage::{
    events::{COLUMNS, EventRow, Format, Viewer},
    filter::glob_match,
};

use crate::{
    Rooms,
    access::Access,
    read::{members_of, parse_filter, state_at},
};

/// Largest context `limit`, like `/messages`.
const MAX_CONTEXT: u32 = 1000;

impl Rooms {
    /// The event `event_id` of `room` if `access` lets the user see it; `M_NOT_FOUND` otherwise,
    /// whether it does not exist or is hidden (spec: 404 for both).
    async fn visible_event(
        &self,
        client: &deadpool_postgres::Client,
        access: &Access,
        room: &str,
        event_id: &str,
    ) -> Result<EventRow> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE event_id = $1 AND room_id = $2");
        let row = client.query_opt(&client.prepare_cached(&sql).await?, &[&event_id, &room]).await?;
        row.map(|r| EventRow::from_row(&r))
            .filter(|r| r.pos <= self.announced_position() && access.sees(r))
            .ok_or_else(|| Error::not_found("Event not found"))
    }

    pub(crate) async fn get_event(&self, req: GetEventRequest) -> Result<EventResponse> {
        let client = self.pool.get().await?;
        // Whether the room is unreadable or the event hidden, the spec's answer is 404.
        let access = Access::load(&client, &req.user_id, &req.room_id).await.map_err(|e| match e.code() {
            ErrorCode::Forbidden => Error::not_found("Event not found"),
            _ => e,
        })?;
        let row = self.visible_event(&client, &access, &req.room_id, &req.event_id).await?;
        let viewer = Viewer { user_id: &req.user_id, device_id: &req.device_id };
        let event_json = access.serve(&client, viewer, vec![row]).await?.pop().unwrap_or_default();
        Ok(EventResponse { event_json })
    }

    #[tracing::instrument(skip_all, fields(user = %req.user_id, room_id = %req.room_id, event_id = %req.event_id))]
    pub(crate) async fn get_context(&self, req: GetContextRequest) -> Result<GetContextResponse> {
        let filter = parse_filter(req.filter_json.as_deref())?;
        let client = self.pool.get().await?;
        let access = Access::load(&client, &req.user_id, &req.room_id).await?;
        let event = self.visible_event(&client, &access, &req.room_id, &req.event_id).await?;
        let upper = access.upper(self.announced_position());
        // Like Synapse: half the limit before the event, the rest after it.
        let limit = req.limit.min(MAX_CONTEXT);
        let (before_limit, after_limit) = (i64::from(limit / 2), i64::from(limit - limit / 2));

        let before = Side { bound: "pos < $2", order: "DESC", limit: before_limit, ceiling: None };
        let before_rows = context_page(&client, &req.room_id, &filter, event.pos, before).await?;
        let after = Side { bound: "pos > $2 AND pos <= $4", order: "ASC", limit: after_limit, ceiling: Some(upper) };
        let after_rows = context_page(&client, &req.room_id, &filter, event.pos, after).await?;

        let start = before_rows.last().map_or(event.pos - 1, |r| r.pos - 1);
        let end = after_rows.last().map_or(event.pos, |r| r.pos);

        // The state at the last event returned, filtered like the events.
        let state_rows = match filter.lazy_load_options {
            LazyLoadOptions::Enabled { .. } => {
                let senders: Vec<&str> = before_rows
                    .iter()
                    .chain(&after_rows)
                    .filter(|r| access.sees(r))
                    .chain([&event])
                    .map(|r| r.sender.as_str())
                    .collect();
                members_of(&client, &req.room_id, &senders, end).await?
            }
            LazyLoadOptions::Disabled => state_at(&client, &req.room_id, Some(end), None).await?,
        };
        let now = now_ms();
        let state_json = state_rows
            .iter()
            .filter(|r| state_matches(&filter, r))
            .map(|r| r.render(None, Format::Client, now))
            .collect();
        let viewer = Viewer { user_id: &req.user_id, device_id: &req.device_id };
        let event_json = access.serve(&client, viewer, vec![event]).await?.pop().unwrap_or_default();
        Ok(GetContextResponse {
            event_json,
            events_before_json: access.serve(&client, viewer, before_rows).await?,
            events_after_json: access.serve(&client, viewer, after_rows).await?,
            state_json,
            start: StreamToken::new(start.max(0)).to_string(),
            end: StreamToken::new(end).to_string(),
        })
    }
}

/// One side of a context: its bound on `pos` (`$2` is the event, `$4` the ceiling when
/// given), order and limit.
pub(crate) struct Side {
    pub bound: &'static str,
    pub order: &'static str,
    pub limit: i64,
    pub ceiling: Option<i64>,
}

/// Up to `side.limit` events of `room` on one side of the event at `pos`, matching `filter`.
pub(crate) async fn context_page(
    client: &deadpool_postgres::Client,
    room: &str,
    filter: &ruma::api::client::filter::RoomEventFilter,
    pos: i64,
    side: Side,
) -> Result<Vec<EventRow>> {
    let first_param = if side.ceiling.is_some() { 5 } else { 4 };
    let (cond, params) = trellis_storage::filter::conditions(filter, first_param);
    let (bound, order) = (side.bound, side.order);
    let sql =
        format!("SELECT {COLUMNS} FROM events WHERE room_id = $1 AND {bound}{cond} ORDER BY pos {order} LIMIT $3");
    let mut args: Vec<&(dyn ToSql + Sync)> = vec![&room, &pos, &side.limit];
    if let Some(c) = &side.ceiling {
        args.push(c);
    }
    args.extend(params.iter().map(|p| &**p as &(dyn ToSql + Sync)));
    Ok(client.query(&sql, &args).await?.iter().map(EventRow::from_row).collect())
}

/// The filter's type and sender conditions, applied in memory to state events.
fn state_matches(filter: &ruma::api::client::filter::RoomEventFilter, row: &EventRow) -> bool {
    let types_ok = filter.types.as_ref().is_none_or(|t| t.iter().any(|g| glob_match(g, &row.kind)))
        && !filter.not_types.iter().any(|g| glob_match(g, &row.kind));
    let senders_ok = filter.senders.as_ref().is_none_or(|s| s.iter().any(|u| u.as_str() == row.sender))
        && !filter.not_senders.iter().any(|u| u.as_str() == row.sender);
    types_ok && senders_ok
}
