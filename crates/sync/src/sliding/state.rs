//! `required_state`: for a room sent whole, its current state that the configuration asks for
//! (`*` wildcards, `$ME`, and with `$LAZY` the members of the timeline's senders and targets);
//! for a room the client holds, only what changed since then, plus the state a widened
//! configuration now asks for that the old one did not. The configuration remembered for the
//! room keeps the lazily sent members, so they are not sent again until they change.
//!
//! A room the user left or was banned from shows its state as of that moment, never later.

use std::collections::{HashMap, HashSet};

use ruma::api::client::filter::RoomEventFilter;
use trellis_core::Result;
use trellis_storage::events::EventRow;

use super::{
    queries::{self, Wanted},
    request::{MEMBER, Required, WILDCARD, wants},
};
use crate::queries::{Client, Members, state_between};

/// One room's part in the state reads.
pub(crate) struct Ask<'a> {
    pub room: &'a str,
    /// The configuration to send with (lazy members of this timeline included).
    pub required: &'a Required,
    /// `None`: send whole. `Some((after, previous))`: the client has the room's state up to
    /// events position `after`, sent with configuration `previous`.
    pub held: Option<(i64, &'a Required)>,
    /// The user's leave or ban position, for a room they are no longer in.
    pub left_at: Option<i64>,
}

/// What the state reads found for one room.
#[derive(Default)]
pub(crate) struct Found {
    /// The `required_state` to send.
    pub required: Vec<EventRow>,
    /// Every state change since the client's position (all of it for a room sent whole).
    pub changes: Vec<EventRow>,
}

impl Found {
    pub(crate) fn changed(&self, kind: &str) -> bool {
        self.changes.iter().any(|e| e.kind == kind && (kind == MEMBER || e.state_key.as_deref() == Some("")))
    }
}

/// The state reads of all rooms of a response, a few queries in all.
pub(crate) async fn read(client: &Client, asks: &[Ask<'_>]) -> Result<HashMap<String, Found>> {
    let mut out: HashMap<String, Found> = HashMap::new();
    // Rooms sent whole, still joined: current state, narrowed in SQL to what any of them asks.
    let whole: Vec<&Ask> = asks.iter().filter(|a| a.held.is_none() && a.left_at.is_none()).collect();
    let mut wanted = Wanted::default();
    for a in &whole {
        widen(&mut wanted, a.required);
    }
    let rooms: Vec<&str> = whole.iter().map(|a| a.room).collect();
    let mut current = queries::current_state(client, &rooms, &wanted).await?;
    for a in &whole {
        let rows = current.remove(a.room).unwrap_or_default();
        let required = rows.iter().filter(|e| matches(a.required, e)).cloned().collect();
        out.insert(a.room.to_owned(), Found { required, changes: rows });
    }

    // Rooms the client holds, still joined: what changed since, and what a widened
    // configuration adds.
    let held: Vec<(&Ask, i64, &Required)> = asks
        .iter()
        .filter(|a| a.left_at.is_none())
        .filter_map(|a| a.held.map(|(after, prev)| (a, after, prev)))
        .collect();
    let bounds: Vec<(String, i64)> = held.iter().map(|(a, after, _)| (a.room.to_owned(), *after)).collect();
    let mut changes = queries::state_changes(client, &bounds).await?;
    let mut widened = Wanted::default();
    let mut widened_rooms = Vec::new();
    for (a, _, prev) in &held {
        if !prev.contains(&(WILDCARD.to_owned(), WILDCARD.to_owned())) && a.required.iter().any(|e| !prev.contains(e)) {
            let added: Required = a.required.difference(prev).cloned().collect();
            widen(&mut widened, &added);
            widened_rooms.push(a.room);
        }
    }
    let mut added = queries::current_state(client, &widened_rooms, &widened).await?;
    for (a, _, prev) in &held {
        let rows = changes.remove(a.room).unwrap_or_default();
        let mut required: Vec<EventRow> = rows.iter().filter(|e| matches(a.required, e)).cloned().collect();
        let seen: HashSet<String> = required.iter().map(|e| e.event_id.clone()).collect();
        for e in added.remove(a.room).unwrap_or_default() {
            if matches(a.required, &e) && !matches(prev, &e) && !seen.contains(&e.event_id) {
                required.push(e);
            }
        }
        required.sort_by_key(|e| e.pos);
        out.insert(a.room.to_owned(), Found { required, changes: rows });
    }

    // Rooms the user is no longer in: their state as of the leave or ban.
    for a in asks {
        let Some(at) = a.left_at else { continue };
        let after = a.held.map_or(0, |(after, _)| after);
        let bounds = [(a.room.to_owned(), after, at + 1)];
        let rows = state_between(client, &bounds, &RoomEventFilter::default(), Members::All)
            .await?
            .remove(a.room)
            .unwrap_or_default();
        let required = rows.iter().filter(|e| matches(a.required, e)).cloned().collect();
        out.insert(a.room.to_owned(), Found { required, changes: rows });
    }
    Ok(out)
}

fn matches(required: &Required, e: &EventRow) -> bool {
    e.state_key.as_deref().is_some_and(|k| wants(required, &e.kind, k))
}

/// Widens a state read to cover `required`, plus the name and avatar every room sent whole
/// reports.
fn widen(w: &mut Wanted, required: &Required) {
    w.types.insert("m.room.name".to_owned());
    w.types.insert("m.room.avatar".to_owned());
    for (kind, key) in required {
        if kind == WILDCARD {
            w.all_types = true;
        } else {
            w.types.insert(kind.clone());
        }
        if kind == MEMBER || kind == WILDCARD {
            if key == WILDCARD {
                w.all_members = true;
            } else {
                w.members.insert(key.clone());
            }
        }
    }
}

/// The members a lazy-loading client needs for `timeline`: its senders, and the targets of
/// its member events.
pub(crate) fn lazy_members(timeline: &[EventRow]) -> HashSet<String> {
    let mut out = HashSet::new();
    for e in timeline {
        out.insert(e.sender.clone());
        if e.kind == MEMBER
            && let Some(k) = &e.state_key
        {
            out.insert(k.clone());
        }
    }
    out
}
