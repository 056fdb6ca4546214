//! `GET /events`: everything after `from`, oldest first, waiting up to `timeout` when there
//! is nothing yet. Room events come `limit` at a time (the answer's `end` then stops after
//! the last one, so a client catches up in order however far behind it is), with the
//! typing, receipts, presence and account data (tags included) of the same window. With
//! `room_id`, only that room: one the user is in, or a `world_readable` one to peek into
//! (room previews).

use std::time::Duration;

use serde_json::Value;
use tokio_postgres::types::ToSql;
use trellis_bus::Channel;
use trellis_core::{Error, Result, Stream, StreamToken, time::now_ms};
use trellis_proto::sync::{EventsRequest, SyncResponse};
use trellis_storage::{
    events::{COLUMNS, EventRow, Viewer},
    visibility::{self, HistoryVisibility},
};

use super::{in_room, v1_event, v1_presence, with_user_id, without_push_rules};
use crate::{SyncWorker, access, poll::longpoll::parse_since, queries, streams, streams::presence::PresenceRow};

/// Presence changed in `($1, $2]` of the joined members of the rooms `$3` (for peeking).
const MEMBERS_PRESENCE_CHANGED: &str = "SELECT user_id, state, status_msg, last_active_ts, currently_active \
     FROM presence WHERE pos > $1 AND pos <= $2 AND user_id IN \
     (SELECT user_id FROM memberships WHERE room_id = ANY($3) AND membership = 'join')";

/// Which rooms an `/events` call reads.
struct Scope {
    rooms: Vec<String>,
    /// Peeking into a `world_readable` room the user is not in.
    peeking: bool,
}

impl SyncWorker {
    /// # `GET /_matrix/client/r0/events`
    pub(crate) async fn legacy_events(&self, req: EventsRequest) -> Result<SyncResponse> {
        if req.is_guest && req.room_id.is_none() {
            return Err(Error::missing_param("Guest users must specify room_id param"));
        }
        if let Some(room) = &req.room_id {
            access::room_id(room)?;
        }
        let limit = i64::from(req.limit.unwrap_or(super::DEFAULT_LIMIT).clamp(1, super::MAX_LIMIT));
        let since = parse_since(req.from.as_deref())?;
        if !req.is_guest {
            // Like a sync, reading the stream marks the user online (throttled).
            self.mark_syncing(&req.user_id, "online").await?;
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms).min(self.settings.max_timeout);
        // A waiting `/events` is an open long-poll like a waiting `/sync`.
        let _open = (req.timeout_ms > 0).then(crate::poll::longpoll::OpenPoll::count);
        // Subscribe first, read second: no wake-up can fall in between.
        let mut sub = self.bus.subscribe(&[Channel::User(req.user_id.clone())]).await?;
        let since = match since {
            Some(t) => t,
            // Without `from`, the stream starts now.
            None => streams::current(&self.pool.get().await?).await?,
        };
        loop {
            let (chunk, end) = {
                let client = self.pool.get().await?;
                let scope = self.scope(&client, &req, since).await?;
                let channels: Vec<Channel> = scope.rooms.iter().cloned().map(Channel::Room).collect();
                sub.add(&channels).await?;
                let upto = streams::current(&client).await?;
                self.window(&client, &req, &scope, since, upto, limit).await?
            };
            if !chunk.is_empty() || tokio::time::Instant::now() >= deadline || self.shutdown.is_triggered() {
                let body = serde_json::json!({ "chunk": chunk, "start": since.to_string(), "end": end.to_string() });
                return Ok(SyncResponse { body_json: body.to_string() });
            }
            self.wait_once(&sub, deadline).await;
        }
    }

    /// The rooms to read: the named one (joined, or `world_readable` to peek into), else
    /// the rooms the user is in and those whose membership changed since `since` (so a
    /// leave shows, and what came before it).
    async fn scope(&self, client: &queries::Client, req: &EventsRequest, since: StreamToken) -> Result<Scope> {
        let memberships = queries::memberships(client, &req.user_id).await?;
        if let Some(room) = &req.room_id {
            if memberships.iter().any(|m| &m.room_id == room && m.membership == "join") {
                return Ok(Scope { rooms: vec![room.clone()], peeking: false });
            }
            let history = visibility::load_one(client, &req.user_id, room).await?;
            if history.current_visibility() == HistoryVisibility::WorldReadable {
                return Ok(Scope { rooms: vec![room.clone()], peeking: true });
            }
            return Err(Error::forbidden("Non-joined access not allowed"));
        }
        let rooms = memberships
            .into_iter()
            .filter(|m| m.membership == "join" || m.pos > since.events)
            .map(|m| m.room_id)
            .collect();
        Ok(Scope { rooms, peeking: false })
    }

    /// What happened in `(since, upto]`, and the token after it.
    async fn window(
        &self,
        client: &queries::Client,
        req: &EventsRequest,
        scope: &Scope,
        since: StreamToken,
        upto: StreamToken,
        limit: i64,
    ) -> Result<(Vec<Value>, StreamToken)> {
        let user = req.user_id.as_str();
        let viewer = Viewer { user_id: user, device_id: &req.device_id };
        let rows = room_events(client, user, scope, since.events, upto.events, limit).await?;
        // A full page ends at its last event; the rest comes next time.
        let events_end =
            if rows.len() as i64 >= limit { rows.last().map_or(upto.events, |r| r.pos) } else { upto.events };
        let ids: Vec<&str> = scope.rooms.iter().map(String::as_str).collect();
        let histories = visibility::load(client, user, &ids).await?;
        let now = now_ms();
        let mut chunk: Vec<Value> = rows
            .iter()
            .filter(|r| histories.get(&r.room_id).is_none_or(|h| h.allows(user, r)))
            .map(|r| v1_event(r, viewer, now))
            .collect();

        let since_of = |s: Stream| Some(since.get(s));
        let typing =
            self.typing_events(client, &scope.rooms, since_of(Stream::Typing), upto.get(Stream::Typing)).await?;
        chunk.extend(typing.into_iter().map(|(room, e)| in_room(e, &room)));
        let receipts = self
            .receipt_events(client, user, &scope.rooms, since_of(Stream::Receipts), upto.get(Stream::Receipts))
            .await?;
        chunk.extend(receipts.into_iter().map(|(room, e)| in_room(e, &room)));
        if scope.peeking {
            let args: [&(dyn ToSql + Sync); 3] =
                [&since.get(Stream::Presence), &upto.get(Stream::Presence), &scope.rooms];
            let rows = client.query(&client.prepare_cached(MEMBERS_PRESENCE_CHANGED).await?, &args).await?;
            chunk.extend(rows.iter().map(|r| v1_presence(&PresenceRow::from_row(r), now)));
        } else {
            let presence =
                self.presence_events(client, user, since_of(Stream::Presence), upto.get(Stream::Presence)).await?;
            chunk.extend(presence.into_iter().map(with_user_id));
        }
        let (global, rooms) = self
            .account_data_events(client, user, since_of(Stream::AccountData), upto.get(Stream::AccountData))
            .await?;
        chunk.extend(without_push_rules(global));
        for (room, events) in rooms {
            chunk.extend(events.into_iter().map(|e| in_room(e, &room)));
        }
        Ok((chunk, upto.with(Stream::Events, events_end)))
    }
}

/// Up to `limit` events in `(since, upto]`, oldest first: those of the scope's rooms and,
/// unless peeking, the user's own membership changes anywhere (invites included).
async fn room_events(
    client: &queries::Client,
    user: &str,
    scope: &Scope,
    since: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<EventRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE pos > $1 AND pos <= $2 AND (room_id = ANY($3) \
         OR (NOT $5 AND type = 'm.room.member' AND state_key = $4)) ORDER BY pos LIMIT $6"
    );
    let args: [&(dyn ToSql + Sync); 6] = [&since, &upto, &scope.rooms, &user, &scope.peeking, &limit];
    let rows = client.query(&client.prepare_cached(&sql).await?, &args).await?;
    Ok(rows.iter().map(EventRow::from_row).collect())
}
