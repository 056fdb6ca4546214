//! Lazy-loading of members: with `lazy_load_members`, a room's state carries only the member
//! events of the timeline's senders (and the syncing user), and a member event already sent to
//! this device is not sent again. What was sent is recorded with the events position of the
//! sync that sent it, so a client retrying an older token gets those members again.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::api::client::filter::{LazyLoadOptions, RoomEventFilter};
use trellis_core::Result;
use trellis_storage::events::EventRow;

use crate::{
    SyncWorker,
    poll::{room_members::RoomSummary, tail_cache::TailEvent},
    queries,
};

const SENT: &str = "SELECT room_id, member_id, event_id, pos FROM lazy_members_sent \
     WHERE user_id = $1 AND device_id = $2 AND room_id = ANY($3) AND pos <= $4";
/// The lazy-loading settings of a state filter, if it enables lazy-loading.
pub fn options(state: &RoomEventFilter) -> Option<bool> {
    match state.lazy_load_options {
        LazyLoadOptions::Enabled { include_redundant_members } => Some(include_redundant_members),
        LazyLoadOptions::Disabled => None,
    }
}

/// A room of a lazy-loading sync: its timeline, and whether it is sent whole (new to the
/// client, or full state), which brings the user's own member event and fresh members.
pub(crate) struct Room<'a> {
    pub room: &'a str,
    pub events: &'a [EventRow],
    pub whole: bool,
}

/// What a fast-path long-poll adds to a room under lazy-loading: the member events of the
/// timeline's senders the device lacks, and then the room's summary (as the exact path sends
/// one whenever the state carries a member event).
#[derive(Default)]
pub(crate) struct Added {
    pub members: Vec<Arc<EventRow>>,
    pub summary: Option<Arc<RoomSummary>>,
    /// What the device will hold once the response is sent (see [`SyncWorker::lazy_sent_out`]).
    current: Option<HashMap<String, i64>>,
}

impl SyncWorker {
    /// The member events a lazy-loading device needs with `events` (a window `(since, upto]`
    /// of `room` without member or state events), from memory, recording what is sent; `None`
    /// when only the exact path can tell (this worker does not know what the device has, or
    /// a member changed after the timeline began).
    pub(crate) async fn lazy_from_memory(
        &self,
        (user, device): (&str, &str),
        room: &str,
        events: &[Arc<TailEvent>],
        (since, upto): (i64, i64),
        include_redundant: bool,
    ) -> Result<Option<Added>> {
        let Some(first) = events.first() else { return Ok(Some(Added::default())) };
        let mut senders: Vec<&str> = Vec::new();
        for e in events {
            if !senders.contains(&e.row.sender.as_str()) {
                senders.push(&e.row.sender);
            }
        }
        let sent = self.caches.lazy_sent.get_at([user, device, room]);
        let wanted: Vec<&str> = if include_redundant {
            senders
        } else {
            let Some(sent) = &sent else { return Ok(None) };
            let mut wanted = Vec::new();
            for s in senders {
                match sent.get(s) {
                    Some(pos) if *pos <= since => {}
                    // Sent after `since`: an older token retried; the exact path resends.
                    Some(_) => return Ok(None),
                    None => wanted.push(s),
                }
            }
            wanted
        };
        if wanted.is_empty() {
            return Ok(Some(Added::default()));
        }
        let found = self.caches.room_members.get(&self.pool, room, (since, upto), &wanted).await?;
        if found.members.iter().any(|m| m.pos >= first.row.pos) {
            // A member changed after the timeline began (the shared entry is newer).
            return Ok(None);
        }
        let members = found.members;
        let mut current = sent.map(|m| (*m).clone()).unwrap_or_default();
        for m in &members {
            current.insert(m.state_key.clone().unwrap_or_default(), upto);
        }
        let summary = (!members.is_empty()).then_some(found.summary);
        Ok(Some(Added { members, summary, current: Some(current) }))
    }

    /// Records what a fast-path response sent under lazy-loading, once it is sure to be sent
    /// (in this worker's memory now, in PostgreSQL with the next batch).
    pub(crate) fn lazy_sent_out(&self, (user, device): (&str, &str), room: &str, added: &Added, upto: i64) {
        let Some(current) = &added.current else { return };
        for m in &added.members {
            let member = m.state_key.as_deref().unwrap_or_default();
            self.lazy_batch.record((user, device), room, member, &m.event_id, upto);
        }
        self.cache_members_sent(user, device, room, current.clone());
    }

    /// Adds to each room's state the member events its timeline needs and the device lacks,
    /// and records what is sent.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn lazy_members(
        &self,
        client: &deadpool_postgres::Client,
        (user, device): (&str, &str),
        since: Option<i64>,
        built: &[Room<'_>],
        states: &mut HashMap<String, Vec<EventRow>>,
        include_redundant: bool,
        upto: i64,
    ) -> Result<()> {
        let mut wanted = Vec::new();
        for b in built {
            let start = b.events.first().map_or(upto + 1, |e| e.pos);
            let mut members: HashSet<&str> = b.events.iter().map(|e| e.sender.as_str()).collect();
            if b.whole {
                members.insert(user);
            }
            for m in members {
                wanted.push((b.room.to_owned(), m.to_owned(), start));
            }
        }
        // A room sent whole (new to the client) gets its members afresh: what an earlier
        // membership of the device received may be long stale.
        let rooms: Vec<String> = built.iter().filter(|b| !b.whole).map(|b| b.room.to_owned()).collect();
        let sent = match since {
            Some(since) if !include_redundant => self.members_sent(client, user, device, &rooms, since).await?,
            _ => HashMap::new(),
        };
        let members = queries::members_before(client, &wanted).await?;
        let mut delivered: Vec<EventRow> = Vec::new();
        // Per room, the members whose current event the device has, and since when.
        let mut current: HashMap<String, HashMap<String, i64>> = HashMap::new();
        // The member changes of a gap are already in the state.
        let mut in_state = HashSet::new();
        for (room, rows) in states.iter() {
            for m in rows.iter().filter(|e| e.kind == "m.room.member") {
                current.entry(room.clone()).or_default().insert(m.state_key.clone().unwrap_or_default(), upto);
                in_state.insert(m.event_id.clone());
                delivered.push(m.clone());
            }
        }
        for m in members {
            if in_state.contains(&m.event_id) {
                continue;
            }
            let member = m.state_key.clone().unwrap_or_default();
            let key = (m.room_id.clone(), member.clone());
            if let Some((event_id, pos)) = sent.get(&key)
                && *event_id == m.event_id
            {
                current.entry(m.room_id.clone()).or_default().insert(member, *pos);
                continue;
            }
            current.entry(m.room_id.clone()).or_default().insert(member, upto);
            delivered.push(m.clone());
            states.entry(m.room_id.clone()).or_default().push(m);
        }
        for b in built {
            delivered.extend(b.events.iter().filter(|e| e.kind == "m.room.member").cloned());
            // Members whose event is in this timeline are current on the device too.
            for e in b.events.iter().filter(|e| e.kind == "m.room.member") {
                current.entry(b.room.to_owned()).or_default().insert(e.state_key.clone().unwrap_or_default(), upto);
            }
        }
        for (room, members) in current {
            self.cache_members_sent(user, device, &room, members);
        }
        self.record_members_sent(client, user, device, &delivered, upto).await
    }

    /// Member events this device already has: `(room, member) → (event ID, position sent at)`.
    pub(crate) async fn members_sent(
        &self,
        client: &deadpool_postgres::Client,
        user: &str,
        device: &str,
        rooms: &[String],
        since: i64,
    ) -> Result<HashMap<(String, String), (String, i64)>> {
        let stmt = client.prepare_cached(SENT).await?;
        Ok(client
            .query(&stmt, &[&user, &device, &rooms, &since])
            .await?
            .iter()
            .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
            .collect())
    }

    /// Remembers, for the fast path, which members each room's device has current.
    pub(crate) fn cache_members_sent(&self, user: &str, device: &str, room: &str, members: HashMap<String, i64>) {
        self.caches.lazy_sent.insert_at([user, device, room], std::sync::Arc::new(members));
    }

    pub(crate) async fn record_members_sent(
        &self,
        client: &deadpool_postgres::Client,
        user: &str,
        device: &str,
        sent: &[EventRow],
        pos: i64,
    ) -> Result<()> {
        let mut seen = HashSet::new();
        let sent: Vec<&EventRow> = sent
            .iter()
            .filter(|e| e.kind == "m.room.member")
            .filter(|e| seen.insert((e.room_id.clone(), e.state_key.clone())))
            .collect();
        let records = sent.iter().map(|e| {
            (user, device, e.room_id.as_str(), e.state_key.as_deref().unwrap_or_default(), e.event_id.as_str(), pos)
        });
        crate::poll::lazy_batch::write(client, records).await
    }
}
