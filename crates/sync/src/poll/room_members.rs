//! What a lazy-loading long-poll's fast path needs of a room's membership, shared by every
//! long-poll the worker holds: the member events of the room's speakers and the room's summary
//! (member counts, hero candidates). When a new member speaks, each of the room's devices
//! lacks that member's event; this reads it from PostgreSQL once per room, not once per device.
//!
//! A room's entry is exact as of one announced events position, `at`: its member events are
//! the latest at or before `at`. A long-poll whose window `(since, upto]` holds no member or
//! state event of the room can use an entry with `at >= since`; an older entry is started over.

use std::{collections::HashMap, sync::Arc};

use trellis_core::Result;
use trellis_storage::{Pool, events::EventRow};

use crate::{
    poll::room_slots::RoomSlots,
    queries::{self, HeroCandidates},
};

/// A room's summary as every member sees it but for the heroes, which leave out the viewer.
#[derive(Debug, Clone, Default)]
pub struct RoomSummary {
    pub joined: u64,
    pub invited: u64,
    pub candidates: HeroCandidates,
}

/// What the fast path gets for one room: the events of the wanted members that have one, and
/// the summary.
pub struct Found {
    pub members: Vec<Arc<EventRow>>,
    pub summary: Arc<RoomSummary>,
}

struct Entry {
    at: i64,
    members: HashMap<String, Option<Arc<EventRow>>>,
    summary: Option<Arc<RoomSummary>>,
}

#[derive(Default)]
pub struct RoomMembers {
    rooms: RoomSlots<Entry>,
}

impl RoomMembers {
    /// The member events of `wanted` in `room` for a long-poll whose window `(since, upto]`
    /// has no member or state event of the room, and the room's summary. Each
    /// missing piece is read once, by the first long-poll that needs it; the others wait and
    /// share it. Member events are as of at least `since`; the caller checks each is older
    /// than its timeline.
    pub async fn get(&self, pool: &Pool, room: &str, (since, upto): (i64, i64), wanted: &[&str]) -> Result<Found> {
        let fresh = || Entry { at: upto, members: HashMap::new(), summary: None };
        let mut entry = self.rooms.lock(room, fresh).await;
        if entry.at < since {
            // Members may have changed between the entry's position and `since`.
            **entry = fresh();
        }
        let missing: Vec<&str> = wanted.iter().copied().filter(|m| !entry.members.contains_key(*m)).collect();
        if !missing.is_empty() || entry.summary.is_none() {
            let client = pool.get().await?;
            if !missing.is_empty() {
                let wanted: Vec<(String, String, i64)> =
                    missing.iter().map(|m| (room.to_owned(), (*m).to_owned(), entry.at + 1)).collect();
                for m in &missing {
                    entry.members.insert((*m).to_owned(), None);
                }
                for row in queries::members_before(&client, &wanted).await? {
                    let member = row.state_key.clone().unwrap_or_default();
                    entry.members.insert(member, Some(Arc::new(row)));
                }
            }
            if entry.summary.is_none() {
                let counts = queries::member_counts(&client, &[room]).await?;
                let (joined, invited) = counts.get(room).copied().unwrap_or_default();
                let candidates = queries::hero_candidates(&client, &[room]).await?.remove(room).unwrap_or_default();
                entry.summary = Some(Arc::new(RoomSummary { joined, invited, candidates }));
            }
        }
        let members = wanted.iter().filter_map(|m| entry.members.get(*m).cloned().flatten()).collect();
        Ok(Found { members, summary: entry.summary.clone().unwrap_or_default() })
    }

    /// Drops entries nobody asked for lately.
    pub fn evict_idle(&self) {
        self.rooms.evict_idle();
    }
}
