//! The pre-r0 API that the oldest tutorials use: `GET /initialSync`, the `GET /events`
//! long-poll and `GET /rooms/{roomId}/initialSync`, built on the same computation as `/sync`
//! and reshaped into their old response formats.

use std::{collections::BTreeMap, time::Duration};

use ruma::api::client::filter::FilterDefinition;
use serde_json::{Value, json};
use trellis_core::{Error, Result};
use trellis_proto::sync::{EventsRequest, InitialSyncRequest, RoomInitialSyncRequest, SyncResponse};

use crate::{
    SyncWorker,
    longpoll::{Poll, parse_since},
    response::{JoinedRoom, LeftRoom, RawEvent, SyncBody},
};

fn values(events: &[RawEvent]) -> Vec<Value> {
    events.iter().filter_map(|e| serde_json::from_str(e.get()).ok()).collect()
}

/// Events as the old API served them: each with its `room_id`.
fn with_room(events: &[RawEvent], room: &str) -> Vec<Value> {
    values(events)
        .into_iter()
        .map(|mut e| {
            e["room_id"] = json!(room);
            e
        })
        .collect()
}

/// The room's state at the end of the timeline: the state block updated by the timeline's
/// state events.
fn current_state(state: &[RawEvent], timeline: &[RawEvent], room: &str) -> Vec<Value> {
    let mut latest: BTreeMap<(String, String), Value> = BTreeMap::new();
    for e in with_room(state, room).into_iter().chain(with_room(timeline, room)) {
        if let Some(key) = e["state_key"].as_str() {
            let kind = e["type"].as_str().unwrap_or_default().to_owned();
            latest.insert((kind, key.to_owned()), e);
        }
    }
    latest.into_values().collect()
}

fn joined_room(room: &str, r: &JoinedRoom, end: &str) -> Value {
    json!({
        "room_id": room,
        "membership": "join",
        "messages": { "chunk": with_room(&r.timeline.events, room), "start": r.timeline.prev_batch, "end": end },
        "state": current_state(&r.state.events, &r.timeline.events, room),
        "account_data": values(&r.account_data.events),
    })
}

fn left_room(room: &str, r: &LeftRoom, end: &str) -> Value {
    json!({
        "room_id": room,
        "membership": "leave",
        "messages": { "chunk": with_room(&r.timeline.events, room), "start": r.timeline.prev_batch, "end": end },
        "state": current_state(&r.state.events, &r.timeline.events, room),
        "account_data": values(&r.account_data.events),
    })
}

impl SyncWorker {
    async fn snapshot(&self, user: &str, device: &str, filter: &FilterDefinition) -> Result<SyncBody> {
        let poll =
            Poll { user_id: user, device_id: device, since: None, timeout: Duration::ZERO, full_state: false, filter };
        self.wait_for_news(&poll).await
    }

    /// # `GET /_matrix/client/r0/initialSync`
    pub(crate) async fn legacy_initial_sync(&self, req: InitialSyncRequest) -> Result<SyncResponse> {
        let mut filter = FilterDefinition::default();
        filter.room.timeline.limit = Some(ruma::UInt::from(if req.limit == 0 { 10 } else { req.limit.min(1000) }));
        filter.room.include_leave = req.archived;
        let body = self.snapshot(&req.user_id, &req.device_id, &filter).await?;
        let end = body.next_batch.clone();
        let mut rooms: Vec<Value> = body.rooms.join.iter().map(|(id, r)| joined_room(id, r, &end)).collect();
        rooms.extend(body.rooms.leave.iter().map(|(id, r)| left_room(id, r, &end)));
        for (id, r) in &body.rooms.invite {
            let state = with_room(&r.invite_state.events, id);
            let invite =
                state.iter().find(|e| e["type"] == "m.room.member" && e["state_key"] == req.user_id.as_str()).cloned();
            rooms.push(json!({ "room_id": id, "membership": "invite", "invite": invite, "state": state }));
        }
        let out = json!({
            "end": end,
            "rooms": rooms,
            "presence": values(&body.presence.events),
            "account_data": values(&body.account_data.events),
        });
        Ok(SyncResponse { body_json: out.to_string() })
    }

    /// # `GET /_matrix/client/r0/events`
    pub(crate) async fn legacy_events(&self, req: EventsRequest) -> Result<SyncResponse> {
        let since = match parse_since(req.from.as_deref())? {
            Some(t) => t,
            // Without `from`, the stream starts now.
            None => crate::streams::current(&self.pool.get().await?).await?,
        };
        let filter = FilterDefinition::default();
        let poll = Poll {
            user_id: &req.user_id,
            device_id: &req.device_id,
            since: Some(since),
            timeout: Duration::from_millis(req.timeout_ms),
            full_state: false,
            filter: &filter,
        };
        let body = self.wait_for_news(&poll).await?;
        let mut chunk = Vec::new();
        for (id, r) in &body.rooms.join {
            chunk.extend(with_room(&r.timeline.events, id));
            chunk.extend(with_room(&r.ephemeral.events, id));
        }
        for (id, r) in &body.rooms.leave {
            chunk.extend(with_room(&r.timeline.events, id));
        }
        for (id, r) in &body.rooms.invite {
            chunk.extend(
                with_room(&r.invite_state.events, id)
                    .into_iter()
                    .filter(|e| e["type"] == "m.room.member" && e["state_key"] == req.user_id.as_str()),
            );
        }
        chunk.extend(values(&body.presence.events));
        let out = json!({ "chunk": chunk, "start": since.to_string(), "end": body.next_batch });
        Ok(SyncResponse { body_json: out.to_string() })
    }

    /// # `GET /_matrix/client/r0/rooms/{roomId}/initialSync`
    pub(crate) async fn legacy_room_initial_sync(&self, req: RoomInitialSyncRequest) -> Result<SyncResponse> {
        let room_id = ruma::RoomId::parse(&req.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        let mut filter = FilterDefinition::default();
        filter.room.rooms = Some(vec![room_id]);
        filter.room.include_leave = true;
        let body = self.snapshot(&req.user_id, &req.device_id, &filter).await?;
        let end = body.next_batch.clone();
        let mut out = if let Some(r) = body.rooms.join.get(&req.room_id) {
            joined_room(&req.room_id, r, &end)
        } else if let Some(r) = body.rooms.leave.get(&req.room_id) {
            left_room(&req.room_id, r, &end)
        } else {
            return Err(Error::forbidden("You are not a member of this room"));
        };
        out["presence"] = json!(values(&body.presence.events));
        if let Some(r) = body.rooms.join.get(&req.room_id) {
            out["receipts"] = json!(values(&r.ephemeral.events));
        }
        Ok(SyncResponse { body_json: out.to_string() })
    }
}
