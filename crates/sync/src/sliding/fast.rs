//! The fast path of a woken sliding sync long-poll. When the only news since the connection's
//! last answer is new events in joined rooms it holds live, the answer comes from this
//! worker's memory: the rooms and list order of that answer (a [`Snapshot`]), the rooms'
//! shared tails and the cached unread counts, without reading the user's rooms again.
//!
//! Other users' receipts and typing in those rooms come from the worker's shared windows of
//! those streams, as `/sync`'s fast path reads them. Anything the fast path cannot vouch for
//! exactly goes to the exact path (`sliding_answer`): news on the user's channel or of another
//! stream (memberships, account data, the user's own receipts, to-device, keys), state or
//! member events, a parent and its relation in one window,
//! a limited timeline, a room entering a window or leaving them all, a changed request.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use ruma::{
    OwnedRoomId, UInt,
    api::client::sync::sync_events::v5::response::{E2EE, Extensions, Room, ToDevice},
    serde::Raw,
};
use trellis_bus::{Channel, Subscription};
use trellis_core::{Result, Stream, StreamToken, time::now_ms};
use trellis_proto::sync::SlidingSyncRequest;
use trellis_storage::events::{BUMP_TYPES, Viewer};

use super::{
    connection::{Key, RoomSent, State},
    extensions,
    lists::{self, Candidate, Children},
    request::{MEMBER, Request, RoomConfig},
    response::{self, Body},
};
use crate::{
    SyncWorker,
    poll::{fast::relates_within, response::raw, tail_cache::TailEvent, windows::MAX_WINDOW},
    push::unread::Counts,
};

/// What the exact path knew when it last answered a connection: enough to answer the next
/// request from memory while only events arrive.
pub(crate) struct Snapshot {
    /// The connection's stored position and the stream token the answer reached.
    pub position: i64,
    pub token: StreamToken,
    /// The request answered, without what changes from one request to the next.
    pub request: SlidingSyncRequest,
    /// Every room the user has a membership of, in list order.
    pub candidates: Vec<Candidate>,
    pub children: Children,
    /// No to-device message of the device at or below this position is left: the answer
    /// acknowledged (deleted) them, or had none to send.
    pub to_device_clean: Option<i64>,
}

/// The snapshots of the connections this worker answered last, by connection.
pub(crate) struct Snapshots {
    cache: moka::sync::Cache<Key, Arc<Snapshot>>,
}

impl Snapshots {
    pub(crate) fn new() -> Snapshots {
        Snapshots {
            cache: moka::sync::Cache::builder()
                // Weighed by rooms: a few million candidates at most.
                .weigher(|_, s: &Arc<Snapshot>| u32::try_from(s.candidates.len() + 1).unwrap_or(u32::MAX))
                .max_capacity(4_000_000)
                .time_to_idle(Duration::from_secs(30 * 60))
                .build(),
        }
    }

    /// The snapshot of `key` taken at exactly `position` and `token`, for the same request.
    pub(crate) fn get(
        &self,
        key: &Key,
        position: i64,
        token: StreamToken,
        request: &SlidingSyncRequest,
    ) -> Option<Arc<Snapshot>> {
        self.cache.get(key).filter(|s| s.position == position && s.token == token && &s.request == request)
    }

    pub(crate) fn put(&self, key: Key, snapshot: Snapshot) {
        self.cache.insert(key, Arc::new(snapshot));
    }
}

/// The request as snapshots compare it: without its position, transaction, timeout, presence
/// and to-device acknowledgement, which change from one request to the next.
pub(crate) fn fingerprint(req: &SlidingSyncRequest) -> SlidingSyncRequest {
    let mut fp = req.clone();
    fp.pos = None;
    fp.txn_id = None;
    fp.timeout_ms = 0;
    fp.set_presence.clear();
    if let Some(td) = fp.extensions.as_mut().and_then(|e| e.to_device.as_mut()) {
        td.since = None;
    }
    fp
}

/// The fast path's outcome.
pub(crate) enum Fast {
    /// The answer at `token` (`news`: whether it carries anything), and the snapshot it leaves.
    Answer { body: Box<Body>, token: StreamToken, news: bool, snapshot: Box<Snapshot> },
    /// Only the exact path can answer; why.
    Slow(&'static str),
}

/// A room with new events: its key events (all of them, for the list order) and those the
/// user sees.
struct RoomNews {
    room: String,
    all: Vec<Arc<TailEvent>>,
    shown: Vec<Arc<TailEvent>>,
}

/// Leaves the fast path for the exact one.
macro_rules! or_slow {
    ($cond:expr, $reason:literal) => {
        if !$cond {
            return Ok(Fast::Slow($reason));
        }
    };
}

impl SyncWorker {
    /// Answers a request from `snap` (taken at the request's `pos`) and the news since.
    pub(crate) async fn sliding_fast(
        &self,
        (user, device): (&str, &str),
        asked: &Request,
        prev: &State,
        snap: &Snapshot,
        sub: &Subscription,
    ) -> Result<Fast> {
        let from = snap.token;
        let news = sub.news_since(&from);
        or_slow!(news.known, "unknown");
        let mut rooms: Vec<String> = Vec::new();
        // How far the receipts, typing and presence of the user's rooms moved.
        let mut moved: Vec<(Stream, i64)> = Vec::new();
        for (channel, stream, pos) in &news.changes {
            let Channel::Room(room) = channel else { return Ok(Fast::Slow("user_channel")) };
            let joined = snap.candidates.iter().any(|c| &c.member.room_id == room && c.member.membership == "join");
            or_slow!(joined, "not_joined");
            match stream {
                Stream::Events if !rooms.contains(room) => rooms.push(room.clone()),
                Stream::Events => {}
                Stream::Receipts | Stream::Typing | Stream::Presence => {
                    match moved.iter_mut().find(|(s, _)| s == stream) {
                        Some((_, upto)) => *upto = (*upto).max(*pos),
                        None => moved.push((*stream, *pos)),
                    }
                }
                _ => return Ok(Fast::Slow("other_stream")),
            }
        }
        moved.retain(|(s, upto)| *upto > from.get(*s));
        or_slow!(!moved.iter().any(|(s, upto)| upto - from.get(*s) > MAX_WINDOW), "wide_window");
        let upto = news.events_complete.max(from.events);
        if upto == from.events {
            // The batch these changes belong to has not ended yet: its marker will wake us.
            rooms.clear();
        }
        let ignored = match self.ignored_cached(user, from, sub) {
            Some(list) => list,
            None if rooms.is_empty() => Arc::default(),
            None => return Ok(Fast::Slow("ignored_unknown")),
        };
        let mut news_rooms = Vec::new();
        for room in rooms {
            let Some(all) = self.caches.tails.events(&self.pool, &room, from.events, upto).await? else {
                return Ok(Fast::Slow("tail_short"));
            };
            or_slow!(!all.iter().any(|e| e.row.is_state()), "state_event");
            or_slow!(!relates_within(&all), "relation");
            let shown: Vec<Arc<TailEvent>> = all.iter().filter(|e| !ignored.contains(&e.row.sender)).cloned().collect();
            if !all.is_empty() {
                news_rooms.push(RoomNews { room, all, shown });
            }
        }

        // The lists as the exact path would order and cut them now.
        let mut candidates = snap.candidates.clone();
        for n in &news_rooms {
            let bump = n.all.iter().filter(|e| BUMP_TYPES.contains(&e.row.kind.as_str())).map(|e| e.row.pos).max();
            if let (Some(bump), Some(c)) = (bump, candidates.iter_mut().find(|c| c.member.room_id == n.room)) {
                c.bump = c.bump.max(bump);
            }
        }
        lists::order(&mut candidates);
        let listed: Vec<Candidate> =
            candidates.iter().filter(|c| lists::listed(&c.member, user, Some(from.events))).cloned().collect();
        let windows = lists::windows(&listed, &asked.lists, &snap.children);
        let counts: BTreeMap<String, u64> = windows.iter().map(|(name, w)| (name.clone(), w.count)).collect();
        or_slow!(counts == prev.lists, "list_counts");
        let (configs, subscribed) =
            lists::room_configs(&windows, asked, |room| candidates.iter().any(|c| c.member.room_id == room));
        for n in &news_rooms {
            or_slow!(configs.contains_key(n.room.as_str()), "out_of_windows");
        }
        for (room, config) in &configs {
            let Some(sent) = prev.rooms.get(room) else { return Ok(Fast::Slow("enters_window")) };
            let shown = news_rooms.iter().find(|n| &n.room == room).map_or(&[][..], |n| &n.shown[..]);
            or_slow!(unchanged(config, sent, shown), "room_config");
            or_slow!(shown.len() <= config.timeline_limit as usize, "limited");
        }

        // The rooms with events the user sees, their counts carried forward where the cache
        // can (else read), and the extensions, which have nothing new.
        let by_id: HashMap<&str, &Candidate> = candidates.iter().map(|c| (c.member.room_id.as_str(), c)).collect();
        let mut out = BTreeMap::new();
        let mut stale = Vec::new();
        let mut counted: HashMap<String, Counts> = HashMap::new();
        let ad = from.get(Stream::AccountData);
        for n in news_rooms.iter().filter(|n| !n.shown.is_empty()) {
            match self.caches.unread.get_at([user, n.room.as_str()]) {
                Some((as_of, counts)) if as_of == from.events => {
                    match self.count_on(user, &n.room, ad, counts, &n.shown).await {
                        Some(counts) => {
                            self.caches.unread.insert_at([user, n.room.as_str()], (upto, counts));
                            counted.insert(n.room.clone(), counts);
                        }
                        None => stale.push(n.room.clone()),
                    }
                }
                _ => stale.push(n.room.clone()),
            }
        }
        let token = moved.iter().fold(from.with(Stream::Events, upto), |t, (s, pos)| t.with(*s, *pos));
        let needs_keys = asked.extensions.e2ee && self.caches.key_devices.get_at([user, device]) != Some(false);
        if asked.extensions.to_device {
            let top = token.get(Stream::ToDevice);
            // Acknowledging what the device has, with nothing left to delete: the exact path
            // would send nothing and change nothing.
            let clean = |s: i64| s >= top && snap.to_device_clean.is_some_and(|c| s <= c);
            or_slow!(asked.extensions.to_device_since.is_some_and(clean), "to_device");
        }
        let mut keys = crate::poll::response::SyncBody::default();
        if !stale.is_empty() || needs_keys {
            let client = self.pool.get().await?;
            counted.extend(self.unread_counts(&client, user, &stale, upto, &ignored).await?);
            if needs_keys {
                let has = crate::streams::e2ee::key_counts(&client, user, device, &mut keys).await?;
                self.caches.key_devices.insert_at([user, device], has);
            }
        }

        let viewer = Viewer { user_id: user, device_id: device };
        let now = now_ms();
        for n in news_rooms.iter().filter(|n| !n.shown.is_empty()) {
            let (Ok(id), Some(c)) = (OwnedRoomId::try_from(n.room.as_str()), by_id.get(n.room.as_str())) else {
                continue;
            };
            let mut room = Room::new();
            room.is_dm = Some(c.dm);
            room.bump_stamp = UInt::new(c.bump.max(0) as u64);
            room.timeline = n.shown.iter().map(|e| Raw::from_json(raw(e.render(viewer, now)))).collect();
            room.prev_batch = Some(StreamToken::new((n.shown[0].row.pos - 1).clamp(0, upto)).to_string());
            room.num_live = UInt::new(n.shown.len() as u64);
            if let Some((notes, highlights)) = counted.get(&n.room) {
                room.unread_notifications.notification_count = UInt::new(*notes);
                room.unread_notifications.highlight_count = UInt::new(*highlights);
            }
            out.insert(id, room);
        }
        let mut extensions = Extensions::default();
        if asked.extensions.to_device {
            let top = token.get(Stream::ToDevice);
            let mut td = ToDevice::default();
            td.next_batch = top.max(asked.extensions.to_device_since.unwrap_or(0)).to_string();
            extensions.to_device = Some(td);
        }
        if asked.extensions.e2ee {
            let mut e2ee = E2EE::default();
            if !needs_keys {
                // What the key counts read for a device without keys.
                keys.device_one_time_keys_count = BTreeMap::from([("signed_curve25519".to_owned(), 0)]);
                keys.device_unused_fallback_key_types = Some(Vec::new());
            }
            extensions::put_key_counts(&mut e2ee, keys);
            extensions.e2ee = e2ee;
        }
        let joined: HashSet<String> =
            candidates.iter().filter(|c| c.member.membership == "join").map(|c| c.member.room_id.clone()).collect();
        let none = HashSet::new();
        let scope = extensions::Rooms { windows: &windows, subscribed: &subscribed, joined: &joined, initial: &none };
        for (stream, pos) in &moved {
            let asked = match stream {
                Stream::Receipts => &asked.extensions.receipts,
                Stream::Typing => &asked.extensions.typing,
                _ => continue,
            };
            if !asked.enabled {
                continue;
            }
            let scoped: Vec<String> = scope.scoped(asked).into_iter().filter(|r| joined.contains(r)).collect();
            let window = self.caches.windows.get(&self.pool, *stream, from.get(*stream), *pos).await?;
            for (room, event) in window.room_events(user, &scoped) {
                let Ok(id) = OwnedRoomId::try_from(room) else { continue };
                let event = raw(event.to_string());
                if *stream == Stream::Receipts {
                    extensions.receipts.rooms.insert(id, Raw::from_json(event));
                } else {
                    extensions.typing.rooms.insert(id, Raw::from_json(event));
                }
            }
        }
        let lists = response::lists(&counts);
        let news = !out.is_empty() || !extensions.receipts.is_empty() || !extensions.typing.is_empty();
        let body = Body { txn_id: None, pos: String::new(), lists, rooms: out, extensions };
        let snapshot = Snapshot {
            position: prev.pos,
            token,
            request: snap.request.clone(),
            candidates,
            children: snap.children.clone(),
            to_device_clean: snap.to_device_clean,
        };
        metrics::counter!("trellis_sliding_fast_responses_total").increment(1);
        Ok(Fast::Answer { body: Box::new(body), token, news, snapshot: Box::new(snapshot) })
    }
}

/// What an exact answer leaves of the device's to-device messages: none at or below the
/// `since` it acknowledged, nor, when it had none to send, at or below its `next_batch`.
pub(crate) fn to_device_clean(body: &Body, since: Option<i64>) -> Option<i64> {
    let td = body.extensions.to_device.as_ref()?;
    match td.events.is_empty() {
        true => td.next_batch.parse().ok().max(since),
        false => since,
    }
}

/// Whether answering a held room with `shown` leaves what the connection holds of it as it
/// was: the same timeline limit, and the same `required_state` once the lazy members of
/// the new events (and those sent before) are added, as the exact path adds them.
fn unchanged(config: &RoomConfig, sent: &RoomSent, shown: &[Arc<TailEvent>]) -> bool {
    if sent.behind.is_some() || sent.config.timeline_limit != config.timeline_limit {
        return false;
    }
    let mut required = config.required.clone();
    if config.lazy_members() {
        let senders: BTreeSet<(String, String)> =
            shown.iter().map(|e| (MEMBER.to_owned(), e.row.sender.clone())).collect();
        required.extend(senders);
        required.extend(sent.config.required.iter().filter(|(t, _)| t == MEMBER).cloned());
    }
    required == sent.config.required
}

/// Counts the exact path's slow answers by why the fast path declined.
pub(crate) fn slow(reason: &'static str) {
    metrics::counter!("trellis_sliding_slow_path_total", "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sliding::request::LAZY;

    #[test]
    fn a_changed_request_has_another_fingerprint_but_a_new_position_does_not() {
        let mut req = SlidingSyncRequest { user_id: "@u:x".into(), timeout_ms: 30_000, ..Default::default() };
        let base = fingerprint(&req);
        req.pos = Some("3/s9".into());
        req.txn_id = Some("t".into());
        req.timeout_ms = 10;
        assert!(fingerprint(&req) == base);
        req.conn_id = "other".into();
        assert!(fingerprint(&req) != base);
    }

    #[test]
    fn lazy_members_already_sent_leave_the_room_unchanged() {
        let lazy = (MEMBER.to_owned(), LAZY.to_owned());
        let config = RoomConfig { required: BTreeSet::from([lazy.clone()]), timeline_limit: 5 };
        let alice = (MEMBER.to_owned(), "@alice:x".to_owned());
        let sent = RoomSent {
            behind: None,
            config: RoomConfig { required: BTreeSet::from([lazy, alice]), timeline_limit: 5 },
        };
        assert!(unchanged(&config, &sent, &[]));
        let behind = RoomSent { behind: Some(3), ..sent.clone() };
        assert!(!unchanged(&config, &behind, &[]));
        let wider = RoomConfig { timeline_limit: 6, ..config.clone() };
        assert!(!unchanged(&wider, &sent, &[]));
    }
}
