//! Per-worker caches shared by the long-polls a worker holds. Each entry is exact for the
//! position it records; a long-poll that cannot use one goes to PostgreSQL. The maps are
//! plain concurrent hash maps, bounded by clearing them when they grow past their size: the
//! hot path (one lookup and one insert per response) must stay cheap.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::Arc,
};

use dashmap::DashMap;
use ruma::{api::client::filter::FilterDefinition, push::PushConditionRoomCtx};
use trellis_core::StreamToken;

use crate::{
    poll::room_members::RoomMembers, poll::tail_cache::TailCache, poll::windows::Windows, push::unread::Counts,
    queries::Membership,
};

/// A concurrent map that forgets everything when it outgrows `cap` (checked periodically).
pub struct Bounded<K: Hash + Eq, V> {
    map: DashMap<K, V, foldhash::fast::RandomState>,
    cap: usize,
}

impl<K: Hash + Eq, V: Clone> Bounded<K, V> {
    fn new(cap: usize) -> Bounded<K, V> {
        Bounded { map: DashMap::with_hasher(foldhash::fast::RandomState::default()), cap }
    }

    /// The value under `key`, which may be a borrowed form of the key (`str` for a `String`,
    /// [`Parts`] for a tuple of strings), so a lookup copies nothing.
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).map(|v| v.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        self.map.insert(key, value);
    }

    fn trim(&self) {
        if self.map.len() > self.cap {
            self.map.clear();
        }
    }
}

/// A key of several strings, looked up without building the owned key: a [`Key`] lends
/// itself as `dyn Parts`, and so does an array of `&str`.
pub trait Parts {
    fn part(&self, i: usize) -> &str;
    fn count(&self) -> usize;
}

impl<const N: usize> Parts for [&str; N] {
    fn part(&self, i: usize) -> &str {
        self[i]
    }
    fn count(&self) -> usize {
        N
    }
}

/// An owned key of `N` strings; it hashes and compares by its parts, like its borrowed forms.
#[derive(Clone)]
pub struct Key<const N: usize>([String; N]);

impl<const N: usize> Key<N> {
    pub fn new(parts: [&str; N]) -> Key<N> {
        Key(parts.map(str::to_owned))
    }
}

impl<const N: usize> Parts for Key<N> {
    fn part(&self, i: usize) -> &str {
        &self.0[i]
    }
    fn count(&self) -> usize {
        N
    }
}

impl<'a, const N: usize> Borrow<dyn Parts + 'a> for Key<N> {
    fn borrow(&self) -> &(dyn Parts + 'a) {
        self
    }
}

impl Hash for dyn Parts + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for i in 0..self.count() {
            state.write(self.part(i).as_bytes());
            state.write_u8(0xff);
        }
    }
}

impl PartialEq for dyn Parts + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.count() == other.count() && (0..self.count()).all(|i| self.part(i) == other.part(i))
    }
}

impl Eq for dyn Parts + '_ {}

impl<const N: usize> Hash for Key<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn Parts).hash(state)
    }
}

impl<const N: usize> PartialEq for Key<N> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<const N: usize> Eq for Key<N> {}

impl<const N: usize, V: Clone> Bounded<Key<N>, V> {
    /// The value under the key of `parts`.
    pub fn get_at(&self, parts: [&str; N]) -> Option<V> {
        self.map.get(&parts as &dyn Parts).map(|v| v.clone())
    }

    /// Sets the value under the key of `parts` (copying the parts only for a new key).
    pub fn insert_at(&self, parts: [&str; N], value: V) {
        match self.map.get_mut(&parts as &dyn Parts) {
            Some(mut v) => *v = value,
            None => {
                self.map.insert(Key::new(parts), value);
            }
        }
    }
}

pub struct Caches {
    pub tails: TailCache,
    /// Member events and summaries of rooms, for lazy-loading long-polls (see `room_members.rs`).
    pub room_members: RoomMembers,
    /// Recent windows of the receipts, typing and presence streams.
    pub windows: Windows,
    /// Parsed filters, stored (`user`, ID) or inline (`""`, the JSON): both never change.
    pub filters: Bounded<Key<2>, Arc<FilterDefinition>>,
    /// A user's memberships and the positions they were read at.
    pub memberships: Bounded<String, (Arc<Vec<Membership>>, StreamToken)>,
    /// Unread counts of `(user, room)` as of an events position.
    pub unread: Bounded<Key<2>, (i64, Counts)>,
    /// Lazy-loading: member events sent to `(user, device, room)`, with the position sent at.
    pub lazy_sent: Bounded<Key<3>, Arc<HashMap<String, i64>>>,
    /// Each user's effective push rules and the account-data position they are exact for.
    pub push_rules: Bounded<String, (i64, Arc<crate::push::matching::CompiledRules>)>,
    /// The push-rule context of `(user, room)` (member count, display name, power levels).
    pub push_rooms: Bounded<Key<2>, Arc<PushConditionRoomCtx>>,
    /// Whether `(user, device)` held one-time or fallback keys at its last exact computation.
    /// A device's first key upload changes its device list, which wakes its user channel and
    /// so the exact path; the fast path reads the counts only for devices marked here.
    pub key_devices: Bounded<Key<2>, bool>,
    /// Each user's ignored users and the positions the list is exact for.
    pub ignored: Bounded<String, (StreamToken, crate::poll::ignored::Ignored)>,
    /// Each room's type (`m.space`, …), from its create event: it never changes.
    pub room_types: Bounded<String, Option<String>>,
}

impl Caches {
    pub fn new() -> Caches {
        Caches {
            tails: TailCache::default(),
            room_members: RoomMembers::default(),
            windows: Windows::default(),
            filters: Bounded::new(100_000),
            memberships: Bounded::new(200_000),
            unread: Bounded::new(2_000_000),
            lazy_sent: Bounded::new(2_000_000),
            push_rules: Bounded::new(200_000),
            push_rooms: Bounded::new(2_000_000),
            key_devices: Bounded::new(1_000_000),
            ignored: Bounded::new(200_000),
            room_types: Bounded::new(1_000_000),
        }
    }

    /// Called periodically: caps every map.
    pub fn trim(&self) {
        self.filters.trim();
        self.memberships.trim();
        self.unread.trim();
        self.lazy_sent.trim();
        self.push_rules.trim();
        self.push_rooms.trim();
        self.key_devices.trim();
        self.ignored.trim();
        self.room_types.trim();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_parts_find_owned_keys() {
        let cache: Bounded<Key<2>, u32> = Bounded::new(10);
        cache.insert_at(["@u:x", "!r:x"], 1);
        cache.insert_at(["@u:x", "!s:x"], 2);
        assert_eq!(cache.get_at(["@u:x", "!r:x"]), Some(1));
        assert_eq!(cache.get_at(["@u:x", "!s:x"]), Some(2));
        // The split between parts is part of the key.
        assert_eq!(cache.get_at(["@u:x!", "r:x"]), None);
        cache.insert_at(["@u:x", "!r:x"], 3);
        assert_eq!(cache.get_at(["@u:x", "!r:x"]), Some(3), "replaced in place");
        assert_eq!(cache.map.len(), 2);
        let strings: Bounded<String, u32> = Bounded::new(10);
        strings.insert("@u:x".to_owned(), 4);
        assert_eq!(strings.get("@u:x"), Some(4));
    }
}
