//! The pre-r0 API that the oldest tutorials (and SyTest's deprecated-endpoint tests) use:
//! `GET /initialSync`, `GET /rooms/{roomId}/initialSync` and the `GET /events` long-poll,
//! read from the same tables as `/sync` and answered in their old formats: every event with
//! its `room_id`, the v1 `user_id` (its sender) and `age` at the top level.

mod events;
mod initial_sync;
mod room;

use std::collections::HashMap;

use ruma::api::client::filter::RoomEventFilter;
use serde_json::{Value, json};
use trellis_core::{Result, Stream, StreamToken, time::now_ms};
use trellis_storage::{
    events::{EventRow, Format, Viewer},
    visibility,
};

use crate::{queries, streams::presence::PresenceRow};

/// Messages per room, or events per `/events` answer, when the client gives no `limit`.
const DEFAULT_LIMIT: u32 = 10;
/// The most a client may ask for at once.
const MAX_LIMIT: u32 = 1000;

const IS_PUBLIC: &str = "SELECT room_id FROM rooms WHERE room_id = ANY($1) AND is_public";

/// The client's `limit`, or the default, within bounds.
fn limit_of(limit: Option<u32>) -> i64 {
    i64::from(limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT))
}

/// `unsigned` fields the v1 format also has at the top level.
const V1_TOP_LEVEL: [&str; 4] = ["age", "prev_content", "replaces_state", "redacted_because"];

/// An event in the v1 format.
fn v1_event(row: &EventRow, viewer: Viewer<'_>, now: i64) -> Value {
    let mut e: Value = serde_json::from_str(&row.render(Some(viewer), Format::Client, now)).unwrap_or_default();
    e["user_id"] = json!(row.sender);
    for key in V1_TOP_LEVEL {
        if let Some(v) = e["unsigned"].get(key).cloned() {
            e[key] = v;
        }
    }
    e
}

/// A presence event in the v1 format: `content.user_id` names whose it is.
fn v1_presence(row: &PresenceRow, now: i64) -> Value {
    with_user_id(row.event(now))
}

fn with_user_id(mut presence: Value) -> Value {
    presence["content"]["user_id"] = presence["sender"].clone();
    presence
}

/// A room-scoped event (receipts, typing, room account data) with its `room_id`.
fn in_room(mut event: Value, room: &str) -> Value {
    event["room_id"] = json!(room);
    event
}

/// One room as the user may see it up to an events position.
struct Snapshot {
    /// The latest events (oldest first) the user may see.
    chunk: Vec<Value>,
    /// Where paging back from the chunk starts.
    start: String,
    /// The position the snapshot was taken at.
    end: String,
    /// The room's state at that position.
    state: Vec<Value>,
}

impl Snapshot {
    fn messages(&self) -> Value {
        json!({ "chunk": self.chunk, "start": self.start, "end": self.end })
    }
}

/// Snapshots of `rooms`, each `(room, events position)`, with up to `limit` messages
/// (before history visibility hides any, as Synapse counts them). Tokens are `now` with the
/// room's events position.
async fn snapshots(
    client: &queries::Client,
    viewer: Viewer<'_>,
    rooms: &[(String, i64)],
    limit: i64,
    now: StreamToken,
) -> Result<HashMap<String, Snapshot>> {
    let all = RoomEventFilter::default();
    let bounds: Vec<(String, i64, i64)> = rooms.iter().map(|(r, at)| (r.clone(), 0, *at)).collect();
    let mut timelines = queries::timelines(client, &bounds, limit, &all).await?;
    let state_bounds: Vec<(String, i64, i64)> = rooms.iter().map(|(r, at)| (r.clone(), 0, at + 1)).collect();
    let mut states = queries::state_between(client, &state_bounds, &all, queries::Members::All).await?;
    let ids: Vec<&str> = rooms.iter().map(|(r, _)| r.as_str()).collect();
    let mut histories = visibility::load(client, viewer.user_id, &ids).await?;
    let ms = now_ms();
    let mut out = HashMap::new();
    for (room, at) in rooms {
        let mut rows = timelines.remove(room).unwrap_or_default();
        rows.reverse();
        let start = rows.first().map_or(*at, |r| r.pos - 1);
        if let Some(history) = histories.remove(room) {
            rows = history.filter(viewer.user_id, rows);
        }
        let state = states.remove(room).unwrap_or_default();
        out.insert(
            room.clone(),
            Snapshot {
                chunk: rows.iter().map(|r| v1_event(r, viewer, ms)).collect(),
                start: now.with(Stream::Events, start).to_string(),
                end: now.with(Stream::Events, *at).to_string(),
                state: state.iter().map(|r| v1_event(r, viewer, ms)).collect(),
            },
        );
    }
    Ok(out)
}

/// Which of `rooms` are listed in the public room directory.
async fn public_rooms(client: &queries::Client, rooms: &[&str]) -> Result<Vec<String>> {
    let stmt = client.prepare_cached(IS_PUBLIC).await?;
    Ok(client.query(&stmt, &[&rooms]).await?.iter().map(|r| r.get(0)).collect())
}

/// Global account data as the old API shows it: push rules have their own API.
fn without_push_rules(events: Vec<Value>) -> Vec<Value> {
    events.into_iter().filter(|e| e["type"] != crate::push::rules::PUSH_RULES).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_events_carry_user_id_and_age() {
        let row = trellis_storage::testing::message_row(r#"{"body":"hi","msgtype":"m.text"}"#, None);
        let e = v1_event(&row, Viewer { user_id: "@b:x", device_id: "D" }, row.origin_server_ts + 7);
        assert_eq!(e["user_id"], e["sender"]);
        assert_eq!(e["age"], 7);
        assert_eq!(e["room_id"], row.room_id.as_str());
        assert!(e.get("prev_content").is_none());
        let replaced = r#"{"prev_content":{"body":"old"},"replaces_state":"$old"}"#;
        let row = trellis_storage::testing::message_row(r#"{"body":"new"}"#, Some(replaced));
        let e = v1_event(&row, Viewer { user_id: "@b:x", device_id: "D" }, row.origin_server_ts);
        assert_eq!((e["prev_content"]["body"].as_str(), e["replaces_state"].as_str()), (Some("old"), Some("$old")));
    }

    #[test]
    fn limits() {
        assert_eq!(limit_of(None), 10);
        assert_eq!(limit_of(Some(0)), 0);
        assert_eq!(limit_of(Some(5000)), 1000);
    }

    #[test]
    fn push_rules_are_left_out() {
        let events = vec![json!({"type": "m.push_rules", "content": {}}), json!({"type": "a.b", "content": {}})];
        assert_eq!(without_push_rules(events), vec![json!({"type": "a.b", "content": {}})]);
    }
}
