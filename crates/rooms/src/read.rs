//! Reading rooms: state (current, or as of leaving for a former member) and paginated history
//! (`/messages`), each as the history-visibility rules let the user see it; joined rooms.

use ruma::{RoomId, UserId, api::client::filter::RoomEventFilter};
use trellis_core::{Error, Result, StreamToken, time::now_ms};
use trellis_proto::rooms::{
    EventList, GetMessagesRequest, GetMessagesResponse, GetStateEventRequest, GetStateRequest, JoinedRoomsRequest,
    JoinedRoomsResponse, StateEventResponse,
};
use trellis_storage::events::{COLUMNS, EventRow, Format, Viewer};

use crate::{Rooms, access::Access};

const SELECT_JOINED: &str =
    "SELECT room_id FROM memberships WHERE user_id = $1 AND membership = 'join' ORDER BY room_id";
/// Largest page `/messages` serves, like Synapse.
const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 10;

/// State events of `room` as of position `at` (current state when `None`), optionally only
/// one `(type, state_key)`.
pub(crate) async fn state_at(
    client: &deadpool_postgres::Client,
    room: &str,
    at: Option<i64>,
    only: Option<(&str, &str)>,
) -> Result<Vec<EventRow>> {
    let rows = match (at, only) {
        (None, None) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE event_id IN \
                 (SELECT event_id FROM current_state WHERE room_id = $1) ORDER BY pos"
            );
            client.query(&client.prepare_cached(&sql).await?, &[&room]).await?
        }
        (None, Some((t, k))) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE event_id = \
                 (SELECT event_id FROM current_state WHERE room_id = $1 AND type = $2 AND state_key = $3)"
            );
            client.query(&client.prepare_cached(&sql).await?, &[&room, &t, &k]).await?
        }
        (Some(pos), None) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM (SELECT DISTINCT ON (type, state_key) * FROM events \
                 WHERE room_id = $1 AND state_key IS NOT NULL AND pos <= $2 \
                 ORDER BY type, state_key, pos DESC) s ORDER BY pos"
            );
            client.query(&client.prepare_cached(&sql).await?, &[&room, &pos]).await?
        }
        (Some(pos), Some((t, k))) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND type = $2 AND state_key = $3 \
                 AND pos <= $4 ORDER BY pos DESC LIMIT 1"
            );
            client.query(&client.prepare_cached(&sql).await?, &[&room, &t, &k, &pos]).await?
        }
    };
    Ok(rows.iter().map(EventRow::from_row).collect())
}

/// A `RoomEventFilter` given as JSON (`M_BAD_JSON` when it is not one).
pub(crate) fn parse_filter(json: Option<&str>) -> Result<RoomEventFilter> {
    match json {
        None | Some("") => Ok(RoomEventFilter::default()),
        Some(f) => serde_json::from_str(f).map_err(|e| Error::bad_json(format!("invalid filter: {e}"))),
    }
}

/// The latest member events of `senders` as of `upper` (lazy-loaded members).
pub(crate) async fn members_of(
    client: &deadpool_postgres::Client,
    room: &str,
    senders: &[&str],
    upper: i64,
) -> Result<Vec<EventRow>> {
    let mut senders = senders.to_vec();
    senders.sort();
    senders.dedup();
    let sql = format!(
        "SELECT {COLUMNS} FROM (SELECT DISTINCT ON (state_key) * FROM events WHERE room_id = $1 \
         AND type = 'm.room.member' AND state_key = ANY($2) AND pos <= $3 \
         ORDER BY state_key, pos DESC) m"
    );
    Ok(client.query(&sql, &[&room, &senders, &upper]).await?.iter().map(EventRow::from_row).collect())
}

impl Rooms {
    /// State events of `room` as `user` may see them: current, or as of their departure.
    async fn visible_state(&self, user: &str, room: &str, only: Option<(&str, &str)>) -> Result<Vec<EventRow>> {
        let client = self.pool.get().await?;
        let access = Access::load(&client, user, room).await?;
        state_at(&client, room, access.ceiling, only).await
    }

    pub(crate) async fn get_state(&self, req: GetStateRequest) -> Result<EventList> {
        let now = now_ms();
        let rows = self.visible_state(&req.user_id, &req.room_id, None).await?;
        Ok(EventList { events_json: rows.iter().map(|r| r.render(None, Format::Client, now)).collect() })
    }

    pub(crate) async fn get_state_event(&self, req: GetStateEventRequest) -> Result<StateEventResponse> {
        let only = Some((req.event_type.as_str(), req.state_key.as_str()));
        let rows = self.visible_state(&req.user_id, &req.room_id, only).await?;
        let row = rows.into_iter().next().ok_or_else(|| Error::not_found("Event not found"))?;
        Ok(StateEventResponse { event_json: row.render(None, Format::Client, now_ms()), content_json: row.content })
    }

    pub(crate) async fn get_messages(&self, req: GetMessagesRequest) -> Result<GetMessagesResponse> {
        self.messages(req, false).await
    }

    /// A page of history; every event of the room for a server admin (`admin`), else what
    /// the user may see.
    #[tracing::instrument(skip_all, fields(user = %req.user_id, room_id = %req.room_id))]
    pub(crate) async fn messages(&self, req: GetMessagesRequest, admin: bool) -> Result<GetMessagesResponse> {
        let room = RoomId::parse(&req.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        let filter = parse_filter(req.filter_json.as_deref())?;
        let parse = |t: &str| t.parse::<StreamToken>().map(|t| t.events);
        let from = req.from.as_deref().filter(|f| !f.is_empty()).map(parse).transpose()?;
        let to = req.to.as_deref().filter(|t| !t.is_empty()).map(parse).transpose()?;
        let limit = match req.limit {
            0 => filter.limit.map_or(DEFAULT_PAGE, |l| u64::from(l).min(u64::from(MAX_PAGE)) as u32),
            n => n.min(MAX_PAGE),
        };

        let client = self.pool.get().await?;
        let access = if admin {
            Access::everything(&client, &req.user_id, room.as_str()).await?
        } else {
            Access::load(&client, &req.user_id, room.as_str()).await?
        };
        // Nothing past what readers may see, nor past a former member's departure.
        let ceiling = access.upper(self.announced_position());
        let (lower, upper, order, start) = if req.backwards {
            let upper = from.unwrap_or(ceiling).min(ceiling);
            (to.unwrap_or(0), upper, "DESC", from.unwrap_or(upper))
        } else {
            let lower = from.unwrap_or(0);
            (lower, to.map_or(ceiling, |t| t.min(ceiling)), "ASC", lower)
        };
        let (cond, params) = trellis_storage::filter::conditions(&filter, 5);
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND pos > $2 AND pos <= $3{cond} \
             ORDER BY pos {order} LIMIT $4"
        );
        let limit_arg = i64::from(limit);
        let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&req.room_id, &lower, &upper, &limit_arg];
        args.extend(params.iter().map(|p| &**p as &(dyn tokio_postgres::types::ToSql + Sync)));
        let rows: Vec<EventRow> = client.query(&sql, &args).await?.iter().map(EventRow::from_row).collect();

        // The page boundary is that of the rows read, visible or not, so paging never stalls.
        // As Synapse, `end` is left out only when nothing was read: a short page still gives
        // the token to look again from (forwards, a sync's `next_batch` then finds new events).
        let end = rows.last().map(|r| StreamToken::new(if req.backwards { r.pos - 1 } else { r.pos }).to_string());
        let viewer = Viewer { user_id: &req.user_id, device_id: &req.device_id };
        let mut state_json = Vec::new();
        if matches!(filter.lazy_load_options, ruma::api::client::filter::LazyLoadOptions::Enabled { .. }) {
            let senders: Vec<&str> = rows.iter().filter(|r| access.sees(r)).map(|r| r.sender.as_str()).collect();
            let now = now_ms();
            for row in members_of(&client, &req.room_id, &senders, upper).await? {
                state_json.push(row.render(None, Format::Client, now));
            }
        }
        let chunk_json = access.serve(&client, viewer, rows).await?;
        Ok(GetMessagesResponse { chunk_json, start: StreamToken::new(start).to_string(), end, state_json })
    }

    pub(crate) async fn joined_rooms(&self, req: JoinedRoomsRequest) -> Result<JoinedRoomsResponse> {
        UserId::parse(&req.user_id)?;
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_JOINED).await?;
        let room_ids = client.query(&stmt, &[&req.user_id]).await?.iter().map(|r| r.get(0)).collect();
        Ok(JoinedRoomsResponse { room_ids })
    }
}
