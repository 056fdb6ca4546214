//! The recent events of each room this worker serves, shared by every long-poll it holds: a
//! new message is read from PostgreSQL once per worker, not once per woken client.
//!
//! A room's tail holds every event with a position in `(from, to]`; `to` only moves to
//! announced positions, so the tail never misses a late commit.

use std::{collections::VecDeque, sync::Arc};

use trellis_core::Result;
use trellis_storage::{
    Pool,
    events::{COLUMNS, EventRow, Format, Viewer},
};

use crate::poll::room_slots::RoomSlots;

/// Events kept per room; a client further behind is served from PostgreSQL.
const CAPACITY: usize = 128;

/// A cached event with what every receiver's check needs, worked out once.
pub struct TailEvent {
    pub row: EventRow,
    /// The content has a `url` (for `contains_url` filters).
    pub has_url: bool,
    /// The event as push rules see it (see `push_eval::event_json`), flattened once, with the
    /// rule answers shared by every member's evaluation.
    pub push: Option<crate::push::matching::EventFacts>,
    /// The event as `/sync` shows it (without `room_id`) to every viewer but the sending
    /// device, split around the value of `unsigned.age`: rendered once, not once per client.
    shown: Option<(String, String)>,
}

impl TailEvent {
    fn new(row: EventRow) -> TailEvent {
        let has_url = serde_json::from_str::<serde_json::Value>(&row.content)
            .ok()
            .is_some_and(|c| c.as_object().is_some_and(|o| o.contains_key("url")));
        let push_json = crate::push::eval::event_json(
            &row.event_id,
            &row.room_id,
            &row.sender,
            &row.kind,
            row.state_key.as_deref(),
            &row.content,
        );
        let push = crate::push::eval::facts(&push_json);
        let shown = age_template(&row);
        TailEvent { row, has_url, push, shown }
    }

    /// The event as `viewer` sees it in a sync timeline at `now_ms`.
    pub fn render(&self, viewer: Viewer<'_>, now_ms: i64) -> String {
        match &self.shown {
            Some((before, after)) if !self.row.sent_by(viewer) => format!("{before}{}{after}", self.row.age(now_ms)),
            _ => self.row.render(Some(viewer), Format::WithoutRoomId, now_ms),
        }
    }
}

/// The rendering of `row` for viewers other than its sending device, split where the age
/// goes. Found by rendering at two ages of the same width and keeping what they share; `None`
/// (render in full each time) if the two differ anywhere else.
fn age_template(row: &EventRow) -> Option<(String, String)> {
    const A: i64 = 111_111_111_111_111;
    const B: i64 = 222_222_222_222_222;
    let a = row.render(None, Format::WithoutRoomId, row.origin_server_ts + A);
    let b = row.render(None, Format::WithoutRoomId, row.origin_server_ts + B);
    let start = a.bytes().zip(b.bytes()).position(|(x, y)| x != y)?;
    let (digits_a, digits_b) = (A.to_string(), B.to_string());
    let end = start + digits_a.len();
    (a.len() == b.len()
        && a.get(start..end) == Some(digits_a.as_str())
        && b.get(start..end) == Some(digits_b.as_str())
        && a[end..] == b[end..])
        .then(|| (a[..start].to_owned(), a[end..].to_owned()))
}

struct Tail {
    from: i64,
    to: i64,
    events: VecDeque<Arc<TailEvent>>,
}

#[derive(Default)]
pub struct TailCache {
    rooms: RoomSlots<Tail>,
}

impl TailCache {
    /// The events of `room` with positions in `(after, upto]`, or `None` when the tail
    /// cannot vouch for all of them. `upto` must be an announced position.
    pub async fn events(&self, pool: &Pool, room: &str, after: i64, upto: i64) -> Result<Option<Vec<Arc<TailEvent>>>> {
        // One reader fills the tail; the other long-polls of the room wait for it.
        let mut tail = self.rooms.lock(room, || Tail { from: after, to: after, events: VecDeque::new() }).await;
        if tail.to < upto {
            let client = pool.get().await?;
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos LIMIT $4"
            );
            let stmt = client.prepare_cached(&sql).await?;
            let limit = (CAPACITY + 1) as i64;
            let rows: Vec<EventRow> =
                client.query(&stmt, &[&room, &tail.to, &upto, &limit]).await?.iter().map(EventRow::from_row).collect();
            // A redaction rewrites an older event: start over so it is read redacted. Too
            // many new events: only PostgreSQL can page through them.
            if rows.len() > CAPACITY || rows.iter().any(|e| e.kind == "m.room.redaction") {
                tail.events.clear();
                tail.from = upto;
                tail.to = upto;
                return Ok(None);
            }
            tail.events.extend(rows.into_iter().map(|r| Arc::new(TailEvent::new(r))));
            tail.to = upto;
            while tail.events.len() > CAPACITY {
                if let Some(dropped) = tail.events.pop_front() {
                    tail.from = dropped.row.pos;
                }
            }
        }
        if after < tail.from {
            return Ok(None);
        }
        Ok(Some(tail.events.iter().filter(|e| e.row.pos > after && e.row.pos <= upto).cloned().collect()))
    }

    /// Drops tails nobody asked for lately.
    pub fn evict_idle(&self) -> usize {
        self.rooms.evict_idle()
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use trellis_storage::testing::message_row;

    use super::*;

    #[test]
    fn the_shared_rendering_matches_a_full_one_for_every_viewer() {
        let rows = [
            message_row(r#"{"body":"hi","msgtype":"m.text"}"#, None),
            // Numbers like the probe ages inside the content and the unsigned data.
            message_row(r#"{"body":"111111111111111","n":222222222222222}"#, Some(r#"{"prev_content":{"age":7}}"#)),
        ];
        let viewers = [
            Viewer { user_id: "@b:x", device_id: "OTHER" },
            Viewer { user_id: "@a:x", device_id: "PHONE" },
            Viewer { user_id: "@a:x", device_id: "DEV" },
        ];
        for r in rows {
            let event = TailEvent::new(r.clone());
            assert!(event.shown.is_some(), "a template is found");
            for now in [r.origin_server_ts - 5, r.origin_server_ts, r.origin_server_ts + 12_345] {
                for v in viewers {
                    assert_eq!(event.render(v, now), r.render(Some(v), Format::WithoutRoomId, now));
                }
            }
            assert!(event.render(viewers[2], r.origin_server_ts).contains("\"transaction_id\":\"t1\""));
            assert!(!event.render(viewers[1], r.origin_server_ts).contains("transaction_id"));
        }
    }
}
