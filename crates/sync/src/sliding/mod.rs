//! Simplified Sliding Sync (MSC4186), beside `/sync` on the same workers, bus and caches. A
//! request names windows over the user's rooms (lists with ranges, ordered by recency),
//! subscribes to rooms, and asks for extensions; the answer carries only what the connection
//! has not sent yet (see `connection.rs`). With a `pos` and a `timeout` the request waits:
//! it subscribes to the user's channels and its joined rooms' before it reads anything, and
//! answers as soon as something in its windows, subscriptions or extensions is new.

mod connection;
mod extensions;
mod fast;
mod lists;
mod meta;
mod queries;
mod request;
mod response;
mod rooms;
mod state;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use trellis_bus::{Channel, Subscription};
use trellis_core::{Result, StreamToken};
use trellis_proto::sync::{SlidingSyncRequest, SlidingSyncResponse};

use self::{
    connection::{Key, Pos, State},
    fast::{Fast, Snapshot},
    lists::{Candidate, Children},
    response::Body,
    rooms::{Bounds, Plan},
};
use crate::{SyncWorker, streams};

pub(crate) use connection::{Memory, expire};
pub(crate) use fast::Snapshots;

/// One computed answer and the connection state it leaves.
struct Answer {
    body: Body,
    next: State,
    /// The rooms whose entries in `next` differ from the previous state's.
    changed: Vec<String>,
    /// Whether a list count differs from the previous state's (or there is none).
    lists_changed: bool,
    news: bool,
    /// The user's rooms in list order and the spaces' children, for the fast path.
    candidates: Vec<Candidate>,
    children: Children,
}

impl SyncWorker {
    #[tracing::instrument(level = "debug", skip_all, fields(user = %req.user_id, conn = %req.conn_id))]
    pub(crate) async fn sliding_sync(&self, req: SlidingSyncRequest) -> Result<SlidingSyncResponse> {
        let started = Instant::now();
        let began = trellis_core::time::now_ms();
        let asked = request::parse(&req)?;
        let pos = req.pos.as_deref().filter(|p| !p.is_empty()).map(Pos::parse).transpose()?;
        let (user, device) = (req.user_id.as_str(), req.device_id.as_str());
        let key = Key::new([user, device, asked.conn_id.as_str()]);
        let previous = match &pos {
            Some(p) => Some(connection::load(&self.pool.get().await?, &self.sliding, &key, p).await?),
            None => None,
        };
        self.mark_syncing(user, &req.set_presence).await?;

        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms).min(self.settings.max_timeout);
        // A request that may wait is a long-poll held here, like `/sync`'s.
        let _open = (pos.is_some() && req.timeout_ms > 0).then(crate::poll::longpoll::OpenPoll::count);
        // Subscribe first, read second: no wake-up can fall between the two. The previous
        // request of the connection may have left its subscription, listening all along: then
        // the bus can vouch that nothing changed since the `pos`, and the request waits
        // without computing anything.
        let parking = format!("{device}\u{1f}sliding\u{1f}{}", asked.conn_id);
        let from = pos.map(|p| p.token);
        let (mut sub, mut quiet_since) = match self.parked.take(user, &parking) {
            Some(kept) if previous.is_some() => {
                kept.sub.clear_wakeups();
                (kept.sub, from)
            }
            _ => (self.bus.subscribe(&[Channel::User(user.to_owned())]).await?, None),
        };
        let mut goal = None;
        let request = fast::fingerprint(&req);
        loop {
            if let Some(since) = quiet_since {
                let news = sub.news_since(&since);
                let quiet = news.known && news.changes.is_empty();
                let caught_up = quiet
                    && (self.hub_caught_up(&news, &mut goal).await?
                        || self.hub_reaches(&sub, &since, goal.unwrap_or_default()).await);
                if caught_up && tokio::time::Instant::now() < deadline {
                    wait_for_news(&sub, &since, deadline, self).await;
                    if tokio::time::Instant::now() < deadline && !self.shutdown.is_triggered() {
                        continue;
                    }
                }
            }
            let snapshot = match (&previous, from) {
                (Some(prev), Some(from)) => self.sliding_snapshots.get(&key, prev.pos, from, &request),
                _ => None,
            };
            if let (Some(prev), Some(snap)) = (&previous, snapshot) {
                match self.sliding_fast((user, device), &asked, prev, &snap, &sub).await? {
                    Fast::Answer { mut body, token, news, snapshot } => {
                        let expired = tokio::time::Instant::now() >= deadline;
                        if news || expired || self.shutdown.is_triggered() {
                            connection::keep_alive_in(&self.pool, &self.sliding, &key, prev).await?;
                            body.pos = Pos::render(prev.pos, token);
                            body.txn_id = req.txn_id.clone();
                            self.sliding_snapshots.put(key.clone(), *snapshot);
                            if !self.shutdown.is_triggered() {
                                let parked = crate::poll::parked::Parked { sub, rooms: Arc::default() };
                                self.parked.park(user, &parking, parked);
                            }
                            metrics::histogram!("trellis_sliding_sync_duration_seconds", "kind" => "incremental")
                                .record(started.elapsed().as_secs_f64());
                            return Ok(SlidingSyncResponse { body_json: serde_json::to_string(&body)? });
                        }
                        quiet_since = Some(token);
                        wait_for_news(&sub, &token, deadline, self).await;
                        continue;
                    }
                    Fast::Slow(reason) => fast::slow(reason),
                }
            }
            let mut client = self.pool.get().await?;
            let members = queries::memberships(&client, user).await?;
            let joined: Vec<Channel> =
                members.iter().filter(|m| m.membership == "join").map(|m| Channel::Room(m.room_id.clone())).collect();
            sub.add(&joined).await?;
            let upto = streams::current(&client).await?.max(from.unwrap_or_default());
            sub.baseline(&upto);
            let bounds = Bounds { from, upto };
            let answer =
                self.sliding_answer(&client, (user, device), &asked, previous.as_deref(), members, &bounds).await?;
            let expired = tokio::time::Instant::now() >= deadline;
            if answer.news || previous.is_none() || expired || self.shutdown.is_triggered() {
                let stored = match (&previous, answer.changed.is_empty() && !answer.lists_changed) {
                    (Some(prev), true) => {
                        connection::keep_alive(&client, &self.sliding, &key, prev).await?;
                        prev.pos
                    }
                    _ => {
                        let state = connection::store(
                            &mut client,
                            &key,
                            previous.as_deref(),
                            answer.next,
                            &answer.changed,
                            began,
                        )
                        .await?;
                        let pos = state.pos;
                        self.sliding.put(key.clone(), Arc::new(state));
                        pos
                    }
                };
                self.sliding_snapshots.put(
                    key.clone(),
                    Snapshot {
                        position: stored,
                        token: upto,
                        request,
                        candidates: answer.candidates,
                        children: answer.children,
                        to_device_clean: fast::to_device_clean(&answer.body, asked.extensions.to_device_since),
                    },
                );
                let mut body = answer.body;
                body.pos = Pos::render(stored, upto);
                body.txn_id = req.txn_id.clone();
                if !self.shutdown.is_triggered() {
                    // Kept for the connection's next request (see `parked.rs`).
                    self.parked.park(user, &parking, crate::poll::parked::Parked { sub, rooms: Arc::default() });
                }
                metrics::histogram!("trellis_sliding_sync_duration_seconds", "kind" => if previous.is_none() { "initial" } else { "incremental" })
                    .record(started.elapsed().as_secs_f64());
                return Ok(SlidingSyncResponse { body_json: serde_json::to_string(&body)? });
            }
            drop(client);
            quiet_since = Some(upto);
            wait_for_news(&sub, &upto, deadline, self).await;
        }
    }

    /// Computes the answer to a request at `bounds`.
    async fn sliding_answer(
        &self,
        client: &crate::queries::Client,
        (user, device): (&str, &str),
        asked: &request::Request,
        previous: Option<&State>,
        members: Vec<queries::Member>,
        bounds: &Bounds,
    ) -> Result<Answer> {
        let upto = bounds.upto.events;
        let from = bounds.from.map(|t| t.events);
        // Memberships as of the answer's position (the table may be a little ahead of it).
        let mut current = Vec::with_capacity(members.len());
        for m in members {
            if m.pos <= upto {
                current.push(m);
            } else if let Some(at) = crate::queries::membership_at(client, user, &m.room_id, upto).await? {
                current.push(queries::Member {
                    room_id: m.room_id,
                    membership: at.membership,
                    pos: at.pos,
                    sender: user.into(),
                    // Rare (the table is ahead of the answer): the next answer has the flag.
                    direct_invite: false,
                });
            }
        }
        let rooms: Vec<&str> = current.iter().map(|m| m.room_id.as_str()).collect();
        let needs = queries::Needs {
            encrypted: asked.lists.values().any(|l| l.filters.is_encrypted.is_some()),
            room_type: asked
                .lists
                .values()
                .any(|l| !l.filters.room_types.is_empty() || !l.filters.not_room_types.is_empty()),
        };
        let facts = queries::facts(client, &rooms, upto, needs, &self.caches.room_types).await?;
        let direct = queries::direct_rooms(client, user).await?;
        let mut candidates: Vec<Candidate> = current
            .into_iter()
            .map(|m| {
                let dm = m.direct_invite || direct.contains(&m.room_id);
                let f = facts.get(&m.room_id);
                Candidate::new(m, f, dm)
            })
            .collect();
        lists::order(&mut candidates);
        let listed: Vec<Candidate> =
            candidates.iter().filter(|c| lists::listed(&c.member, user, from)).cloned().collect();
        // Spaces a list filters on, among those the user is joined to.
        let spaces: Vec<&str> = asked
            .lists
            .values()
            .flat_map(|l| l.filters.spaces.iter())
            .filter(|s| candidates.iter().any(|c| &c.member.room_id == *s && c.member.membership == "join"))
            .map(String::as_str)
            .collect();
        let children = queries::children(client, &spaces).await?;
        let windows = lists::windows(&listed, &asked.lists, &children);

        // The rooms to answer for, each with the union of the configurations asking for it.
        let by_id: HashMap<&str, &Candidate> = candidates.iter().map(|c| (c.member.room_id.as_str(), c)).collect();
        let (configs, subscribed) = lists::room_configs(&windows, asked, |room| by_id.contains_key(room));
        let mut plans = Vec::new();
        for (room, config) in configs {
            let c = by_id[room.as_str()];
            let prev = previous.and_then(|p| p.rooms.get(&room));
            let newly_joined = match from {
                Some(f) if c.member.membership == "join" && c.member.pos > f => {
                    crate::queries::membership_at(client, user, &room, f).await?.is_none_or(|m| m.membership != "join")
                }
                _ => false,
            };
            let initial = from.is_none() || newly_joined || prev.is_none();
            let held_from = prev.and_then(|p| p.behind).or(from).unwrap_or(0);
            plans.push(Plan { candidate: c, config, prev, initial, from: held_from });
        }
        let outcome = self.sliding_rooms(client, (user, device), &plans, bounds).await?;

        let joined: HashSet<String> =
            candidates.iter().filter(|c| c.member.membership == "join").map(|c| c.member.room_id.clone()).collect();
        let initial: HashSet<String> =
            plans.iter().filter(|p| p.initial).map(|p| p.candidate.member.room_id.clone()).collect();
        let scope =
            extensions::Rooms { windows: &windows, subscribed: &subscribed, joined: &joined, initial: &initial };
        let (extensions, ext_news) =
            self.sliding_extensions(client, (user, device), &asked.extensions, &scope, bounds).await?;

        // The connection's next state: the rooms answered for are live; a live room left
        // out that changed meanwhile is now behind (the client has it up to `from`).
        let mut next = previous.cloned().unwrap_or_default();
        let mut changed = Vec::new();
        if let (Some(prev), Some(f)) = (previous, from) {
            let live_elsewhere: Vec<&str> = prev
                .rooms
                .iter()
                .filter(|(r, s)| s.behind.is_none() && !outcome.sent.contains_key(*r))
                .map(|(r, _)| r.as_str())
                .collect();
            for room in queries::active(client, &live_elsewhere, f, upto).await? {
                if let Some(s) = next.rooms.get_mut(&room) {
                    s.behind = Some(f);
                    changed.push(room);
                }
            }
        }
        for (room, sent) in outcome.sent {
            if next.rooms.get(&room) != Some(&sent) {
                next.rooms.insert(room.clone(), sent);
                changed.push(room);
            }
        }
        next.lists = windows.iter().map(|(name, w)| (name.clone(), w.count)).collect();
        let lists_changed = previous.is_none_or(|p| p.lists != next.lists);
        let lists = response::lists(&next.lists);
        let news = !outcome.rooms.is_empty() || ext_news || lists_changed;
        let body = Body { txn_id: None, pos: String::new(), lists, rooms: outcome.rooms, extensions };
        Ok(Answer { body, next, changed, lists_changed, news, candidates, children })
    }
}

/// Waits for a wake-up that may concern the request (one the bus vouches carries nothing new
/// after `upto` costs nothing), the deadline or shutdown.
async fn wait_for_news(sub: &Subscription, upto: &StreamToken, deadline: tokio::time::Instant, worker: &SyncWorker) {
    loop {
        if !worker.wait_once(sub, deadline).await {
            return;
        }
        let news = sub.news_since(upto);
        if !news.known || !news.changes.is_empty() {
            return;
        }
    }
}
