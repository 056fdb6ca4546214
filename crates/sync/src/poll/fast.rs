//! The fast path of a woken long-poll: when the only news is new events in rooms the user is
//! joined to, the response is built from this worker's memory — the rooms' shared tails, the
//! cached unread counts and lazy-loading records — without a database round trip per client.
//!
//! Anything the fast path cannot vouch for exactly (another stream changed, the user's own
//! channel fired, a member event, a limited timeline, a tail that does not reach back far
//! enough, a member the device may lack) hands the work to `compute`, which reads PostgreSQL.
//! `compute_fast` runs the named steps below in order; a step that cannot vouch for its part
//! says why (`Slow`), and the poll goes to the exact path.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::api::client::filter::EventFormat;
use serde_json::Value;
use trellis_bus::{Channel, News, Subscription};
use trellis_core::{Result, Stream, StreamToken, time::now_ms};
use trellis_storage::events::{Format, Viewer};

use crate::{
    SyncWorker,
    poll::{
        filters,
        ignored::Ignored,
        lazy,
        response::{Events, JoinedRoom, Summary, SyncBody, Timeline, raw},
        steps::{self, Request, room_selected},
        tail_cache::TailEvent,
    },
    queries::Membership,
    streams::{e2ee, presence},
};

/// A step's outcome: its result, or why only PostgreSQL can answer exactly.
type Fast<T> = std::result::Result<T, &'static str>;

/// The receipts, typing and presence streams that changed, each with the position it reached.
type Windows = Vec<(Stream, i64)>;

/// A room's new events, and the members (and summary) lazy-loading adds to them.
type RoomNews = (String, Vec<Arc<TailEvent>>, lazy::Added);

/// Leaves `compute_fast` for the exact path when a step says so.
macro_rules! or_slow {
    ($step:expr) => {
        match $step {
            Ok(value) => value,
            Err(reason) => return Ok(slow(reason)),
        }
    };
}

impl SyncWorker {
    /// The response for `news`, or `None` when only PostgreSQL can answer exactly.
    pub(crate) async fn compute_fast(
        &self,
        req: &Request<'_>,
        news: &News,
        memberships: &[Membership],
        sub: &Subscription,
    ) -> Result<Option<SyncBody>> {
        let Some(since) = req.since else { return Ok(slow("initial")) };
        if req.full_state || !news.known || matches!(req.filter.event_format, EventFormat::Federation) {
            return Ok(slow("full_state_or_federation"));
        }
        let (mut rooms, windows) = or_slow!(classify(req, news, memberships, since));
        let upto = news.events_complete;
        let mut body = SyncBody { next_batch: next_batch(since, upto, &windows).to_string(), ..Default::default() };
        if upto <= since.events && !rooms.is_empty() {
            // The batch these changes belong to has not ended yet: its marker will wake us.
            tracing::debug!(upto, since = since.events, changes = ?news.changes, "fast path: batch not complete");
            rooms.clear();
        }
        // The users this one ignores, known exactly for `since` once the exact path has run.
        let ignored = self.ignored_cached(req.user_id, since, sub);
        if ignored.is_none() && !rooms.is_empty() {
            return Ok(slow("ignored_unknown"));
        }
        let timelines = or_slow!(self.tail_timelines(req, rooms, (since.events, upto), ignored.as_ref()).await?);
        let ephemeral = self.window_events(req, &windows, since, memberships, &mut body).await?;
        if timelines.is_empty() && ephemeral.is_empty() && body.presence.events.is_empty() {
            return Ok(Some(body));
        }
        let mut stale_counts = Vec::new();
        let presence_of = self.put_timelines(req, &timelines, since, upto, &mut body, &mut stale_counts).await;
        self.put_ephemeral(req, ephemeral, since, upto, &mut body, &mut stale_counts);
        let has_keys = self.caches.key_devices.get_at([req.user_id, req.device_id]);
        if ignored.is_none() && !stale_counts.is_empty() {
            return Ok(slow("ignored_unknown"));
        }
        if !presence_of.is_empty() && !filters::events(&req.filter.presence, probes(&presence_of)).is_empty() {
            self.add_presence(&self.pool.get().await?, &req.filter.presence, &presence_of, &mut body).await?;
        }
        let upto = upto.max(since.events);
        self.read_the_rest(req, &stale_counts, upto, ignored.as_ref(), has_keys, &mut body).await?;
        steps::finish(&mut body, req);
        for (room, _, added) in &timelines {
            self.lazy_sent_out((req.user_id, req.device_id), room, added, news.events_complete);
        }
        metrics::counter!("trellis_sync_fast_responses_total").increment(1);
        Ok(Some(body))
    }

    /// Step 2: each room's new events from its shared tail, filtered, with the members
    /// lazy-loading adds; only a short, unlimited window without member events will do.
    async fn tail_timelines(
        &self,
        req: &Request<'_>,
        rooms: Vec<String>,
        (since, upto): (i64, i64),
        ignored: Option<&Ignored>,
    ) -> Result<Fast<Vec<RoomNews>>> {
        let rf = &req.filter.room;
        let limit = steps::timeline_limit(rf, self.settings.default_timeline_limit) as usize;
        let lazy = lazy::options(&rf.state);
        let mut timelines = Vec::new();
        for room in rooms {
            let Some(events) = self.caches.tails.events(&self.pool, &room, since, upto).await? else {
                return Ok(Err("tail_short"));
            };
            if events.iter().any(|e| e.row.kind == "m.room.member") {
                // Membership changed: summaries, lazy-loading and visibility need the state.
                return Ok(Err("member_event"));
            }
            let state_changed = events.iter().any(|e| e.row.is_state());
            if relates_within(&events) {
                // A parent and its child in one window: the parent needs bundling.
                return Ok(Err("relation"));
            }
            let ignores = |e: &TailEvent| ignored.is_some_and(|list| !e.row.is_state() && list.contains(&e.row.sender));
            let events: Vec<Arc<TailEvent>> = events
                .into_iter()
                .filter(|e| filters::timeline_event_passes(&rf.timeline, &e.row, e.has_url) && !ignores(e))
                .collect();
            if events.len() > limit {
                // A limited timeline needs the state of the gap.
                return Ok(Err("limited"));
            }
            let mut added = lazy::Added::default();
            if let Some(include_redundant) = lazy
                && (include_redundant || !self.members_current(req, &room, &events, since))
            {
                // A summary read now could miss the window's name change.
                if state_changed {
                    return Ok(Err("lazy_members"));
                }
                let who = (req.user_id, req.device_id);
                match self.lazy_from_memory(who, &room, &events, (since, upto), include_redundant).await? {
                    Some(a) => added = a,
                    None => return Ok(Err("lazy_members")),
                }
            }
            if !events.is_empty() {
                timelines.push((room, events, added));
            }
        }
        Ok(Ok(timelines))
    }

    /// Step 3: the rooms' timelines, lazy members and summaries into `body`, with their unread
    /// counts carried forward from the cache (rooms whose counts it cannot carry go to
    /// `stale`); the users whose presence the client may lack (those whose joins the state
    /// brings).
    async fn put_timelines(
        &self,
        req: &Request<'_>,
        timelines: &[RoomNews],
        since: StreamToken,
        upto: i64,
        body: &mut SyncBody,
        stale: &mut Vec<String>,
    ) -> HashSet<String> {
        let viewer = Viewer { user_id: req.user_id, device_id: req.device_id };
        let threads = req.filter.room.timeline.unread_thread_notifications;
        let now = now_ms();
        let mut presence_of = HashSet::new();
        for (room, events, added) in timelines {
            let timeline = Timeline {
                events: events.iter().map(|e| raw(e.render(viewer, now))).collect(),
                limited: false,
                prev_batch: StreamToken::new(events[0].row.pos - 1).to_string(),
            };
            let state = Events {
                events: added.members.iter().map(|m| raw(m.render(Some(viewer), Format::WithoutRoomId, now))).collect(),
            };
            let summary = added.summary.as_ref().map_or_else(Summary::default, |s| Summary {
                heroes: s.candidates.heroes(req.user_id),
                joined: Some(s.joined),
                invited: Some(s.invited),
            });
            presence_of.extend(presence::joining(added.members.iter().map(|m| &**m), req.user_id));
            body.rooms.join.insert(room.clone(), JoinedRoom { summary, state, timeline, ..Default::default() });
            match self.caches.unread.get_at([req.user_id, room]) {
                Some((as_of, counts)) if as_of == since.events => {
                    let ad = since.get(Stream::AccountData);
                    match self.count_on(req.user_id, room, ad, counts, events).await {
                        Some(counts) => {
                            self.caches.unread.insert_at([req.user_id, room], (upto, counts));
                            body.set_unread(room, counts, threads);
                        }
                        None => stale.push(room.clone()),
                    }
                }
                _ => stale.push(room.clone()),
            }
        }
        presence_of
    }

    /// Step 4: the receipts and typing of each room into `body`; a room with no new events
    /// keeps its counts as of `since` (or goes to `stale`).
    fn put_ephemeral(
        &self,
        req: &Request<'_>,
        ephemeral: HashMap<String, Vec<Value>>,
        since: StreamToken,
        upto: i64,
        body: &mut SyncBody,
        stale: &mut Vec<String>,
    ) {
        let threads = req.filter.room.timeline.unread_thread_notifications;
        let upto = upto.max(since.events);
        for (room, events) in ephemeral {
            let (entry, known) = body.joined_room(room.clone(), upto);
            entry.ephemeral.events.extend(events.into_iter().map(|e| raw(e.to_string())));
            if known {
                continue;
            }
            // No new events here: the counts as of `since` still hold.
            match self.caches.unread.get_at([req.user_id, &room]) {
                Some((as_of, counts)) if as_of == since.events => {
                    self.caches.unread.insert_at([req.user_id, &room], (upto, counts));
                    body.set_unread(&room, counts, threads);
                }
                _ => stale.push(room),
            }
        }
    }

    /// Step 5: what memory cannot give, from PostgreSQL: the counts of `stale` rooms, and the
    /// key counts the spec requires whenever the device has keys (a device never seen by the
    /// exact path is read too: its keys may have come through another worker).
    async fn read_the_rest(
        &self,
        req: &Request<'_>,
        stale: &[String],
        upto: i64,
        ignored: Option<&Ignored>,
        has_keys: Option<bool>,
        body: &mut SyncBody,
    ) -> Result<()> {
        if stale.is_empty() && has_keys == Some(false) {
            return Ok(());
        }
        let client = self.pool.get().await?;
        if !stale.is_empty() {
            let none = HashSet::new();
            let ignored = ignored.map_or(&none, |i| &**i);
            let threads = req.filter.room.timeline.unread_thread_notifications;
            for (room, counts) in self.unread_counts(&client, req.user_id, stale, upto, ignored).await? {
                body.set_unread(&room, counts, threads);
            }
        }
        if has_keys != Some(false) {
            let has = e2ee::key_counts(&client, req.user_id, req.device_id, body).await?;
            self.caches.key_devices.insert_at([req.user_id, req.device_id], has);
        }
        Ok(())
    }

    /// The receipts, typing and presence that changed in `windows` for this user, from the
    /// worker's shared windows: per-room ephemeral events (filtered) are returned, presence
    /// goes into `body`.
    async fn window_events(
        &self,
        req: &Request<'_>,
        windows: &[(Stream, i64)],
        since: StreamToken,
        memberships: &[Membership],
        body: &mut SyncBody,
    ) -> Result<HashMap<String, Vec<Value>>> {
        let mut ephemeral: HashMap<String, Vec<Value>> = HashMap::new();
        if windows.is_empty() {
            return Ok(ephemeral);
        }
        let rf = &req.filter.room;
        let joined: Vec<String> =
            memberships.iter().filter(|m| m.membership == "join").map(|m| m.room_id.clone()).collect();
        let selected = steps::selected_joined(memberships, rf);
        // Typing before receipts, as the exact path orders them.
        let mut ordered = windows.to_vec();
        ordered.sort_by_key(|(s, _)| match s {
            Stream::Typing => 0,
            Stream::Receipts => 1,
            _ => 2,
        });
        for (stream, upto) in ordered {
            let window = self.caches.windows.get(&self.pool, stream, since.get(stream), upto).await?;
            if stream == Stream::Presence {
                body.set_presence(&req.filter.presence, window.presence_events(req.user_id, &joined));
                continue;
            }
            for (room, event) in window.room_events(req.user_id, &selected) {
                ephemeral.entry(room).or_default().push(event);
            }
        }
        Ok(steps::ephemeral_filtered(&rf.ephemeral, ephemeral))
    }

    /// Whether the device already has the current member event of every sender.
    fn members_current(&self, req: &Request<'_>, room: &str, events: &[Arc<TailEvent>], since: i64) -> bool {
        let Some(sent) = self.caches.lazy_sent.get_at([req.user_id, req.device_id, room]) else {
            return events.is_empty();
        };
        events.iter().all(|e| sent.get(&e.row.sender).is_some_and(|pos| *pos <= since))
    }
}

/// Step 1: which selected rooms have new events, and up to where the receipts, typing and
/// presence of the user's rooms changed; any other news is for the exact path.
fn classify(
    req: &Request<'_>,
    news: &News,
    memberships: &[Membership],
    since: StreamToken,
) -> Fast<(Vec<String>, Windows)> {
    let rf = &req.filter.room;
    let mut rooms = Vec::new();
    let mut windows: Windows = Vec::new();
    for (channel, stream, pos) in &news.changes {
        let Channel::Room(room) = channel else { return Err("user_channel") };
        let joined = memberships.iter().any(|m| &m.room_id == room && m.membership == "join");
        if !joined {
            return Err("not_joined");
        }
        match stream {
            Stream::Events => {
                if room_selected(room, rf.rooms.as_deref(), &rf.not_rooms) && !rooms.contains(room) {
                    rooms.push(room.clone());
                }
            }
            Stream::Receipts | Stream::Typing | Stream::Presence => match windows.iter_mut().find(|(s, _)| s == stream)
            {
                Some((_, upto)) => *upto = (*upto).max(*pos),
                None => windows.push((*stream, *pos)),
            },
            _ => return Err("other_stream"),
        }
    }
    windows.retain(|(s, upto)| *upto > since.get(*s));
    if windows.iter().any(|(s, upto)| upto - since.get(*s) > crate::poll::windows::MAX_WINDOW) {
        return Err("wide_window");
    }
    Ok((rooms, windows))
}

/// The response's `next_batch`: `since` moved to the events position heard complete and to
/// the end of each window.
fn next_batch(since: StreamToken, upto: i64, windows: &[(Stream, i64)]) -> StreamToken {
    let mut next = since.with(Stream::Events, upto.max(since.events));
    for (s, pos) in windows {
        next = next.with(*s, *pos);
    }
    next
}

/// One presence event per user, to ask the filter whether it lets any of theirs through.
fn probes(users: &HashSet<String>) -> Vec<Value> {
    users
        .iter()
        .map(|u| serde_json::json!({"type": "m.presence", "sender": u, "content": {"presence": "offline"}}))
        .collect()
}

/// Hands a poll to the exact path, counting why (`trellis_sync_slow_path_total`).
pub(crate) fn slow(reason: &'static str) -> Option<SyncBody> {
    metrics::counter!("trellis_sync_slow_path_total", "reason" => reason).increment(1);
    None
}

/// Whether one of `events` relates to another of them (an edit, thread reply or reference of a
/// message sent in the same window), so the parent would need its bundled aggregations.
pub(crate) fn relates_within(events: &[Arc<TailEvent>]) -> bool {
    if events.len() < 2 {
        return false;
    }
    let ids: HashSet<&str> = events.iter().map(|e| e.row.event_id.as_str()).collect();
    events.iter().any(|e| {
        let Ok(content) = serde_json::from_str::<Value>(&e.row.content) else { return false };
        let rel = &content["m.relates_to"];
        matches!(rel["rel_type"].as_str(), Some("m.replace" | "m.thread" | "m.reference"))
            && rel["event_id"].as_str().is_some_and(|id| ids.contains(id))
    })
}
