//! The `rooms` of a response. A room the connection never sent (or that the user just joined)
//! goes out whole — `initial`, its latest events, the state its configuration asks for, name,
//! avatar, heroes and counts; a room the client holds gets only what is new since: timeline
//! events, changed state, and the name, avatar, heroes and counts when they changed. Invites
//! and knocks carry their stripped state. Timelines hide what history visibility or ignoring
//! hides, as `/sync` does.

use std::collections::{BTreeMap, HashMap, HashSet};

use js_option::JsOption;
use ruma::{
    OwnedMxcUri, OwnedRoomId, OwnedUserId, UInt,
    api::client::sync::sync_events::v5::response::{Hero, Room},
    serde::Raw,
};
use serde_json::Value;
use trellis_core::{Result, StreamToken, time::now_ms};
use trellis_storage::{
    erasure,
    events::{EventRow, Format, Viewer},
    relations, visibility,
};

use super::{
    connection::RoomSent,
    lists::Candidate,
    request::{MEMBER, RoomConfig},
    state::{self, Ask},
};
use crate::{SyncWorker, poll::response::raw, poll::steps::stripped_json, poll::timeline, queries};

/// A room to answer for, with what the connection already sent of it.
pub(crate) struct Plan<'a> {
    pub candidate: &'a Candidate,
    pub config: RoomConfig,
    pub prev: Option<&'a RoomSent>,
    /// The client holds nothing of it (new to the connection, or newly joined).
    pub initial: bool,
    /// For a room the client holds: the events position it holds the room up to.
    pub from: i64,
}

/// The rooms to send, and what the connection now holds of every planned room.
pub(crate) struct Outcome {
    pub rooms: BTreeMap<OwnedRoomId, Room>,
    pub sent: HashMap<String, RoomSent>,
}

/// The request's bounds: its `pos` token (none for a new connection) and the answer's.
pub(crate) struct Bounds {
    pub from: Option<StreamToken>,
    pub upto: StreamToken,
}

impl SyncWorker {
    pub(crate) async fn sliding_rooms(
        &self,
        client: &queries::Client,
        (user, device): (&str, &str),
        plans: &[Plan<'_>],
        bounds: &Bounds,
    ) -> Result<Outcome> {
        let upto = bounds.upto.events;
        let joined_or_left = |p: &Plan| !matches!(p.candidate.member.membership.as_str(), "invite" | "knock");
        // Timelines, one query for all rooms, each read up to its own limit (one event more
        // tells whether it is limited).
        let mut timeline_bounds = Vec::new();
        let mut limits = Vec::new();
        for p in plans.iter().filter(|p| joined_or_left(p) && p.config.timeline_limit > 0) {
            let expanded = p.prev.is_some_and(|prev| prev.config.timeline_limit < p.config.timeline_limit);
            let lower = if p.initial || expanded { 0 } else { p.from };
            let hi = if p.candidate.member.membership == "join" { upto } else { p.candidate.member.pos.min(upto) };
            timeline_bounds.push((p.candidate.member.room_id.clone(), lower, hi));
            limits.push(i64::from(p.config.timeline_limit) + 1);
        }
        let mut newest = queries::timelines_each(client, &timeline_bounds, &limits, &Default::default()).await?;
        let synced: Vec<&str> = timeline_bounds.iter().map(|b| b.0.as_str()).collect();
        let histories = visibility::load(client, user, &synced).await?;
        let ignored = self
            .ignored_users(client, user, Some(bounds.upto.get(trellis_core::Stream::AccountData)), bounds.upto, &[])
            .await?;
        let mut windows: HashMap<String, timeline::Window> = HashMap::new();
        for ((room, lower, hi), limit) in timeline_bounds.iter().zip(&limits) {
            let rows = newest.remove(room).unwrap_or_default();
            let cap = (limit - 1) as usize;
            let sight = timeline::Sight { user, history: histories.get(room), ignored: &ignored };
            let w = timeline::visible(client, room, (*lower, *hi), rows, cap, &Default::default(), &sight).await?;
            windows.insert(room.clone(), w);
        }

        // The configuration each room is sent with: lazy members of its timeline included, and
        // those sent before kept.
        let mut configs: HashMap<&str, RoomConfig> = HashMap::new();
        for p in plans {
            let room = p.candidate.member.room_id.as_str();
            let mut config = p.config.clone();
            if config.lazy_members() {
                if let Some(w) = windows.get(room) {
                    for m in state::lazy_members(&w.events) {
                        config.required.insert((MEMBER.to_owned(), m));
                    }
                }
                if let (false, Some(prev)) = (p.initial, p.prev) {
                    config.required.extend(prev.config.required.iter().filter(|(t, _)| t == MEMBER).cloned());
                }
            }
            configs.insert(room, config);
        }
        let asks: Vec<Ask> = plans
            .iter()
            .filter(|p| joined_or_left(p))
            .map(|p| {
                let room = p.candidate.member.room_id.as_str();
                let membership = p.candidate.member.membership.as_str();
                Ask {
                    room,
                    required: &configs[room].required,
                    held: (!p.initial).then(|| (p.from, &p.prev.expect("held rooms were sent").config.required)),
                    left_at: (membership != "join").then_some(p.candidate.member.pos),
                }
            })
            .collect();
        let mut found = state::read(client, &asks).await?;

        // Meta: counts and heroes for rooms sent whole or whose membership changed.
        let meta_rooms: Vec<&str> = plans
            .iter()
            .filter(|p| p.candidate.member.membership == "join")
            .filter(|p| p.initial || found.get(p.candidate.member.room_id.as_str()).is_some_and(|f| f.changed(MEMBER)))
            .map(|p| p.candidate.member.room_id.as_str())
            .collect();
        let counts =
            if meta_rooms.is_empty() { HashMap::new() } else { queries::member_counts(client, &meta_rooms).await? };
        let hero_ids =
            if meta_rooms.is_empty() { HashMap::new() } else { queries::heroes(client, &meta_rooms, user).await? };
        let heroes = self.hero_profiles(client, &hero_ids).await?;
        let meta: HashSet<&str> = meta_rooms.iter().copied().collect();

        let invites: Vec<(String, i64)> = plans
            .iter()
            .filter(|p| !joined_or_left(p) && (p.initial || p.candidate.member.pos > p.from))
            .map(|p| (p.candidate.member.room_id.clone(), p.candidate.member.pos))
            .collect();
        let mut stripped = queries::invite_state(client, user, &invites).await?;

        let viewer = Viewer { user_id: user, device_id: device };
        erasure::hide_erased(
            client,
            |room| histories.get(room),
            windows.values_mut().flat_map(|w| w.events.iter_mut()),
        )
        .await?;
        for w in windows.values_mut() {
            relations::bundle(client, viewer, &mut w.events).await?;
        }
        let now = now_ms();
        let render = |e: &EventRow| raw(e.render(Some(viewer), Format::WithoutRoomId, now));

        // Unread counts for the joined rooms that go out: sent whole, or with news.
        let joined_sent: Vec<String> = plans
            .iter()
            .filter(|p| p.candidate.member.membership == "join")
            .map(|p| (p, p.candidate.member.room_id.as_str()))
            .filter(|(p, room)| {
                p.initial
                    || windows.get(*room).is_some_and(|w| !w.events.is_empty())
                    || found.get(*room).is_some_and(|f| !f.required.is_empty())
                    || meta.contains(room)
            })
            .map(|(_, room)| room.to_owned())
            .collect();
        let unread = self.unread_counts(client, user, &joined_sent, upto, &ignored).await?;

        let mut out = Outcome { rooms: BTreeMap::new(), sent: HashMap::new() };
        for p in plans {
            let c = p.candidate;
            let room_id = c.member.room_id.as_str();
            let Ok(id) = OwnedRoomId::try_from(room_id) else { continue };
            let mut room = Room::new();
            room.initial = p.initial.then_some(true);
            room.is_dm = Some(c.dm);
            room.bump_stamp = UInt::new(c.bump.max(0) as u64);
            let mut news = p.initial;
            if !joined_or_left(p)
                && let Some(rows) = stripped.remove(room_id)
            {
                room.invite_state = Some(rows.iter().map(|e| Raw::from_json(raw(stripped_json(e)))).collect());
                news = true;
            }
            let window = windows.remove(room_id);
            let expanded = p.prev.is_some_and(|prev| prev.config.timeline_limit < p.config.timeline_limit);
            let mut limited = false;
            if let Some(w) = &window {
                limited = w.limited;
                news |= !w.events.is_empty() || expanded;
                room.timeline = w.events.iter().map(|e| Raw::from_json(render(e))).collect();
                room.limited = w.limited;
                let start = w.events.first().map_or(w.start, |e| e.pos.min(w.start));
                room.prev_batch = Some(StreamToken::new((start - 1).clamp(0, upto)).to_string());
                let live_after = bounds.from.map(|f| f.events);
                room.num_live =
                    UInt::new(live_after.map_or(0, |f| w.events.iter().filter(|e| e.pos > f).count()) as u64);
            }
            let f = found.remove(room_id).unwrap_or_default();
            if !f.required.is_empty() {
                news = true;
                room.required_state = f.required.iter().map(|e| Raw::from_json(render(e))).collect();
            }
            let name_event =
                f.changes.iter().rev().find(|e| e.kind == "m.room.name" && e.state_key.as_deref() == Some(""));
            if p.initial || name_event.is_some() {
                room.name = name_event.and_then(|e| content_str(e, "name"));
                news |= name_event.is_some();
            }
            let avatar =
                f.changes.iter().rev().find(|e| e.kind == "m.room.avatar" && e.state_key.as_deref() == Some(""));
            if let Some(e) = avatar {
                room.avatar = match content_str(e, "url").map(OwnedMxcUri::from) {
                    Some(url) => JsOption::Some(url),
                    None => JsOption::Null,
                };
                news = true;
            }
            if meta.contains(room_id) {
                let (joined, invited) = counts.get(room_id).copied().unwrap_or_default();
                room.joined_count = UInt::new(joined);
                room.invited_count = UInt::new(invited);
                room.heroes = heroes.get(room_id).cloned();
                news = true;
            }
            if let Some((notes, highlights)) = unread.get(room_id) {
                room.unread_notifications.notification_count = UInt::new(*notes);
                room.unread_notifications.highlight_count = UInt::new(*highlights);
            }
            // What the connection holds now: a wider timeline is remembered, a narrower one
            // only when the client has a gap (as Synapse does).
            let config = configs.remove(room_id).unwrap_or_default();
            let timeline_limit = match p.prev {
                Some(prev)
                    if !(p.initial || expanded || limited && prev.config.timeline_limit > config.timeline_limit) =>
                {
                    prev.config.timeline_limit
                }
                _ => config.timeline_limit,
            };
            out.sent.insert(
                room_id.to_owned(),
                RoomSent { behind: None, config: RoomConfig { required: config.required, timeline_limit } },
            );
            if news {
                tracing::debug!(
                    room = room_id,
                    initial = p.initial,
                    expanded,
                    from = p.from,
                    limited = room.limited,
                    events = room.timeline.len(),
                    prev_batch = ?room.prev_batch,
                    limit = p.config.timeline_limit,
                    "sliding sync room"
                );
                out.rooms.insert(id, room);
            }
        }
        Ok(out)
    }

    /// Display names and avatars of each room's heroes, from their member events.
    async fn hero_profiles(
        &self,
        client: &queries::Client,
        ids: &HashMap<String, Option<Vec<String>>>,
    ) -> Result<HashMap<String, Vec<Hero>>> {
        let rooms: Vec<&str> = ids.iter().filter(|(_, h)| h.is_some()).map(|(r, _)| r.as_str()).collect();
        let mut wanted = super::queries::Wanted::default();
        wanted.types.insert(MEMBER.to_owned());
        wanted.members = ids.values().flatten().flatten().cloned().collect::<HashSet<_>>();
        let mut members = super::queries::current_state(client, &rooms, &wanted).await?;
        let mut out = HashMap::new();
        for room in rooms {
            let events = members.remove(room).unwrap_or_default();
            let heroes = ids[room]
                .iter()
                .flatten()
                .filter_map(|user| {
                    let mut hero = Hero::new(OwnedUserId::try_from(user.as_str()).ok()?);
                    if let Some(e) = events.iter().find(|e| e.state_key.as_deref() == Some(user.as_str())) {
                        hero.name = content_str(e, "displayname");
                        hero.avatar = content_str(e, "avatar_url").map(OwnedMxcUri::from);
                    }
                    Some(hero)
                })
                .collect();
            out.insert(room.to_owned(), heroes);
        }
        Ok(out)
    }
}

fn content_str(e: &EventRow, key: &str) -> Option<String> {
    let content: Value = serde_json::from_str(&e.content).ok()?;
    content[key].as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}
