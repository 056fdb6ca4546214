//! What a lazy-loading long-poll's fast path needs of a room's membership, shared by every
//! long-poll the worker holds: the member events of the room's speakers and the room's summary
//! (member counts, hero candidates). When a new member speaks, each of the room's devices
//! lacks that member's event; this reads it from PostgreSQL once per room, not once per device.
//!
//! A room's entry is exact as of one announced events position, `at`: its member events are
//! the latest at or before `at`. A long-poll whose window `(since, upto]` holds no member or
//! state event of the room can use an entry with `at >= since`; an older entry is started over.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use dashmap::DashMap;
use trellis_core::Result;
use trellis_storage::{
    Pool,
    events::{COLUMNS, EventRow},
};

use crate::queries::{self, HeroCandidates};

/// Entries unused this long are dropped.
const IDLE: Duration = Duration::from_secs(600);

/// The latest member event of each wanted member at or before a position.
static MEMBERS_AT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT m.* FROM unnest($2::text[]) AS w(member) CROSS JOIN LATERAL (SELECT {COLUMNS} FROM events \
         WHERE room_id = $1 AND type = 'm.room.member' AND state_key = w.member AND pos <= $3 \
         ORDER BY pos DESC LIMIT 1) m"
    )
});

/// A room's summary as every member sees it but for the heroes, which leave out the viewer.
#[derive(Debug, Clone, Default)]
pub struct RoomSummary {
    pub joined: u64,
    pub invited: u64,
    pub candidates: HeroCandidates,
}

/// What the fast path gets for one room: the wanted members' events (`None` for a member
/// without one) and, when asked for, the summary.
pub struct Found {
    pub members: Vec<(String, Option<Arc<EventRow>>)>,
    pub summary: Option<Arc<RoomSummary>>,
}

struct Entry {
    at: i64,
    members: HashMap<String, Option<Arc<EventRow>>>,
    summary: Option<Arc<RoomSummary>>,
    last_used: Instant,
}

#[derive(Default)]
pub struct RoomMembers {
    rooms: DashMap<String, Arc<tokio::sync::Mutex<Entry>>>,
}

impl RoomMembers {
    /// The member events of `wanted` in `room` for a long-poll whose window `(since, upto]`
    /// has no member or state event of the room, and the room's summary if `summary`. Each
    /// missing piece is read once, by the first long-poll that needs it; the others wait and
    /// share it. Member events are as of at least `since`; the caller checks each is older
    /// than its timeline.
    pub async fn get(
        &self,
        pool: &Pool,
        room: &str,
        (since, upto): (i64, i64),
        wanted: &[&str],
        summary: bool,
    ) -> Result<Found> {
        let slot = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| {
                let e = Entry { at: upto, members: HashMap::new(), summary: None, last_used: Instant::now() };
                Arc::new(tokio::sync::Mutex::new(e))
            })
            .clone();
        let mut entry = slot.lock().await;
        entry.last_used = Instant::now();
        if entry.at < since {
            // Members may have changed between the entry's position and `since`.
            *entry = Entry { at: upto, members: HashMap::new(), summary: None, last_used: Instant::now() };
        }
        let missing: Vec<&str> = wanted.iter().copied().filter(|m| !entry.members.contains_key(*m)).collect();
        if !missing.is_empty() || (summary && entry.summary.is_none()) {
            let client = pool.get().await?;
            if !missing.is_empty() {
                let stmt = client.prepare_cached(&MEMBERS_AT).await?;
                let rows = client.query(&stmt, &[&room, &missing, &entry.at]).await?;
                for m in &missing {
                    entry.members.insert((*m).to_owned(), None);
                }
                for row in rows.iter().map(EventRow::from_row) {
                    let member = row.state_key.clone().unwrap_or_default();
                    entry.members.insert(member, Some(Arc::new(row)));
                }
            }
            if summary && entry.summary.is_none() {
                let counts = queries::member_counts(&client, &[room]).await?;
                let (joined, invited) = counts.get(room).copied().unwrap_or_default();
                let candidates = queries::hero_candidates(&client, &[room]).await?.remove(room).unwrap_or_default();
                entry.summary = Some(Arc::new(RoomSummary { joined, invited, candidates }));
            }
        }
        let members = wanted.iter().map(|m| ((*m).to_owned(), entry.members.get(*m).cloned().flatten())).collect();
        Ok(Found { members, summary: if summary { entry.summary.clone() } else { None } })
    }

    /// Drops entries nobody asked for lately.
    pub fn evict_idle(&self) {
        self.rooms.retain(|_, slot| match slot.try_lock() {
            Ok(e) => e.last_used.elapsed() < IDLE,
            Err(_) => true,
        });
    }
}
