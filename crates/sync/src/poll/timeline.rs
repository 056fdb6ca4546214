//! A room's sync timeline as the user may see it: the latest events of the window, without
//! the events history visibility hides from the user (the room's current state excepted: a
//! member always sees the state it is shown anyway) and without the non-state events of users
//! the user ignores. When that leaves fewer than the limit, older events of the window are
//! read in a few more chunks, as Synapse does, so a rejoin after a long private gap still
//! shows what the user may see.
//!
//! The common case — nothing hidden — costs no query beyond the one that read the window.

use std::collections::HashSet;

use ruma::api::client::filter::RoomEventFilter;
use trellis_core::Result;
use trellis_storage::{events::EventRow, visibility::RoomHistory};

use crate::queries::{self, Client};

/// Chunks read back at most when hidden events leave the timeline short.
const MAX_ROUNDS: usize = 5;

const CURRENT: &str = "SELECT event_id FROM current_state WHERE room_id = $1 AND event_id = ANY($2)";

/// What decides which events of a room the user sees.
pub struct Sight<'a> {
    pub user: &'a str,
    pub history: Option<&'a RoomHistory>,
    pub ignored: &'a HashSet<String>,
}

/// A room's timeline, oldest first.
pub struct Window {
    pub events: Vec<EventRow>,
    pub limited: bool,
    /// Position of the earliest event read (seen or not): the client pages back from there.
    pub start: i64,
}

impl Sight<'_> {
    fn ignores(&self, e: &EventRow) -> bool {
        !self.ignored.is_empty() && !e.is_state() && self.ignored.contains(&e.sender)
    }

    /// The events of `rows` the user sees, in their order.
    async fn filter(&self, client: &Client, room: &str, rows: Vec<EventRow>) -> Result<Vec<EventRow>> {
        let allowed = |e: &EventRow| self.history.is_none_or(|h| h.allows(self.user, e));
        let hidden: Vec<&str> =
            rows.iter().filter(|e| e.is_state() && !allowed(e)).map(|e| e.event_id.as_str()).collect();
        // Hidden state events that are the room's current state stay.
        let current: HashSet<String> = if hidden.is_empty() {
            HashSet::new()
        } else {
            let stmt = client.prepare_cached(CURRENT).await?;
            client.query(&stmt, &[&room, &hidden]).await?.iter().map(|r| r.get(0)).collect()
        };
        Ok(rows.into_iter().filter(|e| !self.ignores(e) && (allowed(e) || current.contains(&e.event_id))).collect())
    }
}

/// The timeline of `room` in `(lower, hi]` from `newest` (up to `limit + 1` events of the
/// window, newest first, as `queries::timelines` reads them).
pub async fn visible(
    client: &Client,
    room: &str,
    (lower, hi): (i64, i64),
    mut newest: Vec<EventRow>,
    limit: usize,
    filter: &RoomEventFilter,
    sight: &Sight<'_>,
) -> Result<Window> {
    let mut limited = newest.len() > limit;
    newest.truncate(limit);
    newest.reverse();
    let mut start = newest.first().map_or(hi + 1, |e| e.pos);
    let read = newest.len();
    let mut events = sight.filter(client, room, newest).await?;
    if events.len() < read && limited {
        // Hidden events made room: read further back, a chunk at a time.
        let chunk = (2 * limit).max(10);
        for _ in 0..MAX_ROUNDS {
            if events.len() >= limit {
                break;
            }
            let bounds = [(room.to_owned(), lower, start - 1)];
            let mut older =
                queries::timelines(client, &bounds, chunk as i64 + 1, filter).await?.remove(room).unwrap_or_default();
            let more = older.len() > chunk;
            older.truncate(chunk);
            older.reverse();
            if let Some(first) = older.first() {
                start = first.pos;
            }
            let mut seen = sight.filter(client, room, older).await?;
            seen.append(&mut events);
            events = seen;
            if !more {
                limited = false;
                break;
            }
        }
        if events.len() > limit {
            events.drain(..events.len() - limit);
            limited = true;
            start = events[0].pos;
        }
    }
    Ok(Window { events, limited, start })
}
