//! The fast path of a woken long-poll: when the only news is new events in rooms the user is
//! joined to, the response is built from this worker's memory — the rooms' shared tails, the
//! cached unread counts and lazy-loading records — without a database round trip per client.
//!
//! Anything the fast path cannot vouch for exactly (another stream changed, the user's own
//! channel fired, a member event, a limited timeline, a tail that does not reach back far
//! enough, a member the device may lack) hands the work to `compute`, which reads PostgreSQL.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::api::client::filter::EventFormat;
use trellis_bus::{Channel, News, Subscription};
use trellis_core::{Result, Stream, StreamToken, time::now_ms};
use trellis_storage::events::{Format, Viewer};

use crate::{
    SyncWorker,
    poll::compute::{Request, room_selected},
    poll::filters,
    poll::lazy,
    poll::response::{Events, JoinedRoom, Summary, SyncBody, Timeline, raw},
    poll::tail_cache::TailEvent,
    push::unread,
    queries::Membership,
};

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
        let rf = &req.filter.room;
        let mut rooms = Vec::new();
        // The other streams that changed on the user's rooms, and up to where.
        let mut windows: Vec<(Stream, i64)> = Vec::new();
        for (channel, stream, pos) in &news.changes {
            let Channel::Room(room) = channel else { return Ok(slow("user_channel")) };
            let joined = memberships.iter().any(|m| &m.room_id == room && m.membership == "join");
            if !joined {
                return Ok(slow("not_joined"));
            }
            match stream {
                Stream::Events => {
                    if room_selected(room, rf.rooms.as_deref(), &rf.not_rooms) && !rooms.contains(room) {
                        rooms.push(room.clone());
                    }
                }
                Stream::Receipts | Stream::Typing | Stream::Presence => {
                    match windows.iter_mut().find(|(s, _)| s == stream) {
                        Some((_, upto)) => *upto = (*upto).max(*pos),
                        None => windows.push((*stream, *pos)),
                    }
                }
                _ => return Ok(slow("other_stream")),
            }
        }
        windows.retain(|(s, upto)| *upto > since.get(*s));
        if windows.iter().any(|(s, upto)| upto - since.get(*s) > crate::poll::windows::MAX_WINDOW) {
            return Ok(slow("wide_window"));
        }
        let upto = news.events_complete;
        let mut next = since.with(Stream::Events, upto.max(since.events));
        for (s, pos) in &windows {
            next = next.with(*s, *pos);
        }
        let mut body = SyncBody { next_batch: next.to_string(), ..Default::default() };
        if upto <= since.events && !rooms.is_empty() {
            // The batch these changes belong to has not ended yet: its marker will wake us.
            tracing::debug!(upto, since = since.events, changes = ?news.changes, "fast path: batch not complete");
            rooms.clear();
        }
        let limit = rf.timeline.limit.map_or(u64::from(self.settings.default_timeline_limit), u64::from) as usize;
        let lazy = lazy::options(&rf.state);
        // The users this one ignores, known exactly for `since` once the exact path has run.
        let ignored = self.ignored_cached(req.user_id, since, sub);
        if ignored.is_none() && !rooms.is_empty() {
            return Ok(slow("ignored_unknown"));
        }
        let mut timelines: Vec<(String, Vec<Arc<TailEvent>>, lazy::Added)> = Vec::new();
        for room in rooms {
            let Some(events) = self.caches.tails.events(&self.pool, &room, since.events, upto).await? else {
                return Ok(slow("tail_short"));
            };
            if events.iter().any(|e| e.row.kind == "m.room.member") {
                // Membership changed: summaries, lazy-loading and visibility need the state.
                return Ok(slow("member_event"));
            }
            let state_changed = events.iter().any(|e| e.row.is_state());
            if relates_within(&events) {
                // A parent and its child in one window: the parent needs bundling.
                return Ok(slow("relation"));
            }
            let ignores =
                |e: &TailEvent| ignored.as_ref().is_some_and(|list| !e.row.is_state() && list.contains(&e.row.sender));
            let events: Vec<Arc<TailEvent>> = events
                .into_iter()
                .filter(|e| filters::timeline_event_passes(&rf.timeline, &e.row, e.has_url) && !ignores(e))
                .collect();
            if events.len() > limit {
                // A limited timeline needs the state of the gap.
                return Ok(slow("limited"));
            }
            let mut added = lazy::Added::default();
            if let Some(include_redundant) = lazy
                && (include_redundant || !self.members_current(req, &room, &events, since.events))
            {
                // A summary read now could miss the window's name change.
                if state_changed {
                    return Ok(slow("lazy_members"));
                }
                let who = (req.user_id, req.device_id);
                let window = (since.events, upto);
                match self.lazy_from_memory(who, &room, &events, window, include_redundant).await? {
                    Some(a) => added = a,
                    None => return Ok(slow("lazy_members")),
                }
            }
            if !events.is_empty() {
                timelines.push((room, events, added));
            }
        }
        let ephemeral = self.window_events(req, &windows, since, memberships, &mut body).await?;
        if timelines.is_empty() && ephemeral.is_empty() && body.presence.events.is_empty() {
            return Ok(Some(body));
        }

        let viewer = Viewer { user_id: req.user_id, device_id: req.device_id };
        let now = now_ms();
        let mut stale_counts = Vec::new();
        // Users whose presence the client may lack: those whose joins the state brings.
        let mut presence_of = HashSet::new();
        for (room, events, added) in &timelines {
            let timeline = Timeline {
                events: events.iter().map(|e| raw(e.render(viewer, now))).collect(),
                limited: false,
                prev_batch: trellis_core::StreamToken::new(events[0].row.pos - 1).to_string(),
            };
            let state = Events {
                events: added.members.iter().map(|m| raw(m.render(Some(viewer), Format::WithoutRoomId, now))).collect(),
            };
            let summary = added.summary.as_ref().map_or_else(Summary::default, |s| Summary {
                heroes: s.candidates.heroes(req.user_id),
                joined: Some(s.joined),
                invited: Some(s.invited),
            });
            presence_of.extend(crate::streams::presence::joining(added.members.iter().map(|m| &**m), req.user_id));
            body.rooms.join.insert(room.clone(), JoinedRoom { summary, state, timeline, ..Default::default() });
            match self.caches.unread.get_at([req.user_id, room]) {
                Some((as_of, counts)) if as_of == since.events => {
                    let ad = since.get(Stream::AccountData);
                    match self.count_on(req.user_id, room, ad, counts, events).await {
                        Some(counts) => {
                            self.caches.unread.insert_at([req.user_id, room], (upto, counts));
                            set_counts(&mut body, room, counts, rf.timeline.unread_thread_notifications);
                        }
                        None => stale_counts.push(room.clone()),
                    }
                }
                _ => stale_counts.push(room.clone()),
            }
        }
        for (room, events) in ephemeral {
            let known = body.rooms.join.contains_key(&room);
            let entry = body.rooms.join.entry(room.clone()).or_insert_with(|| JoinedRoom {
                timeline: Timeline {
                    prev_batch: StreamToken::new(upto.max(since.events)).to_string(),
                    ..Default::default()
                },
                ..Default::default()
            });
            entry.ephemeral.events.extend(events.into_iter().map(|e| raw(e.to_string())));
            if known {
                continue;
            }
            // No new events here: the counts as of `since` still hold.
            match self.caches.unread.get_at([req.user_id, &room]) {
                Some((as_of, counts)) if as_of == since.events => {
                    self.caches.unread.insert_at([req.user_id, &room], (upto.max(since.events), counts));
                    set_counts(&mut body, &room, counts, rf.timeline.unread_thread_notifications);
                }
                _ => stale_counts.push(room),
            }
        }
        let has_keys = self.caches.key_devices.get_at([req.user_id, req.device_id]);
        if ignored.is_none() && !stale_counts.is_empty() {
            return Ok(slow("ignored_unknown"));
        }
        if !presence_of.is_empty() && !filters::events(&req.filter.presence, probes(&presence_of)).is_empty() {
            self.add_presence(&self.pool.get().await?, &req.filter.presence, &presence_of, &mut body).await?;
        }
        if !stale_counts.is_empty() || has_keys != Some(false) {
            let client = self.pool.get().await?;
            if !stale_counts.is_empty() {
                for (room, counts) in self
                    .unread_counts(
                        &client,
                        req.user_id,
                        &stale_counts,
                        upto.max(since.events),
                        ignored.as_deref().unwrap_or(&HashSet::new()),
                    )
                    .await?
                {
                    set_counts(&mut body, &room, counts, rf.timeline.unread_thread_notifications);
                }
            }
            // The spec requires the key counts whenever the device has keys; a device never
            // seen by the exact path is read too (its keys may have come through another worker).
            if has_keys != Some(false) {
                let has = crate::streams::e2ee::key_counts(&client, req.user_id, req.device_id, &mut body).await?;
                self.caches.key_devices.insert_at([req.user_id, req.device_id], has);
            }
        }
        if let Some(fields) = &req.filter.event_fields {
            body.keep_fields(fields);
        }
        for (room, _, added) in &timelines {
            self.lazy_sent_out((req.user_id, req.device_id), room, added, upto);
        }
        metrics::counter!("trellis_sync_fast_responses_total").increment(1);
        Ok(Some(body))
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
    ) -> Result<HashMap<String, Vec<serde_json::Value>>> {
        let mut ephemeral: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
        if windows.is_empty() {
            return Ok(ephemeral);
        }
        let rf = &req.filter.room;
        let joined: Vec<String> =
            memberships.iter().filter(|m| m.membership == "join").map(|m| m.room_id.clone()).collect();
        let selected: Vec<String> =
            joined.iter().filter(|r| room_selected(r, rf.rooms.as_deref(), &rf.not_rooms)).cloned().collect();
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
                let presence = window.presence_events(req.user_id, &joined);
                body.presence.events =
                    filters::events(&req.filter.presence, presence).into_iter().map(|e| raw(e.to_string())).collect();
                continue;
            }
            for (room, event) in window.room_events(req.user_id, &selected) {
                ephemeral.entry(room).or_default().push(event);
            }
        }
        ephemeral.retain(|_, events| {
            *events = filters::room_events(&rf.ephemeral, std::mem::take(events));
            !events.is_empty()
        });
        Ok(ephemeral)
    }

    /// Whether the device already has the current member event of every sender.
    fn members_current(&self, req: &Request<'_>, room: &str, events: &[Arc<TailEvent>], since: i64) -> bool {
        let Some(sent) = self.caches.lazy_sent.get_at([req.user_id, req.device_id, room]) else {
            return events.is_empty();
        };
        events.iter().all(|e| sent.get(&e.row.sender).is_some_and(|pos| *pos <= since))
    }
}

/// One presence event per user, to ask the filter whether it lets any of theirs through.
fn probes(users: &HashSet<String>) -> Vec<serde_json::Value> {
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
fn relates_within(events: &[Arc<TailEvent>]) -> bool {
    if events.len() < 2 {
        return false;
    }
    let ids: std::collections::HashSet<&str> = events.iter().map(|e| e.row.event_id.as_str()).collect();
    events.iter().any(|e| {
        let Ok(content) = serde_json::from_str::<serde_json::Value>(&e.row.content) else { return false };
        let rel = &content["m.relates_to"];
        matches!(rel["rel_type"].as_str(), Some("m.replace" | "m.thread" | "m.reference"))
            && rel["event_id"].as_str().is_some_and(|id| ids.contains(id))
    })
}

fn set_counts(body: &mut SyncBody, room: &str, (notes, highlights): unread::Counts, threads: bool) {
    if let Some(entry) = body.rooms.join.get_mut(room) {
        entry.unread_notifications.notification_count = notes;
        entry.unread_notifications.highlight_count = highlights;
        if threads {
            entry.unread_thread_notifications = Some(HashMap::<String, _>::new().into_iter().collect());
        }
    }
}
