//! The `rooms` of a response. A room the connection never sent (or that the user just joined)
//! goes out whole — `initial`, its latest events, the state its configuration asks for, name,
//! avatar, heroes and counts; a room the client holds gets only what is new since: timeline
//! events, changed state, and the name, avatar, heroes and counts when they changed. Invites
//! and knocks carry their stripped state. Timelines hide what history visibility or ignoring
//! hides, as `/sync` does.

use std::collections::{BTreeMap, HashMap};

use js_option::JsOption;
use ruma::{OwnedMxcUri, OwnedRoomId, UInt, api::client::sync::sync_events::v5::response::Room, serde::Raw};
use trellis_core::{Result, StreamToken, time::now_ms};
use trellis_storage::{
    erasure,
    events::{EventRow, Format, Viewer},
    relations, visibility,
};

use super::{
    connection::RoomSent,
    lists::Candidate,
    meta::{Meta, content_str},
    request::{MEMBER, RoomConfig},
    state::{self, Ask},
};
use crate::{
    SyncWorker,
    poll::{
        ignored::Ignored,
        response::{RawEvent, raw},
        steps::stripped_json,
        timeline,
    },
    queries,
};

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

/// The rooms' timelines as the user may see them, and what decided that.
struct Timelines {
    windows: HashMap<String, timeline::Window>,
    histories: HashMap<String, visibility::RoomHistory>,
    ignored: Ignored,
}

/// What was read of one room, for its part of the answer.
struct Parts {
    stripped: Option<Vec<EventRow>>,
    window: Option<timeline::Window>,
    found: state::Found,
    unread: Option<(u64, u64)>,
}

impl SyncWorker {
    /// The rooms of the answer, as named steps each batched over all the planned rooms:
    /// timelines, the configuration each room is sent with, its state, meta, invites' stripped
    /// state, unread counts, then each room put together.
    pub(crate) async fn sliding_rooms(
        &self,
        client: &queries::Client,
        (user, device): (&str, &str),
        plans: &[Plan<'_>],
        bounds: &Bounds,
    ) -> Result<Outcome> {
        let upto = bounds.upto.events;
        let Timelines { mut windows, histories, ignored } = self.sliding_timelines(client, user, plans, bounds).await?;
        let mut configs = configs(plans, &windows);
        let mut found = state::read(client, &asks(plans, &configs)).await?;
        let meta = self.sliding_meta(client, user, meta_rooms(plans, &found)).await?;
        let mut stripped = invite_state(client, user, plans).await?;

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
        let sent = joined_sent(plans, &windows, &found, &meta);
        let unread = self.unread_counts(client, user, &sent, upto, &ignored).await?;

        let now = now_ms();
        let render = |e: &EventRow| raw(e.render(Some(viewer), Format::WithoutRoomId, now));
        let mut out = Outcome { rooms: BTreeMap::new(), sent: HashMap::new() };
        for p in plans {
            let room_id = p.candidate.member.room_id.as_str();
            let Ok(id) = OwnedRoomId::try_from(room_id) else { continue };
            let parts = Parts {
                stripped: if joined_or_left(p) { None } else { stripped.remove(room_id) },
                window: windows.remove(room_id),
                found: found.remove(room_id).unwrap_or_default(),
                unread: unread.get(room_id).copied(),
            };
            let (room, news, limited) = room_of(p, parts, &meta, &render, bounds);
            let expanded = p.prev.is_some_and(|prev| prev.config.timeline_limit < p.config.timeline_limit);
            let config = configs.remove(room_id).unwrap_or_default();
            out.sent.insert(room_id.to_owned(), held(p, config, expanded, limited));
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

    /// Step 1: timelines, one query for all rooms, each read up to its own limit (one event
    /// more tells whether it is limited), then what history visibility and ignoring hide.
    async fn sliding_timelines(
        &self,
        client: &queries::Client,
        user: &str,
        plans: &[Plan<'_>],
        bounds: &Bounds,
    ) -> Result<Timelines> {
        let upto = bounds.upto.events;
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
        Ok(Timelines { windows, histories, ignored })
    }
}

/// Whether the user is (or was) in the room, rather than invited or knocking.
fn joined_or_left(p: &Plan) -> bool {
    !matches!(p.candidate.member.membership.as_str(), "invite" | "knock")
}

/// Step 2: the configuration each room is sent with: lazy members of its timeline included,
/// and those sent before kept.
fn configs<'p>(plans: &'p [Plan<'_>], windows: &HashMap<String, timeline::Window>) -> HashMap<&'p str, RoomConfig> {
    let mut configs = HashMap::new();
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
    configs
}

/// Step 3: what state each joined or left room needs.
fn asks<'a>(plans: &'a [Plan<'_>], configs: &'a HashMap<&str, RoomConfig>) -> Vec<Ask<'a>> {
    plans
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
        .collect()
}

/// The joined rooms sent whole or whose membership changed: they carry counts and heroes.
fn meta_rooms<'p>(plans: &'p [Plan<'_>], found: &HashMap<String, state::Found>) -> Vec<&'p str> {
    plans
        .iter()
        .filter(|p| p.candidate.member.membership == "join")
        .filter(|p| p.initial || found.get(p.candidate.member.room_id.as_str()).is_some_and(|f| f.changed(MEMBER)))
        .map(|p| p.candidate.member.room_id.as_str())
        .collect()
}

/// Step 5: the stripped state of new invites and knocks.
async fn invite_state(
    client: &queries::Client,
    user: &str,
    plans: &[Plan<'_>],
) -> Result<HashMap<String, Vec<EventRow>>> {
    let invites: Vec<(String, i64)> = plans
        .iter()
        .filter(|p| !joined_or_left(p) && (p.initial || p.candidate.member.pos > p.from))
        .map(|p| (p.candidate.member.room_id.clone(), p.candidate.member.pos))
        .collect();
    queries::invite_state(client, user, &invites).await
}

/// Step 6: the joined rooms that go out (sent whole, or with news), which get unread counts.
fn joined_sent(
    plans: &[Plan<'_>],
    windows: &HashMap<String, timeline::Window>,
    found: &HashMap<String, state::Found>,
    meta: &Meta,
) -> Vec<String> {
    plans
        .iter()
        .filter(|p| p.candidate.member.membership == "join")
        .map(|p| (p, p.candidate.member.room_id.as_str()))
        .filter(|(p, room)| {
            p.initial
                || windows.get(*room).is_some_and(|w| !w.events.is_empty())
                || found.get(*room).is_some_and(|f| !f.required.is_empty())
                || meta.rooms.contains(*room)
        })
        .map(|(_, room)| room.to_owned())
        .collect()
}

/// Step 7: one room of the answer; whether it has news for the client, and whether its
/// timeline is limited.
fn room_of(
    p: &Plan<'_>,
    parts: Parts,
    meta: &Meta,
    render: &impl Fn(&EventRow) -> RawEvent,
    bounds: &Bounds,
) -> (Room, bool, bool) {
    let c = p.candidate;
    let room_id = c.member.room_id.as_str();
    let upto = bounds.upto.events;
    let mut room = Room::new();
    room.initial = p.initial.then_some(true);
    room.is_dm = Some(c.dm);
    room.bump_stamp = UInt::new(c.bump.max(0) as u64);
    let mut news = p.initial;
    if let Some(rows) = parts.stripped {
        room.invite_state = Some(rows.iter().map(|e| Raw::from_json(raw(stripped_json(e)))).collect());
        news = true;
    }
    let expanded = p.prev.is_some_and(|prev| prev.config.timeline_limit < p.config.timeline_limit);
    let mut limited = false;
    if let Some(w) = &parts.window {
        limited = w.limited;
        news |= !w.events.is_empty() || expanded;
        room.timeline = w.events.iter().map(|e| Raw::from_json(render(e))).collect();
        room.limited = w.limited;
        let start = w.events.first().map_or(w.start, |e| e.pos.min(w.start));
        room.prev_batch = Some(StreamToken::new((start - 1).clamp(0, upto)).to_string());
        let live_after = bounds.from.map(|f| f.events);
        room.num_live = UInt::new(live_after.map_or(0, |f| w.events.iter().filter(|e| e.pos > f).count()) as u64);
    }
    let f = parts.found;
    if !f.required.is_empty() {
        news = true;
        room.required_state = f.required.iter().map(|e| Raw::from_json(render(e))).collect();
    }
    let name_event = f.changes.iter().rev().find(|e| e.kind == "m.room.name" && e.state_key.as_deref() == Some(""));
    if p.initial || name_event.is_some() {
        room.name = name_event.and_then(|e| content_str(e, "name"));
        news |= name_event.is_some();
    }
    let avatar = f.changes.iter().rev().find(|e| e.kind == "m.room.avatar" && e.state_key.as_deref() == Some(""));
    if let Some(e) = avatar {
        room.avatar = match content_str(e, "url").map(OwnedMxcUri::from) {
            Some(url) => JsOption::Some(url),
            None => JsOption::Null,
        };
        news = true;
    }
    if meta.rooms.contains(room_id) {
        let (joined, invited) = meta.counts.get(room_id).copied().unwrap_or_default();
        room.joined_count = UInt::new(joined);
        room.invited_count = UInt::new(invited);
        room.heroes = meta.heroes.get(room_id).cloned();
        news = true;
    }
    if let Some((notes, highlights)) = parts.unread {
        room.unread_notifications.notification_count = UInt::new(notes);
        room.unread_notifications.highlight_count = UInt::new(highlights);
    }
    (room, news, limited)
}

/// What the connection holds of a room now: a wider timeline is remembered, a narrower one
/// only when the client has a gap (as Synapse does).
fn held(p: &Plan<'_>, config: RoomConfig, expanded: bool, limited: bool) -> RoomSent {
    let timeline_limit = match p.prev {
        Some(prev) if !(p.initial || expanded || limited && prev.config.timeline_limit > config.timeline_limit) => {
            prev.config.timeline_limit
        }
        _ => config.timeline_limit,
    };
    RoomSent { behind: None, config: RoomConfig { required: config.required, timeline_limit } }
}
