//! The fast path of a woken long-poll: when the only news is new events in rooms the user is
//! joined to, the response is built from this worker's memory — the rooms' shared tails, the
//! cached unread counts and lazy-loading records — without a database round trip per client.
//!
//! Anything the fast path cannot vouch for exactly (another stream changed, the user's own
//! channel fired, a member event, a limited timeline, a tail that does not reach back far
//! enough, a member the device may lack) hands the work to `compute`, which reads PostgreSQL.

use std::{collections::HashMap, sync::Arc};

use ruma::api::client::filter::EventFormat;
use trellis_bus::{Channel, News};
use trellis_core::{Result, Stream, time::now_ms};
use trellis_storage::events::{Format, Viewer};

use crate::{
    SyncWorker,
    compute::{Request, room_selected},
    filters, lazy,
    queries::Membership,
    response::{JoinedRoom, SyncBody, Timeline, raw},
    tail_cache::TailEvent,
    unread,
};

impl SyncWorker {
    /// The response for `news`, or `None` when only PostgreSQL can answer exactly.
    pub(crate) async fn compute_fast(
        &self,
        req: &Request<'_>,
        news: &News,
        memberships: &[Membership],
    ) -> Result<Option<SyncBody>> {
        let Some(since) = req.since else { return Ok(None) };
        if req.full_state || !news.known || matches!(req.filter.event_format, EventFormat::Federation) {
            return Ok(None);
        }
        let rf = &req.filter.room;
        let mut rooms = Vec::new();
        for (channel, stream, _) in &news.changes {
            match (channel, stream) {
                (Channel::Room(room), Stream::Events) => {
                    let joined = memberships.iter().any(|m| &m.room_id == room && m.membership == "join");
                    if !joined {
                        return Ok(None);
                    }
                    if room_selected(room, rf.rooms.as_deref(), &rf.not_rooms) && !rooms.contains(room) {
                        rooms.push(room.clone());
                    }
                }
                _ => return Ok(None),
            }
        }
        let upto = news.events_complete;
        let next = since.with(Stream::Events, upto.max(since.events));
        let mut body = SyncBody { next_batch: next.to_string(), ..Default::default() };
        if upto <= since.events {
            // The batch these changes belong to has not ended yet: its marker will wake us.
            tracing::debug!(upto, since = since.events, changes = ?news.changes, "fast path: batch not complete");
            return Ok(Some(body));
        }
        let limit = rf.timeline.limit.map_or(u64::from(self.settings.default_timeline_limit), u64::from) as usize;
        let lazy = lazy::options(&rf.state);
        let mut timelines: Vec<(String, Vec<Arc<TailEvent>>)> = Vec::new();
        for room in rooms {
            let Some(events) = self.caches.tails.events(&self.pool, &room, since.events, upto).await? else {
                return Ok(None);
            };
            if events.iter().any(|e| e.row.kind == "m.room.member") {
                // Membership changed: summaries, lazy-loading and visibility need the state.
                return Ok(None);
            }
            if relates_within(&events) {
                // A parent and its child in one window: the parent needs bundling.
                return Ok(None);
            }
            let events: Vec<Arc<TailEvent>> = events
                .into_iter()
                .filter(|e| filters::timeline_event_passes(&rf.timeline, &e.row, e.has_url))
                .collect();
            if events.len() > limit {
                // A limited timeline needs the state of the gap.
                return Ok(None);
            }
            if lazy.is_some() && !self.members_current(req, &room, &events, since.events) {
                return Ok(None);
            }
            if !events.is_empty() {
                timelines.push((room, events));
            }
        }
        if timelines.is_empty() {
            return Ok(Some(body));
        }

        let viewer = Viewer { user_id: req.user_id, device_id: req.device_id };
        let now = now_ms();
        let mut stale_counts = Vec::new();
        for (room, events) in &timelines {
            let timeline = Timeline {
                events: events.iter().map(|e| raw(e.row.render(Some(viewer), Format::WithoutRoomId, now))).collect(),
                limited: false,
                prev_batch: trellis_core::StreamToken::new(events[0].row.pos - 1).to_string(),
            };
            body.rooms.join.insert(room.clone(), JoinedRoom { timeline, ..Default::default() });
            match self.caches.unread.get(&(req.user_id.to_owned(), room.clone())) {
                Some((as_of, counts)) if as_of == since.events => {
                    let ad = since.get(Stream::AccountData);
                    match self.count_on(req.user_id, room, ad, counts, events).await {
                        Some(counts) => {
                            self.caches.unread.insert((req.user_id.to_owned(), room.clone()), (upto, counts));
                            set_counts(&mut body, room, counts, rf.timeline.unread_thread_notifications);
                        }
                        None => stale_counts.push(room.clone()),
                    }
                }
                _ => stale_counts.push(room.clone()),
            }
        }
        let has_keys = self.caches.key_devices.get(&(req.user_id.to_owned(), req.device_id.to_owned()));
        if !stale_counts.is_empty() || has_keys != Some(false) {
            let client = self.pool.get().await?;
            if !stale_counts.is_empty() {
                for (room, counts) in self.unread_counts(&client, req.user_id, &stale_counts, upto).await? {
                    set_counts(&mut body, &room, counts, rf.timeline.unread_thread_notifications);
                }
            }
            // The spec requires the key counts whenever the device has keys; a device never
            // seen by the exact path is read too (its keys may have come through another worker).
            if has_keys != Some(false) {
                let has = crate::e2ee::key_counts(&client, req.user_id, req.device_id, &mut body).await?;
                self.caches.key_devices.insert((req.user_id.to_owned(), req.device_id.to_owned()), has);
            }
        }
        if let Some(fields) = &req.filter.event_fields {
            body.keep_fields(fields);
        }
        metrics::counter!("trellis_sync_fast_responses_total").increment(1);
        Ok(Some(body))
    }

    /// Whether the device already has the current member event of every sender.
    fn members_current(&self, req: &Request<'_>, room: &str, events: &[Arc<TailEvent>], since: i64) -> bool {
        let key = (req.user_id.to_owned(), req.device_id.to_owned(), room.to_owned());
        let Some(sent) = self.caches.lazy_sent.get(&key) else { return events.is_empty() };
        events.iter().all(|e| sent.get(&e.row.sender).is_some_and(|pos| *pos <= since))
    }
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
