//! Shared windows of the receipts, typing and presence streams, for the fast path: what
//! changed between two positions is read from PostgreSQL once per worker and then filtered in
//! memory for each woken long-poll (its rooms, its private receipts). In a room of thousands,
//! one receipt or presence change then costs one query, not one per member.
//!
//! A window covers every room, not only the rooms whose wake-ups arrived: a change on another
//! of the user's channels whose wake-up is still on its way is below the same announced
//! position and so already committed, and the window holds it.

use std::{collections::HashMap, sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use serde_json::Value;
use trellis_core::{Error, Result, Stream, StreamPos, time::now_ms};

use crate::{
    streams::presence::PresenceRow,
    streams::receipts::{ReceiptRow, receipt_events_of},
    streams::typing::typing_event,
};

/// Wider windows (a client far behind) go to the exact path instead.
pub const MAX_WINDOW: i64 = 5_000;

const RECEIPTS: &str =
    "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts WHERE pos > $1 AND pos <= $2";
const TYPING: &str = "SELECT c.room_id, t.user_id FROM typing_changes c \
     LEFT JOIN typing t ON t.room_id = c.room_id AND t.expires_ts > $3 \
     WHERE c.pos > $1 AND c.pos <= $2 ORDER BY c.room_id, t.user_id";
const PRESENCE: &str = "SELECT p.user_id, p.state, p.status_msg, p.last_active_ts, p.currently_active, \
     ARRAY(SELECT m.room_id FROM memberships m WHERE m.user_id = p.user_id AND m.membership = 'join') \
     FROM presence p WHERE p.pos > $1 AND p.pos <= $2";

/// What changed in one stream between two positions.
pub enum Window {
    Receipts(Vec<ReceiptRow>),
    /// Rooms whose typers changed, with their typers.
    Typing(HashMap<String, Vec<String>>),
    /// Changed presence, each with the rooms its user is joined to.
    Presence(Vec<(PresenceRow, Vec<String>)>),
}

impl Window {
    /// This window's room events for a user joined to `rooms`: `m.receipt` (private receipts
    /// only their owner's) or `m.typing`, by room.
    pub fn room_events(&self, user: &str, rooms: &[String]) -> HashMap<String, Value> {
        match self {
            Window::Receipts(rows) => receipt_events_of(
                rows.iter().filter(|r| (r.kind == "m.read" || r.user == user) && rooms.contains(&r.room)),
            ),
            Window::Typing(changed) => changed
                .iter()
                .filter(|(room, _)| rooms.contains(room))
                .map(|(room, users)| (room.clone(), typing_event(users)))
                .collect(),
            Window::Presence(_) => HashMap::new(),
        }
    }

    /// This window's `m.presence` events seen by a user joined to `rooms`: the users sharing
    /// one of them, and the user themself.
    pub fn presence_events(&self, user: &str, rooms: &[String]) -> Vec<Value> {
        let Window::Presence(rows) = self else { return Vec::new() };
        let now = now_ms();
        rows.iter()
            .filter(|(p, theirs)| p.user == user || theirs.iter().any(|r| rooms.contains(r)))
            .map(|(p, _)| p.event(now))
            .collect()
    }
}

/// Recently read windows, by `(stream, since, upto)`; concurrent polls asking for the same
/// window wait for one read.
pub struct Windows {
    cache: moka::future::Cache<(Stream, StreamPos, StreamPos), Arc<Window>>,
}

impl Default for Windows {
    fn default() -> Windows {
        Windows {
            cache: moka::future::Cache::builder().max_capacity(4_096).time_to_live(Duration::from_secs(10)).build(),
        }
    }
}

impl Windows {
    /// The changes of `stream` in `(since, upto]`; `upto` must be an announced position.
    pub async fn get(&self, pool: &Pool, stream: Stream, since: StreamPos, upto: StreamPos) -> Result<Arc<Window>> {
        self.cache
            .try_get_with((stream, since, upto), async move { load(pool, stream, since, upto).await.map(Arc::new) })
            .await
            .map_err(|e: Arc<Error>| Error::internal(format!("reading the {stream:?} window: {e}")))
    }
}

async fn load(pool: &Pool, stream: Stream, since: StreamPos, upto: StreamPos) -> Result<Window> {
    let client = pool.get().await?;
    Ok(match stream {
        Stream::Receipts => {
            let stmt = client.prepare_cached(RECEIPTS).await?;
            Window::Receipts(client.query(&stmt, &[&since, &upto]).await?.iter().map(ReceiptRow::from_row).collect())
        }
        Stream::Typing => {
            let stmt = client.prepare_cached(TYPING).await?;
            let mut changed: HashMap<String, Vec<String>> = HashMap::new();
            for row in client.query(&stmt, &[&since, &upto, &now_ms()]).await? {
                let typers = changed.entry(row.get(0)).or_default();
                if let Some(user) = row.get::<_, Option<String>>(1) {
                    typers.push(user);
                }
            }
            Window::Typing(changed)
        }
        Stream::Presence => {
            let stmt = client.prepare_cached(PRESENCE).await?;
            let rows = client.query(&stmt, &[&since, &upto]).await?;
            Window::Presence(rows.iter().map(|r| (PresenceRow::from_row(r), r.get(5))).collect())
        }
        other => return Err(Error::internal(format!("no shared window for the {other:?} stream"))),
    })
}
