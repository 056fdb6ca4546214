//! The rooms of an exact sync, one named step each, every step batched over all the rooms:
//! their timelines, the state the client needs (lazy-loaded if asked), which carry a summary,
//! whose presence the client may lack, rendering them into the body, and the stripped state
//! of invites and knocks.

use std::collections::{HashMap, HashSet};

use ruma::api::client::filter::EventFormat;
use trellis_core::{Result, StreamToken, time::now_ms};
use trellis_storage::{
    erasure,
    events::{EventRow, Format, Viewer},
    relations,
    visibility::{self, RoomHistory},
};

use crate::{
    SyncWorker,
    poll::{
        ignored::Ignored,
        lazy,
        response::{
            Events, InvitedRoom, JoinedRoom, KnockedRoom, LeftRoom, RawEvent, Summary, SyncBody, Timeline, raw,
        },
        sections::Section,
        steps::{Request, stripped_json},
        timeline,
    },
    queries::{self, Client, Members},
    streams::presence,
};

/// A room's timeline as read, before rendering.
pub(crate) struct Built<'s> {
    room: String,
    section: &'s Section,
    events: Vec<EventRow>,
    limited: bool,
    /// Position of the first timeline event before visibility filtering.
    start: i64,
}

/// The timelines of a sync, and the windows whose state it needs.
pub(crate) struct Timelines<'s> {
    pub built: Vec<Built<'s>>,
    histories: HashMap<String, RoomHistory>,
    /// Everything before the timeline for new or full-state rooms, otherwise what changed in
    /// the gap between `since` and a limited timeline.
    state_bounds: Vec<(String, i64, i64)>,
    /// Gaps whose member changes a lazy-loading client gets besides its timeline's senders.
    gap_bounds: Vec<(String, i64, i64)>,
}

/// Which joined rooms carry a summary, and its parts.
pub(crate) struct Summaries {
    rooms: HashSet<String>,
    counts: HashMap<String, (u64, u64)>,
    heroes: HashMap<String, Option<Vec<String>>>,
}

/// Each room's state events, by room.
pub(crate) type States = HashMap<String, Vec<EventRow>>;

impl SyncWorker {
    /// Step 1: the timeline of every joined or left room, as the user may see it; rooms with
    /// nothing new (and no full state due) drop out.
    pub(crate) async fn read_timelines<'s>(
        &self,
        client: &Client,
        req: &Request<'_>,
        upto: StreamToken,
        sections: &'s [(String, Section)],
        ignored: &Ignored,
        limit: i64,
    ) -> Result<Timelines<'s>> {
        let room_filter = &req.filter.room;
        let mut bounds = Vec::new();
        for (room, s) in sections {
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

        let mut out = Timelines { built: Vec::new(), histories, state_bounds: Vec::new(), gap_bounds: Vec::new() };
        for (room, section) in sections {
            let (lower, full, hi) = match section {
                Section::Join { lower, full, .. } => (*lower, *full, upto.events),
                Section::Leave { lower, at, full } => (*lower, *full, *at),
                Section::Invite { .. } | Section::Knock { .. } => continue,
            };
            let sight = timeline::Sight { user: req.user_id, history: out.histories.get(room), ignored };
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
                out.state_bounds.push((room.clone(), 0, start));
            } else if limited {
                out.state_bounds.push((room.clone(), lower, start));
                out.gap_bounds.push((room.clone(), lower, start));
            }
            // A room joined since `since` is limited, as Synapse sends it: the client keeps
            // nothing of it from before and pages back from `prev_batch`.
            limited |= matches!(section, Section::Join { newly: true, .. });
            out.built.push(Built { room: room.clone(), section, events, limited, start });
        }
        Ok(out)
    }

    /// Step 2: the state each room's timeline needs; with lazy-loading, the members of its
    /// senders (and of the gap) the device lacks instead of all of them.
    pub(crate) async fn read_state(
        &self,
        client: &Client,
        req: &Request<'_>,
        upto: StreamToken,
        t: &Timelines<'_>,
    ) -> Result<States> {
        let room_filter = &req.filter.room;
        let lazy = lazy::options(&room_filter.state);
        let members = if lazy.is_some() { Members::Without } else { Members::All };
        let mut states = queries::state_between(client, &t.state_bounds, &room_filter.state, members).await?;
        if let Some(include_redundant) = lazy {
            // A gappy sync carries every membership change of its gap (old leaves, members
            // who joined and said nothing), as Synapse does: the client cannot page through
            // the gap to find them.
            let gaps = queries::state_between(client, &t.gap_bounds, &room_filter.state, Members::Only).await?;
            for (room, rows) in gaps {
                states.entry(room).or_default().extend(rows);
            }
            let rooms: Vec<lazy::Room> = t
                .built
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
        Ok(states)
    }
}

/// Step 3: the summary may be left out while unchanged (spec: `RoomSummary`): only rooms new
/// to the client or whose membership changed in the window carry one.
pub(crate) async fn summaries(
    client: &Client,
    req: &Request<'_>,
    built: &[Built<'_>],
    states: &States,
) -> Result<Summaries> {
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
    let (counts, heroes) = if summarised.is_empty() {
        (Default::default(), Default::default())
    } else {
        (queries::member_counts(client, &summarised).await?, queries::heroes(client, &summarised, req.user_id).await?)
    };
    Ok(Summaries { rooms: summarised.iter().map(|r| r.to_string()).collect(), counts, heroes })
}

/// Step 4: users whose presence the client may lack (see `presence::joined_since`).
pub(crate) async fn presence_of(
    client: &Client,
    req: &Request<'_>,
    built: &[Built<'_>],
    states: &States,
) -> Result<HashSet<String>> {
    if req.since.is_none() {
        return Ok(HashSet::new());
    }
    let fresh: Vec<&str> = built
        .iter()
        .filter(|b| matches!(b.section, Section::Join { newly: true, .. }))
        .map(|b| b.room.as_str())
        .collect();
    let mut members: Vec<&EventRow> = Vec::new();
    for b in built.iter().filter(|b| matches!(b.section, Section::Join { .. })) {
        members.extend(b.events.iter().chain(states.get(&b.room).into_iter().flatten()));
    }
    presence::joined_since(client, req.user_id, &fresh, &members).await
}

/// Step 5: the joined and left rooms, rendered into `body` (erased events hidden, relations
/// bundled, the signed PDU instead with `event_format: federation`).
pub(crate) async fn render_rooms(
    client: &Client,
    req: &Request<'_>,
    upto: StreamToken,
    t: Timelines<'_>,
    mut states: States,
    mut summaries: Summaries,
    body: &mut SyncBody,
) -> Result<()> {
    let Timelines { mut built, histories, .. } = t;
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
                let summary = if summaries.rooms.contains(&b.room) {
                    let (j, i) = summaries.counts.get(&b.room).copied().unwrap_or_default();
                    Summary { heroes: summaries.heroes.remove(&b.room).flatten(), joined: Some(j), invited: Some(i) }
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
    Ok(())
}

/// Step 6: invites and knocks with their stripped state; invites from ignored users are not
/// shown (spec: "Ignoring Users").
pub(crate) async fn stripped_rooms(
    client: &Client,
    req: &Request<'_>,
    sections: &[(String, Section)],
    ignored: &Ignored,
    body: &mut SyncBody,
) -> Result<()> {
    let stripped_rooms: Vec<(String, i64)> = sections
        .iter()
        .filter_map(|(r, s)| match s {
            Section::Invite { at } | Section::Knock { at } => Some((r.clone(), *at)),
            _ => None,
        })
        .collect();
    let stripped = queries::invite_state(client, req.user_id, &stripped_rooms).await?;
    for (room, section) in sections {
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
    Ok(())
}
