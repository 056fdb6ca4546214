//! Per-worker caches shared by the long-polls a worker holds. Each entry is exact for the
//! position it records; a long-poll that cannot use one goes to PostgreSQL. The maps are
//! plain concurrent hash maps, bounded by clearing them when they grow past their size: the
//! hot path (one lookup and one insert per response) must stay cheap.

use std::{collections::HashMap, hash::Hash, sync::Arc};

use dashmap::DashMap;
use ruma::{api::client::filter::FilterDefinition, push::PushConditionRoomCtx};
use trellis_core::StreamToken;

use crate::{queries::Membership, tail_cache::TailCache, unread::Counts, windows::Windows};

/// A concurrent map that forgets everything when it outgrows `cap` (checked periodically).
pub struct Bounded<K: Hash + Eq, V> {
    map: DashMap<K, V, foldhash::fast::RandomState>,
    cap: usize,
}

impl<K: Hash + Eq, V: Clone> Bounded<K, V> {
    fn new(cap: usize) -> Bounded<K, V> {
        Bounded { map: DashMap::with_hasher(foldhash::fast::RandomState::default()), cap }
    }

    pub fn get(&self, key: &K) -> Option<V> {
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

pub struct Caches {
    pub tails: TailCache,
    /// Recent windows of the receipts, typing and presence streams.
    pub windows: Windows,
    /// Parsed filters, stored (`user`, ID) or inline (`""`, the JSON): both never change.
    pub filters: Bounded<(String, String), Arc<FilterDefinition>>,
    /// A user's memberships and the positions they were read at.
    pub memberships: Bounded<String, (Arc<Vec<Membership>>, StreamToken)>,
    /// Unread counts of `(user, room)` as of an events position.
    pub unread: Bounded<(String, String), (i64, Counts)>,
    /// Lazy-loading: member events sent to `(user, device, room)`, with the position sent at.
    pub lazy_sent: Bounded<(String, String, String), Arc<HashMap<String, i64>>>,
    /// Each user's effective push rules and the account-data position they are exact for.
    pub push_rules: Bounded<String, (i64, Arc<crate::push_match::CompiledRules>)>,
    /// The push-rule context of `(user, room)` (member count, display name, power levels).
    pub push_rooms: Bounded<(String, String), Arc<PushConditionRoomCtx>>,
    /// Whether `(user, device)` held one-time or fallback keys at its last exact computation.
    /// A device's first key upload changes its device list, which wakes its user channel and
    /// so the exact path; the fast path reads the counts only for devices marked here.
    pub key_devices: Bounded<(String, String), bool>,
}

impl Caches {
    pub fn new() -> Caches {
        Caches {
            tails: TailCache::default(),
            windows: Windows::default(),
            filters: Bounded::new(100_000),
            memberships: Bounded::new(200_000),
            unread: Bounded::new(2_000_000),
            lazy_sent: Bounded::new(2_000_000),
            push_rules: Bounded::new(200_000),
            push_rooms: Bounded::new(2_000_000),
            key_devices: Bounded::new(1_000_000),
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
    }
}
