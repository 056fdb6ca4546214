//! Building a sync response for the window `(since, upto]` of every stream: which rooms
//! changed for the user, their timelines (limited, with `prev_batch`) and the state the client
//! needs (lazy-loaded if asked), ephemeral events, account data, presence and unread counts.
//!
//! Only positions at or below `upto` are read, and `upto` only holds announced positions, so a
//! response and its `next_batch` never skip anything.

use std::collections::{HashMap, HashSet};

use ruma::api::client::filter::{EventFormat, FilterDefinition};
use serde_json::Value;
use trellis_core::{Result, Stream, StreamToken, time::now_ms};
use trellis_storage::{
    erasure,
    events::{EventRow, Format, Viewer},
    relations, visibility,
};

use crate::{
    SyncWorker,
    poll::filters,
    poll::lazy,
    poll::response::{
        Events, InvitedRoom, JoinedRoom, KnockedRoom, LeftRoom, RawEvent, Summary, SyncBody, Timeline, raw,
    },
    poll::timeline,
    queries::{self, Client, Members, Membership},
    streams::presence,
};

/// What one sync asks for.
pub struct Request<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub since: Option<StreamToken>,
    pub full_state: bool,
    pub filter: &'a FilterDefinition,
}

/// Account data of the window: global events, and events per room.
type AccountData = (Vec<Value>, HashMap<String, Vec<Value>>);

/// How a room appears in the response.
enum Section {
    /// Joined: timeline in `(lower, upto]`; full state if `full`, else the gap's state.
    /// `newly`: joined since the client's `since`, so its timeline is always `limited`
    /// (the client has nothing of the room before it and may page back, as with Synapse).
    Join {
        lower: i64,
        full: bool,
        newly: bool,
    },
    Invite {
        at: i64,
    },
    Knock {
        at: i64,
    },
    /// Left (or banned) at `at`: timeline in `(lower, at]`.
    Leave {
        lower: i64,
        at: i64,
        full: bool,
    },
}

/// A room's timeline as read, before rendering.
struct Built<'s> {
    room: String,
    section: &'s Section,
    events: Vec<EventRow>,
    limited: bool,
    /// Position of the first timeline event before visibility filtering.
    start: i64,
}

impl SyncWorker {
    pub(crate) async fn compute(
        &self,
        client: &Client,
        req: &Request<'_>,
        upto: StreamToken,
        memberships: &[Membership],
    ) -> Result<SyncBody> {
        // Account data first: the ignored users shape the timelines and invites.
        let since_ad = req.since.map(|t| t.get(Stream::AccountData));
        let account_data =
            self.account_data_events(client, req.user_id, since_ad, upto.get(Stream::AccountData)).await?;
        let ignored = self.ignored_users(client, req.user_id, since_ad, upto, &account_data.0).await?;
        let sections = self.sections(client, req, upto.events, memberships).await?;
        let room_filter = &req.filter.room;
        let limit =
            room_filter.timeline.limit.map_or(i64::from(self.settings.default_timeline_limit), |l| u64::from(l) as i64);

        let mut bounds = Vec::new();
        for (room, s) in &sections {
            match s {
                Section::Join { lower, .. } => bounds.push((room.clone(), *lower, upto.events)),
                Section::Leave { lower, at, .. } => bounds.push((room.clone(), *lower, *at)),
                Section::Invite { .. } | Section::Knock { .. } => {}
            }
        }
        // One event more than the limit tells whether the timeline is limited.
        let mut timelines = queries::timelines(client, &bounds, limit + 1, &room_filter.timeline).await?;
        let synced: Vec<&str> = bounds.iter().map(|b| b.0.as_str()).collect();
        let histories = visibility::load(client, req.user_id, &synced).await?;

        // State: everything before the timeline for new or full-state rooms, otherwise what
        // changed in the gap between `since` and a limited timeline.
        let lazy = lazy::options(&room_filter.state);
        let mut state_bounds = Vec::new();
        // Gaps whose member changes a lazy-loading client gets besides its timeline's senders.
        let mut gap_bounds = Vec::new();
        let mut built: Vec<Built> = Vec::new();
        for (room, section) in &sections {
            let (lower, full, hi) = match section {
                Section::Join { lower, full, .. } => (*lower, *full, upto.events),
                Section::Leave { lower, at, full } => (*lower, *full, *at),
                Section::Invite { .. } | Section::Knock { .. } => continue,
            };
            let sight = timeline::Sight { user: req.user_id, history: histories.get(room), ignored: &ignored };
            let newest = timelines.remove(room).unwrap_or_default();
            let window = timeline::visible(
                client,
                room,
                (lower, hi),
                newest,
                limit.max(0) as usize,
                &room_filter.timeline,
                &sight,
            )
            .await?;
            let timeline::Window { events, mut limited, start } = window;
            if events.is_empty() && !full {
                continue;
            }
            if full {
                state_bounds.push((room.clone(), 0, start));
            } else if limited {
                state_bounds.push((room.clone(), lower, start));
                gap_bounds.push((room.clone(), lower, start));
            }
            // A room joined since `since` is limited, as Synapse sends it: the client keeps
            // nothing of it from before and pages back from `prev_batch`.
            limited |= matches!(section, Section::Join { newly: true, .. });
            built.push(Built { room: room.clone(), section, events, limited, start });
        }
        let members = if lazy.is_some() { Members::Without } else { Members::All };
        let mut states = queries::state_between(client, &state_bounds, &room_filter.state, members).await?;
        if let Some(include_redundant) = lazy {
            // A gappy sync carries every membership change of its gap (old leaves, members
            // who joined and said nothing), as Synapse does: the client cannot page through
            // the gap to find them.
            let gaps = queries::state_between(client, &gap_bounds, &room_filter.state, Members::Only).await?;
            for (room, rows) in gaps {
                states.entry(room).or_default().extend(rows);
            }
            let rooms: Vec<lazy::Room> = built
                .iter()
                .map(|b| lazy::Room {
                    room: &b.room,
                    events: &b.events,
                    whole: matches!(b.section, Section::Join { full: true, .. } | Section::Leave { full: true, .. }),
                })
                .collect();
            let (user, device) = (req.user_id, req.device_id);
            let since = req.since.map(|t| t.events);
            self.lazy_members(client, (user, device), since, &rooms, &mut states, include_redundant, upto.events)
                .await?;
        }

        // The summary may be left out while unchanged (spec: `RoomSummary`): only rooms new to
        // the client or whose membership changed in the window carry one.
        let summarised: Vec<&str> = built
            .iter()
            .filter(|b| match b.section {
                Section::Join { full, .. } => {
                    *full
                        || b.events.iter().any(|e| e.kind == "m.room.member")
                        || states.get(&b.room).is_some_and(|rows| rows.iter().any(|e| e.kind == "m.room.member"))
                }
                _ => false,
            })
            .map(|b| b.room.as_str())
            .collect();
        let (counts, mut heroes) = if summarised.is_empty() {
            (Default::default(), Default::default())
        } else {
            (
                queries::member_counts(client, &summarised).await?,
                queries::heroes(client, &summarised, req.user_id).await?,
            )
        };
        let summarised: HashSet<String> = summarised.iter().map(|r| r.to_string()).collect();

        // Users whose presence the client may lack: see `presence::joined_since`.
        let presence_of = if req.since.is_some() {
            let fresh: Vec<&str> = built
                .iter()
                .filter(|b| matches!(b.section, Section::Join { newly: true, .. }))
                .map(|b| b.room.as_str())
                .collect();
            let mut members: Vec<&EventRow> = Vec::new();
            for b in built.iter().filter(|b| matches!(b.section, Section::Join { .. })) {
                members.extend(b.events.iter().chain(states.get(&b.room).into_iter().flatten()));
            }
            presence::joined_since(client, req.user_id, &fresh, &members).await?
        } else {
            HashSet::new()
        };

        let pdus = match req.filter.event_format {
            EventFormat::Federation => {
                let ids: Vec<&str> = built
                    .iter()
                    .flat_map(|b| b.events.iter())
                    .chain(states.values().flatten())
                    .map(|e| e.event_id.as_str())
                    .collect();
                queries::pdus(client, &ids).await?
            }
            _ => HashMap::new(),
        };
        let viewer = Viewer { user_id: req.user_id, device_id: req.device_id };
        erasure::hide_erased(client, |room| histories.get(room), built.iter_mut().flat_map(|b| b.events.iter_mut()))
            .await?;
        for b in built.iter_mut() {
            relations::bundle(client, viewer, &mut b.events).await?;
        }
        let now = now_ms();
        let render = |rows: &[EventRow]| -> Vec<RawEvent> {
            rows.iter()
                .map(|r| match pdus.get(&r.event_id) {
                    Some(pdu) => raw(pdu.clone()),
                    None => raw(r.render(Some(viewer), Format::WithoutRoomId, now)),
                })
                .collect()
        };

        let mut body =
            SyncBody { next_batch: upto.max(req.since.unwrap_or_default()).to_string(), ..Default::default() };
        for b in built {
            let state = Events { events: render(&states.remove(&b.room).unwrap_or_default()) };
            // An initial sync whose timeline holds all of the room's history points
            // `prev_batch` at the present, as Synapse does: clients page back from it and
            // find the room's events (the ones in hand again) rather than nothing.
            let prev_batch = if req.since.is_none() && !b.limited && matches!(b.section, Section::Join { .. }) {
                upto.events
            } else {
                (b.start - 1).min(upto.events)
            };
            let prev_batch = StreamToken::new(prev_batch).to_string();
            let timeline = Timeline { events: render(&b.events), limited: b.limited, prev_batch };
            match b.section {
                Section::Join { .. } => {
                    let summary = if summarised.contains(&b.room) {
                        let (j, i) = counts.get(&b.room).copied().unwrap_or_default();
                        Summary { heroes: heroes.remove(&b.room).flatten(), joined: Some(j), invited: Some(i) }
                    } else {
                        Summary::default()
                    };
                    body.rooms.join.insert(b.room, JoinedRoom { summary, state, timeline, ..Default::default() });
                }
                _ => {
                    body.rooms.leave.insert(b.room, LeftRoom { state, timeline, ..Default::default() });
                }
            }
        }

        let stripped_rooms: Vec<(String, i64)> = sections
            .iter()
            .filter_map(|(r, s)| match s {
                Section::Invite { at } | Section::Knock { at } => Some((r.clone(), *at)),
                _ => None,
            })
            .collect();
        let mut stripped = queries::invite_state(client, req.user_id, &stripped_rooms).await?;
        for (room, section) in &sections {
            let from_ignored = || {
                stripped.get(room).is_some_and(|rows| {
                    rows.iter().any(|e| {
                        e.kind == "m.room.member"
                            && e.state_key.as_deref() == Some(req.user_id)
                            && ignored.contains(&e.sender)
                    })
                })
            };
            if matches!(section, Section::Invite { .. }) && from_ignored() {
                // Invites from ignored users are not shown (spec: "Ignoring Users").
                continue;
            }
            let events = || -> Vec<RawEvent> {
                stripped.get(room).map(|rows| rows.iter().map(|e| raw(stripped_json(e))).collect()).unwrap_or_default()
            };
            match section {
                Section::Invite { .. } => {
                    body.rooms.invite.insert(room.clone(), InvitedRoom { invite_state: Events { events: events() } });
                }
                Section::Knock { .. } => {
                    body.rooms.knock.insert(room.clone(), KnockedRoom { knock_state: Events { events: events() } });
                }
                _ => {}
            }
        }
        stripped.clear();

        self.other_streams(client, req, upto, memberships, account_data, &mut body).await?;
        let rooms: Vec<String> = body.rooms.join.keys().cloned().collect();
        for (room, (notes, highlights)) in
            self.unread_counts(client, req.user_id, &rooms, upto.events, &ignored).await?
        {
            if let Some(entry) = body.rooms.join.get_mut(&room) {
                entry.unread_notifications.notification_count = notes;
                entry.unread_notifications.highlight_count = highlights;
                if req.filter.room.timeline.unread_thread_notifications {
                    // Threads are not counted separately yet: everything is in the main count.
                    entry.unread_thread_notifications = Some(Default::default());
                }
            }
        }

        if !presence_of.is_empty() {
            self.add_presence(client, &req.filter.presence, &presence_of, &mut body).await?;
        }
        let since_td = req.since.map(|t| t.get(Stream::ToDevice));
        let (to_device, truncated) = self
            .to_device_events(
                client,
                req.user_id,
                req.device_id,
                since_td,
                upto.get(Stream::ToDevice),
                crate::streams::to_device::PER_SYNC,
            )
            .await?;
        body.to_device.events = to_device;
        if let Some(last) = truncated {
            // More are waiting: the next sync starts after the last one delivered.
            let next: StreamToken = body.next_batch.parse()?;
            body.next_batch = next.with(Stream::ToDevice, last).to_string();
        }
        let has_keys =
            crate::streams::e2ee::fill(client, req.user_id, req.device_id, req.since, upto, &mut body).await?;
        self.caches.key_devices.insert_at([req.user_id, req.device_id], has_keys);
        if let Some(fields) = &req.filter.event_fields {
            body.keep_fields(fields);
        }
        Ok(body)
    }

    /// Ephemeral events, account data, presence and unread counts.
    async fn other_streams(
        &self,
        client: &Client,
        req: &Request<'_>,
        upto: StreamToken,
        memberships: &[Membership],
        (global, per_room): AccountData,
        body: &mut SyncBody,
    ) -> Result<()> {
        let since = |s: Stream| req.since.map(|t| t.get(s));
        let rf = &req.filter.room;
        let joined: Vec<String> = memberships
            .iter()
            .filter(|m| m.membership == "join" && room_selected(&m.room_id, rf.rooms.as_deref(), &rf.not_rooms))
            .map(|m| m.room_id.clone())
            .collect();
        let empty_timeline = || JoinedRoom {
            timeline: Timeline { prev_batch: StreamToken::new(upto.events).to_string(), ..Default::default() },
            ..Default::default()
        };

        let mut ephemeral: HashMap<String, Vec<Value>> = HashMap::new();
        for (room, ev) in self.typing_events(client, &joined, since(Stream::Typing), upto.get(Stream::Typing)).await? {
            ephemeral.entry(room).or_default().push(ev);
        }
        let receipts = self
            .receipt_events(client, req.user_id, &joined, since(Stream::Receipts), upto.get(Stream::Receipts))
            .await?;
        for (room, ev) in receipts {
            ephemeral.entry(room).or_default().push(ev);
        }
        for (room, events) in ephemeral {
            let events = filters::room_events(&rf.ephemeral, events);
            if events.is_empty() {
                continue;
            }
            let entry = body.rooms.join.entry(room).or_insert_with(empty_timeline);
            entry.ephemeral.events.extend(events.into_iter().map(|e| raw(e.to_string())));
        }

        body.account_data.events =
            filters::events(&req.filter.account_data, global).into_iter().map(|e| raw(e.to_string())).collect();
        for (room, events) in per_room {
            if !joined.contains(&room) {
                continue;
            }
            let events = filters::room_events(&rf.account_data, events);
            if events.is_empty() {
                continue;
            }
            let entry = body.rooms.join.entry(room).or_insert_with(empty_timeline);
            entry.account_data.events.extend(events.into_iter().map(|e| raw(e.to_string())));
        }

        let presence =
            self.presence_events(client, req.user_id, since(Stream::Presence), upto.get(Stream::Presence)).await?;
        body.presence.events =
            filters::events(&req.filter.presence, presence).into_iter().map(|e| raw(e.to_string())).collect();

        Ok(())
    }

    /// Decides, for every room the user has a membership in, how it appears.
    async fn sections(
        &self,
        client: &Client,
        req: &Request<'_>,
        upto: i64,
        memberships: &[Membership],
    ) -> Result<Vec<(String, Section)>> {
        let mut out = Vec::new();
        let rf = &req.filter.room;
        for row in memberships.iter().cloned() {
            if row.forgotten || !room_selected(&row.room_id, rf.rooms.as_deref(), &rf.not_rooms) {
                continue;
            }
            // The table is current; a change after `upto` is not visible to this sync yet.
            let now = if row.pos > upto {
                match queries::membership_at(client, req.user_id, &row.room_id, upto).await? {
                    Some(m) => m,
                    None => continue,
                }
            } else {
                row
            };
            let section = match req.since.map(|s| s.events) {
                None => initial_section(&now, rf.include_leave),
                Some(since) => {
                    let before = if now.pos > since {
                        queries::membership_at(client, req.user_id, &now.room_id, since).await?
                    } else {
                        Some(now.clone())
                    };
                    incremental_section(&now, before.as_ref(), since, req.full_state)
                }
            };
            if let Some(s) = section {
                out.push((now.room_id, s));
            }
        }
        Ok(out)
    }
}

fn initial_section(now: &Membership, include_leave: bool) -> Option<Section> {
    match now.membership.as_str() {
        "join" => Some(Section::Join { lower: 0, full: true, newly: false }),
        "invite" => Some(Section::Invite { at: now.pos }),
        "knock" => Some(Section::Knock { at: now.pos }),
        "leave" | "ban" if include_leave => Some(Section::Leave { lower: 0, at: now.pos, full: true }),
        _ => None,
    }
}

fn incremental_section(now: &Membership, before: Option<&Membership>, since: i64, full_state: bool) -> Option<Section> {
    let was = before.map(|m| m.membership.as_str());
    let changed = now.pos > since;
    match now.membership.as_str() {
        // Newly joined (from an invite, a knock, a leave or nothing) or rejoined: the room is
        // sent as an initial sync would send it, so the client gets the latest events it may
        // see and a `prev_batch` to page back from, not just the join; `limited` tells it
        // that it may (Synapse marks every newly joined room so).
        "join" if was != Some("join") => Some(Section::Join { lower: 0, full: true, newly: true }),
        "join" => Some(Section::Join { lower: since, full: full_state, newly: false }),
        "invite" if changed => Some(Section::Invite { at: now.pos }),
        "knock" if changed => Some(Section::Knock { at: now.pos }),
        "leave" | "ban" if changed && matches!(was, Some("join" | "invite" | "knock")) => {
            Some(Section::Leave { lower: since, at: now.pos, full: full_state || was != Some("join") })
        }
        _ => None,
    }
}

pub(crate) fn room_selected(room: &str, rooms: Option<&[ruma::OwnedRoomId]>, not_rooms: &[ruma::OwnedRoomId]) -> bool {
    if not_rooms.iter().any(|r| r.as_str() == room) {
        return false;
    }
    rooms.is_none_or(|list| list.iter().any(|r| r.as_str() == room))
}

/// A stripped state event: only `type`, `state_key`, `content` and `sender`.
pub(crate) fn stripped_json(e: &EventRow) -> String {
    let content: Value = serde_json::from_str(&e.content).unwrap_or_default();
    serde_json::json!({
        "type": e.kind,
        "state_key": e.state_key.as_deref().unwrap_or(""),
        "content": content,
        "sender": e.sender,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(membership: &str, pos: i64) -> Membership {
        Membership { room_id: "!r".into(), membership: membership.into(), pos, forgotten: false }
    }

    #[test]
    fn incremental_classification() {
        // Still joined: timeline since `since`, no full state.
        assert!(matches!(
            incremental_section(&m("join", 3), Some(&m("join", 3)), 5, false),
            Some(Section::Join { lower: 5, full: false, newly: false })
        ));
        // Joined or rejoined in the window: the whole room, as in an initial sync.
        for was in [Some(m("invite", 4)), Some(m("leave", 4)), Some(m("knock", 4)), None] {
            assert!(matches!(
                incremental_section(&m("join", 9), was.as_ref(), 5, false),
                Some(Section::Join { lower: 0, full: true, newly: true })
            ));
        }
        // Still joined with full_state: full state, timeline since `since`.
        assert!(matches!(
            incremental_section(&m("join", 3), Some(&m("join", 3)), 5, true),
            Some(Section::Join { lower: 5, full: true, newly: false })
        ));
        // Invited or knocking in the window; an old invite stays out.
        assert!(matches!(incremental_section(&m("invite", 9), None, 5, false), Some(Section::Invite { at: 9 })));
        assert!(matches!(incremental_section(&m("knock", 9), None, 5, false), Some(Section::Knock { at: 9 })));
        assert!(incremental_section(&m("invite", 2), Some(&m("invite", 2)), 5, false).is_none());
        // Left in the window after being joined; a long-gone room stays out.
        assert!(matches!(
            incremental_section(&m("leave", 9), Some(&m("join", 1)), 5, false),
            Some(Section::Leave { at: 9, .. })
        ));
        assert!(incremental_section(&m("leave", 2), Some(&m("leave", 2)), 5, false).is_none());
    }

    #[test]
    fn room_filters() {
        let a = ruma::RoomId::parse("!a:x").unwrap();
        assert!(room_selected("!a:x", None, &[]));
        assert!(!room_selected("!a:x", None, std::slice::from_ref(&a)));
        assert!(room_selected("!a:x", Some(std::slice::from_ref(&a)), &[]));
        assert!(!room_selected("!b:x", Some(std::slice::from_ref(&a)), &[]));
    }
}
