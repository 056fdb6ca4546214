//! The events read model shared by the rooms service (which writes `events`) and the sync
//! workers (which only read it): the row shape and its rendering in the client format.
//!
//! A redacted event is stored redacted (`content` stripped by the room version's algorithm,
//! `unsigned_json` carrying `redacted_because`), so every reader serves it stripped without
//! knowing about redactions.

use serde::Serialize;
use serde_json::value::RawValue;
use tokio_postgres::Row;

/// The event types that move a room up a sliding sync list (Synapse's defaults): the rooms
/// writer keeps each room's latest (`rooms.bump_pos`), and the partial index
/// `events_room_bump` (V31) lists the same types for reading one as of a past position.
pub const BUMP_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
];

/// The columns [`EventRow::from_row`] expects, in order, for `SELECT {COLUMNS} FROM events`.
pub const COLUMNS: &str = "pos, event_id, room_id, sender, type, state_key, origin_server_ts, content, unsigned_json, \
     txn_device, txn_id, redacts";

/// MSC2228's content key: when a message self-destructs.
const SELF_DESTRUCT_AFTER: &str = "org.matrix.self_destruct_after";

/// One stored event, as much of it as clients see.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub pos: i64,
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub kind: String,
    pub state_key: Option<String>,
    pub origin_server_ts: i64,
    pub content: String,
    pub unsigned_json: Option<String>,
    pub txn_device: Option<String>,
    pub txn_id: Option<String>,
    /// For redaction events: the event redacted (served at the top level in every version).
    pub redacts: Option<String>,
    /// Bundled aggregations (`unsigned.m.relations`), filled by [`crate::relations::bundle`].
    pub relations: Option<serde_json::Value>,
}

/// Who an event is rendered for: decides `unsigned.transaction_id`.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
}

/// Whether the rendered event carries `room_id` (the sync timeline leaves it out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Client,
    WithoutRoomId,
}

#[derive(Serialize)]
struct ClientEvent<'a> {
    content: &'a RawValue,
    event_id: &'a str,
    origin_server_ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_id: Option<&'a str>,
    sender: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_key: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    redacts: Option<&'a str>,
    unsigned: serde_json::Map<String, serde_json::Value>,
}

impl EventRow {
    pub fn from_row(row: &Row) -> EventRow {
        EventRow::from_row_at(row, 0)
    }

    /// Like [`EventRow::from_row`] for a row whose [`COLUMNS`] start at index `at`.
    pub fn from_row_at(row: &Row, at: usize) -> EventRow {
        EventRow {
            pos: row.get(at),
            event_id: row.get(at + 1),
            room_id: row.get(at + 2),
            sender: row.get(at + 3),
            kind: row.get(at + 4),
            state_key: row.get(at + 5),
            origin_server_ts: row.get(at + 6),
            content: row.get(at + 7),
            unsigned_json: row.get(at + 8),
            txn_device: row.get(at + 9),
            txn_id: row.get(at + 10),
            redacts: row.get(at + 11),
            relations: None,
        }
    }

    /// The event as a client sees it, with `unsigned.age` as of `now_ms`.
    pub fn render(&self, viewer: Option<Viewer<'_>>, format: Format, now_ms: i64) -> String {
        let mut unsigned = match self.unsigned_json.as_deref() {
            Some(u) => serde_json::from_str(u).unwrap_or_default(),
            None => serde_json::Map::new(),
        };
        unsigned.insert("age".into(), self.age(now_ms).into());
        if let (Some(viewer), Some(txn)) = (viewer, &self.txn_id)
            && self.sent_by(viewer)
        {
            unsigned.insert("transaction_id".into(), txn.clone().into());
        }
        if let Some(relations) = &self.relations {
            unsigned.insert("m.relations".into(), relations.clone());
        }
        let empty = RawValue::from_string("{}".into()).expect("valid JSON");
        let content = if self.self_destructed(now_ms) {
            &empty
        } else {
            serde_json::from_str::<&RawValue>(&self.content).unwrap_or(&empty)
        };
        let event = ClientEvent {
            content,
            event_id: &self.event_id,
            origin_server_ts: self.origin_server_ts,
            room_id: (format == Format::Client).then_some(self.room_id.as_str()),
            sender: &self.sender,
            state_key: self.state_key.as_deref(),
            kind: &self.kind,
            redacts: self.redacts.as_deref(),
            unsigned,
        };
        serde_json::to_string(&event).expect("event serialises")
    }

    /// Whether this is a self-destructing message past its time (MSC2228: a non-state event
    /// whose content sets `org.matrix.self_destruct_after`, a timestamp in milliseconds). It is
    /// then served with empty content, to its sender too.
    pub fn self_destructed(&self, now_ms: i64) -> bool {
        self.state_key.is_none()
            && self.content.contains(SELF_DESTRUCT_AFTER)
            && serde_json::from_str::<serde_json::Value>(&self.content)
                .ok()
                .and_then(|c| c.get(SELF_DESTRUCT_AFTER).and_then(serde_json::Value::as_i64))
                .is_some_and(|after| after <= now_ms)
    }

    /// `unsigned.age` at `now_ms`.
    pub fn age(&self, now_ms: i64) -> i64 {
        (now_ms - self.origin_server_ts).max(0)
    }

    /// Whether `viewer` is the device that sent the event with a transaction ID (the only
    /// viewer shown `unsigned.transaction_id`).
    pub fn sent_by(&self, viewer: Viewer<'_>) -> bool {
        self.txn_id.is_some() && viewer.user_id == self.sender && self.txn_device.as_deref() == Some(viewer.device_id)
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> EventRow {
        crate::testing::message_row(r#"{"body":"hi","msgtype":"m.text"}"#, None)
    }

    #[test]
    fn the_bump_types_are_the_bump_index_and_backfill_lists() {
        for sql in [
            include_str!("../migrations/V31__sliding_sync.sql"),
            include_str!("../migrations/V62__room_bump_positions.sql"),
        ] {
            let listed = sql.split("IN (").nth(1).and_then(|l| l.split(')').next()).unwrap();
            let types: Vec<&str> = listed.split(',').map(|t| t.trim().trim_matches('\'')).collect();
            assert_eq!(types, BUMP_TYPES);
        }
    }

    #[test]
    fn transaction_id_only_for_the_sending_device() {
        let r = row();
        let mine: serde_json::Value =
            serde_json::from_str(&r.render(Some(Viewer { user_id: "@a:x", device_id: "DEV" }), Format::Client, 1500))
                .unwrap();
        assert_eq!(mine["unsigned"]["transaction_id"], "t1");
        assert_eq!(mine["unsigned"]["age"], 500);
        assert_eq!(mine["room_id"], "!r:x");
        assert_eq!(mine["content"]["body"], "hi");
        let other: serde_json::Value = serde_json::from_str(&r.render(
            Some(Viewer { user_id: "@a:x", device_id: "OTHER" }),
            Format::WithoutRoomId,
            1500,
        ))
        .unwrap();
        assert!(other["unsigned"].get("transaction_id").is_none());
        assert!(other.get("room_id").is_none());
    }

    #[test]
    fn self_destructing_messages_lose_their_content_once_due() {
        let r = crate::testing::message_row(r#"{"body":"hi","org.matrix.self_destruct_after":2000}"#, None);
        let before: serde_json::Value = serde_json::from_str(&r.render(None, Format::Client, 1999)).unwrap();
        assert_eq!(before["content"]["body"], "hi");
        let after: serde_json::Value = serde_json::from_str(&r.render(None, Format::Client, 2000)).unwrap();
        assert_eq!(after["content"], serde_json::json!({}));
        let mut state = r.clone();
        state.state_key = Some(String::new());
        assert!(!state.self_destructed(5000), "state events never self-destruct");
    }
}
