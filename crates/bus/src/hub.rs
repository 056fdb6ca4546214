//! The process-local side of the bus: which held long-polls listen on which channels, what
//! this process knows of each channel's changes, and waking the long-polls. Both backends
//! feed it.
//!
//! Knowledge: for a channel that has been subscribed since position `known_since`, every
//! change after that position is delivered here, so a long-poll whose token is at or past
//! `known_since` can tell "nothing new" without asking PostgreSQL.
//!
//! Batches: the events announcer publishes one batch of channels per watermark. Waiters are
//! woken at the batch's end, not at each channel, so a waiter never sees half a batch (room A
//! notified, room B of the same watermark not yet). The backend says when a batch ended: the
//! memory bus at once, the Redis bus as `batches.rs` tells.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use foldhash::{HashMap as FastMap, HashSet as FastSet};
use parking_lot::Mutex;
use tokio::sync::Notify;
use trellis_core::{Stream, StreamPos, StreamToken};

use crate::Channel;

/// One long-poll's wake-up slot.
pub(crate) struct Waiter {
    id: u64,
    announced: [AtomicI64; 7],
    notify: Notify,
    /// Streams (bit per index in `Stream::ALL`) whose room-channel changes do not wake this
    /// waiter: its long-poll's filter shuts them out, so the wake-up would only be thrown
    /// away — in a room of thousands, one presence change would wake every long-poll.
    deaf: AtomicU8,
}

impl Waiter {
    pub(crate) async fn wait(&self) {
        // `notify_one` stores a permit when nobody waits, so a wake-up between two calls
        // is not lost.
        self.notify.notified().await;
    }

    /// Forgets a wake-up stored while nobody waited.
    pub(crate) fn clear(&self) {
        let notified = std::pin::pin!(self.notify.notified());
        // Polled once: a stored permit is consumed; otherwise nothing is kept waiting.
        let _ = notified.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    }

    /// Sets the streams whose room-channel changes do not wake this waiter.
    pub(crate) fn set_deaf(&self, streams: &[Stream]) {
        let mask = streams.iter().fold(0u8, |m, s| m | 1 << index(*s));
        self.deaf.store(mask, Ordering::Relaxed);
    }

    fn hears(&self, stream: Stream) -> bool {
        self.deaf.load(Ordering::Relaxed) & (1 << index(stream)) == 0
    }

    pub(crate) fn announced(&self) -> StreamToken {
        let mut token = StreamToken::default();
        for (i, s) in Stream::ALL.iter().enumerate() {
            token.set(*s, self.announced[i].load(Ordering::Acquire));
        }
        token
    }

    fn wake(&self, pos: Option<(Stream, StreamPos)>) {
        if let Some((stream, pos)) = pos {
            self.announced[index(stream)].fetch_max(pos, Ordering::AcqRel);
        }
        self.notify.notify_one();
    }
}

fn index(stream: Stream) -> usize {
    Stream::ALL.iter().position(|s| *s == stream).expect("known stream")
}

struct Entry {
    channel: Option<Channel>,
    /// By waiter ID: a popular room holds thousands, and each leaves on its own.
    waiters: FastMap<u64, Arc<Waiter>>,
    /// Subscribed at the backend (Redis acknowledged it).
    live: bool,
    /// When the last waiter left; the backend unsubscribes after a linger period.
    idle_since: Option<Instant>,
    /// The highest position announced on this channel, per stream.
    last: [StreamPos; 7],
    /// Every change after these positions is known here; `None` until a long-poll sets a
    /// baseline, and again after the connection to Redis dropped.
    known_since: Option<[StreamPos; 7]>,
}

impl Entry {
    fn new(channel: Option<Channel>) -> Entry {
        Entry { channel, waiters: FastMap::default(), live: false, idle_since: None, last: [0; 7], known_since: None }
    }
}

/// What a subscription knows of changes after a token.
#[derive(Debug, Clone, Default)]
pub struct News {
    /// Every channel of the subscription has been watched since the token: `changes` is
    /// the complete list. When false, only PostgreSQL can tell.
    pub known: bool,
    /// Channels that changed after the token: the stream and its highest announced position.
    pub changes: Vec<(Channel, Stream, StreamPos)>,
    /// Every events-stream change at or below this position has reached this process (the
    /// latest batch-end marker).
    pub events_complete: StreamPos,
}

#[derive(Default)]
struct Keys {
    entries: FastMap<String, Entry>,
    /// Channels with events-stream changes whose batch has not ended yet.
    pending: FastSet<String>,
}

#[derive(Default)]
pub(crate) struct Hub {
    keys: Mutex<Keys>,
    events_complete: AtomicI64,
    next_id: AtomicU64,
    /// Bumped by every outage: a subscription confirmed in an older epoch may be gone.
    epoch: AtomicU64,
}

impl Hub {
    pub(crate) fn new_waiter(&self) -> Arc<Waiter> {
        Arc::new(Waiter {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            announced: Default::default(),
            notify: Notify::new(),
            deaf: AtomicU8::new(0),
        })
    }

    /// Adds `waiter` to the channels of `keys`; `live` marks them live at once (a backend
    /// that needs no acknowledgement). Returns whether every one of them is live.
    pub(crate) fn register(&self, keys: Vec<(String, Channel)>, waiter: &Arc<Waiter>, live: bool) -> bool {
        let mut k = self.keys.lock();
        let mut all_live = true;
        for (key, channel) in keys {
            let entry = k.entries.entry(key).or_insert_with(|| Entry::new(Some(channel)));
            entry.waiters.insert(waiter.id, waiter.clone());
            entry.idle_since = None;
            entry.live |= live;
            all_live &= entry.live;
        }
        all_live
    }

    pub(crate) fn unregister<'a>(&self, keys: impl Iterator<Item = &'a String>, waiter: &Waiter) {
        let mut k = self.keys.lock();
        for key in keys {
            if let Some(entry) = k.entries.get_mut(key) {
                entry.waiters.remove(&waiter.id);
                if entry.waiters.is_empty() {
                    entry.idle_since = Some(Instant::now());
                }
            }
        }
    }

    /// A change on `key`. Events-stream changes wake at the end of their batch; changes of
    /// the other streams (whose writers publish independently) wake at once.
    pub(crate) fn dispatch(&self, key: &str, stream: Stream, pos: StreamPos) {
        let mut k = self.keys.lock();
        let Some(entry) = k.entries.get_mut(key) else { return };
        let slot = &mut entry.last[index(stream)];
        *slot = (*slot).max(pos);
        if stream == Stream::Events {
            k.pending.insert(key.to_owned());
        } else {
            let in_room = matches!(entry.channel, Some(Channel::Room(_)));
            let woken: Vec<Arc<Waiter>> =
                entry.waiters.values().filter(|w| !in_room || w.hears(stream)).cloned().collect();
            drop(k);
            metrics::counter!("trellis_bus_wakeups_total", "stream" => "other").increment(woken.len() as u64);
            for w in woken {
                w.wake(Some((stream, pos)));
            }
        }
    }

    /// The end of an events batch at watermark `pos`: everything up to it has arrived.
    pub(crate) fn batch_end(&self, pos: StreamPos) {
        let mut k = self.keys.lock();
        self.events_complete.fetch_max(pos, Ordering::AcqRel);
        let pending: Vec<String> = k.pending.drain().collect();
        let mut woken: Vec<Arc<Waiter>> = Vec::new();
        for key in pending {
            if let Some(entry) = k.entries.get(&key) {
                woken.extend(entry.waiters.values().cloned());
            }
        }
        // Woken outside the lock: the long-polls woken first need it at once.
        drop(k);
        metrics::counter!("trellis_bus_wakeups_total", "stream" => "events").increment(woken.len() as u64);
        for w in woken {
            w.wake(Some((Stream::Events, pos)));
        }
    }

    /// Every events batch up to `pos` has been heard and ended (a catch-up barrier said so);
    /// nothing new to wake for.
    pub(crate) fn complete_to(&self, pos: StreamPos) {
        self.events_complete.fetch_max(pos, Ordering::AcqRel);
    }

    /// Wakes every waiter without a position (health changed: look at PostgreSQL again).
    pub(crate) fn wake_all(&self) {
        let k = self.keys.lock();
        for entry in k.entries.values() {
            for w in entry.waiters.values() {
                w.wake(None);
            }
        }
    }

    /// Messages may have been lost and subscriptions with them: nothing is known, and no
    /// channel counts as live, until it is subscribed again and given a new baseline.
    pub(crate) fn forget_all(&self) {
        let mut k = self.keys.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for entry in k.entries.values_mut() {
            entry.known_since = None;
            entry.live = false;
        }
        k.pending.clear();
    }

    /// Sets the baseline of live channels that have none: every change after `pos` will be
    /// delivered. `pos` must have been read after the channels became live.
    pub(crate) fn baseline<'a>(&self, keys: impl Iterator<Item = &'a String>, pos: &StreamToken) {
        let mut k = self.keys.lock();
        for key in keys {
            if let Some(entry) = k.entries.get_mut(key)
                && entry.live
                && entry.known_since.is_none()
            {
                entry.known_since = Some(Stream::ALL.map(|s| pos.get(s)));
            }
        }
    }

    /// What is known of changes on `keys` after `since`.
    pub(crate) fn news<'a>(&self, keys: impl Iterator<Item = &'a String>, since: &StreamToken) -> News {
        let k = self.keys.lock();
        let mut news =
            News { known: true, changes: Vec::new(), events_complete: self.events_complete.load(Ordering::Acquire) };
        for key in keys {
            let Some(entry) = k.entries.get(key) else {
                news.known = false;
                continue;
            };
            match entry.known_since {
                Some(known) if entry.live && Stream::ALL.iter().all(|s| known[index(*s)] <= since.get(*s)) => {}
                _ => news.known = false,
            }
            for s in Stream::ALL {
                let last = entry.last[index(s)];
                if last > since.get(s)
                    && let Some(c) = &entry.channel
                {
                    news.changes.push((c.clone(), s, last));
                }
            }
        }
        news
    }

    /// Keys among `keys` that the backend has not acknowledged yet.
    pub(crate) fn not_live(&self, keys: &[String]) -> Vec<String> {
        let k = self.keys.lock();
        keys.iter().filter(|key| k.entries.get(*key).is_none_or(|e| !e.live)).cloned().collect()
    }

    /// Every registered key the backend has not acknowledged.
    pub(crate) fn all_not_live(&self) -> Vec<String> {
        let k = self.keys.lock();
        k.entries.iter().filter(|(_, e)| !e.live).map(|(key, _)| key.clone()).collect()
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Marks `keys` live, unless an outage began since `epoch` (then their subscription may
    /// have been lost with the old connection).
    pub(crate) fn mark_live_since(&self, keys: &[String], epoch: u64) -> bool {
        let mut k = self.keys.lock();
        if self.epoch.load(Ordering::Acquire) != epoch {
            return false;
        }
        for key in keys {
            if let Some(entry) = k.entries.get_mut(key) {
                entry.live = true;
            }
        }
        true
    }

    /// Registers a channel that is always listened to (the batch-end marker).
    pub(crate) fn ensure(&self, key: &str) {
        let mut k = self.keys.lock();
        k.entries.entry(key.to_owned()).or_insert_with(|| Entry::new(None));
    }

    /// Those of `keys` this process listens to (subscribed and acknowledged).
    pub(crate) fn listening<'a>(&self, keys: impl Iterator<Item = &'a str>) -> FastSet<String> {
        let k = self.keys.lock();
        keys.filter(|key| k.entries.get(*key).is_some_and(|e| e.live)).map(str::to_owned).collect()
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.keys.lock().entries.contains_key(key)
    }

    /// Removes and returns the keys idle for longer than `linger`.
    pub(crate) fn take_idle(&self, linger: Duration) -> Vec<String> {
        let mut k = self.keys.lock();
        let now = Instant::now();
        let idle: Vec<String> = k
            .entries
            .iter()
            .filter(|(_, e)| {
                e.channel.is_some() && e.waiters.is_empty() && e.idle_since.is_some_and(|t| now - t >= linger)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &idle {
            k.entries.remove(key);
            k.pending.remove(key);
        }
        idle
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.lock().entries.values().filter(|e| e.channel.is_some()).count()
    }
}
