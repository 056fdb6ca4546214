//! The notifier: evaluates every new event for every joined member with their push rules,
//! records the events that notify ([`crate::push::record`]: once per event, plus the members
//! notified otherwise) and queues a push to each of the user's
//! http pushers (`push_outbox`, delivered by `push_delivery`).
//!
//! Every sync worker runs the loop, but a batch runs only under the row lock of the single
//! `push_notifier` row (`FOR UPDATE SKIP LOCKED`), and the batch's notifications, pushes and
//! new position commit together: exactly one worker handles each event, once, and a restarted
//! worker resumes from the stored position.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use trellis_core::{Result, shutdown::Shutdown, time::now_ms};

use crate::{
    SyncWorker,
    push::{
        eval,
        matching::CompiledRules,
        record::{EventInfo, Notified, Record},
    },
};

/// Events evaluated per batch (one transaction).
const BATCH: i64 = 200;
/// How often the notifier looks for new events.
const TICK: Duration = Duration::from_millis(200);
/// A batch waits for this long without a long-poll answered on this worker (the fan-out of a
/// message to its room's clients is over), ...
const LULL_MS: i64 = 15;
/// ... but never longer than this (per batch, over all its waits).
const MAX_DEFER: Duration = Duration::from_millis(1000);
/// Per-member rows written per statement. Most events need none or a few; an event that
/// notifies a busy room's members in many different ways can need thousands, and written in
/// slices, each after a lull, they fit between deliveries instead of holding PostgreSQL while
/// the next message is sent and delivered.
const SLICE: usize = 256;

const LOCK: &str = "SELECT pos FROM push_notifier WHERE id = 1 FOR UPDATE SKIP LOCKED";
const COMPLETE: &str = "SELECT pos FROM stream_positions WHERE stream = 'events'";
const EVENTS: &str = "SELECT pos, event_id, room_id, sender, type, state_key, content, origin_server_ts \
     FROM events WHERE pos > $1 AND pos <= $2 ORDER BY pos LIMIT $3";
/// A batch's per-event records (events that notify the room's members alike), once each.
const RECORD_EVENTS: &str = "INSERT INTO event_notifications (event_pos, room_id, event_id, sender, actions, highlight, ts) \
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::bigint[]) \
     ON CONFLICT (event_pos) DO NOTHING";
/// A batch's per-member rows: the members an event notifies otherwise than its record says.
const RECORD_MEMBERS: &str = "INSERT INTO notifications (user_id, room_id, event_id, event_pos, actions, highlight, ts, notify) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bool[], $7::bigint[], $8::bool[]) \
     ON CONFLICT (user_id, event_pos) DO NOTHING";
/// The pushes a batch queues: one per notification of a user with http pushers, per pusher.
const QUEUE_PUSHES: &str = "INSERT INTO push_outbox (user_id, event_pos, app_id, pushkey, next_attempt_ms) \
     SELECT n.user_id, n.event_pos, p.app_id, p.pushkey, $3 FROM unnest($1::text[], $2::bigint[]) AS n(user_id, event_pos) \
     JOIN pushers p ON p.user_id = n.user_id AND p.kind = 'http'";
/// The users among some users who have an http pusher.
const PUSHED_USERS: &str = "SELECT DISTINCT user_id FROM pushers WHERE user_id = ANY($1) AND kind = 'http'";
/// Where each user's stored rules stand (no row: the defaults), and whom each ignores.
const RULE_POSITIONS: &str = "SELECT user_id, type, pos, \
        CASE WHEN type = 'm.ignored_user_list' THEN content END FROM account_data \
     WHERE room_id = '' AND type IN ('m.push_rules', 'm.ignored_user_list') AND user_id = ANY($1)";
/// The local users among some users.
const LOCAL_USERS: &str = "SELECT user_id FROM users WHERE user_id = ANY($1)";
/// The last state change of a room: room contexts read before it are still exact.
const STATE_POS: &str = "SELECT coalesce(max(pos), 0) FROM current_state WHERE room_id = $1";
/// The memo is dropped whole past this many entries.
const MEMO_LIMIT: usize = 200_000;
const ADVANCE: &str = "UPDATE push_notifier SET pos = $1 WHERE id = 1";

/// Runs the notifier until `shutdown` (`push_delivery` sends what it queues).
pub(crate) async fn run(worker: std::sync::Weak<SyncWorker>, shutdown: Shutdown) {
    let mut memo = Memo::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.wait() => return,
        }
        let Some(worker) = worker.upgrade() else { return };
        // The wait before reading and the waits before each slice of the batch share the bound.
        let mut until = tokio::time::Instant::now() + MAX_DEFER;
        worker.lull(&shutdown, until).await;
        loop {
            if memo.rules.len() + memo.rooms.len() > MEMO_LIMIT {
                memo = Memo::default();
            }
            match worker.notify_batch(&mut memo, &shutdown, until).await {
                Ok(true) => {
                    until = tokio::time::Instant::now() + MAX_DEFER;
                    continue;
                }
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = ?e, "push notifier batch failed");
                    break;
                }
            }
        }
    }
}

/// Rules and room contexts kept between batches, each with what it is exact for: a user's
/// rules for the position of their stored rules, a room's contexts for its last state change.
#[derive(Default)]
struct Memo {
    rules: HashMap<String, (Option<i64>, Arc<CompiledRules>)>,
    rooms: HashMap<String, (i64, Option<Arc<eval::RoomContexts>>)>,
}

impl SyncWorker {
    /// Evaluates one batch of new events; `true` when more may be waiting.
    /// Its writes wait for lulls until `until` at the latest.
    async fn notify_batch(&self, memo: &mut Memo, shutdown: &Shutdown, until: tokio::time::Instant) -> Result<bool> {
        let mut locked = self.pool.get().await?;
        let tx = locked.transaction().await?;
        let Some(row) = tx.query_opt(LOCK, &[]).await? else { return Ok(false) };
        let from: i64 = row.get(0);
        let complete: i64 = tx.query_one(COMPLETE, &[]).await?.get(0);
        if complete <= from {
            return Ok(false);
        }
        let read = self.pool.get().await?;
        let events = read.query(EVENTS, &[&from, &complete, &BATCH]).await?;
        let full = events.len() as i64 == BATCH;
        let upto = if full { events.last().map_or(complete, |r| r.get(0)) } else { complete };
        // Once per room and batch: state changes (joins, names, power levels) since the
        // contexts were read mean reading them again, once for all members. The joined
        // members are the contexts' keys.
        let mut rooms: Vec<&str> = events.iter().map(|e| e.get::<_, &str>(2)).collect();
        rooms.sort_unstable();
        rooms.dedup();
        let mut members: Vec<String> = Vec::new();
        for room in &rooms {
            let state_pos: i64 = read.query_one(STATE_POS, &[room]).await?.get(0);
            if memo.rooms.get(*room).is_none_or(|(at, _)| *at != state_pos) {
                let contexts = eval::RoomContexts::load(&read, room).await?.map(Arc::new);
                memo.rooms.insert((*room).to_owned(), (state_pos, contexts));
            }
            if let Some((_, Some(contexts))) = memo.rooms.get(*room) {
                members.extend(contexts.members().map(|(user, _)| user.clone()));
            }
        }
        // Invites notify their (local) invitee, who is not a member yet.
        let invited: Vec<&str> = events
            .iter()
            .filter(|e| e.get::<_, &str>(4) == "m.room.member")
            .filter(|e| trellis_storage::visibility::membership_of(e.get(6)).as_deref() == Some("invite"))
            .filter_map(|e| e.get::<_, Option<&str>>(5))
            .collect();
        let invitees: HashSet<String> = if invited.is_empty() {
            HashSet::new()
        } else {
            read.query(LOCAL_USERS, &[&invited]).await?.iter().map(|r| r.get(0)).collect()
        };
        members.extend(invitees.iter().cloned());
        members.sort_unstable();
        members.dedup();
        let ignoring = self.refresh_rules(&read, memo, &members).await?;
        let pushed: HashSet<String> = read.query(PUSHED_USERS, &[&members]).await?.iter().map(|r| r.get(0)).collect();
        let mut record = Record::default();
        // The JSON of each distinct list of actions, by where the rule keeps it.
        let mut actions_json: HashMap<(usize, usize), Arc<str>> = HashMap::new();
        for ev in &events {
            let (pos, event_id, room, sender): (i64, &str, &str, &str) = (ev.get(0), ev.get(1), ev.get(2), ev.get(3));
            let json = eval::event_json(event_id, room, sender, ev.get(4), ev.get(5), ev.get(6));
            // Flattened once, matched against every member's rules.
            let Some(facts) = eval::facts(&json) else { continue };
            let Some(contexts) = memo.rooms.get(room).and_then(|(_, c)| c.clone()) else { continue };
            let invitee = ev
                .get::<_, Option<&str>>(5)
                .filter(|u| invitees.contains(*u) && ev.get::<_, &str>(4) == "m.room.member")
                .filter(|u| !contexts.is_member(u))
                .and_then(|u| Some((u.to_owned(), Arc::new(contexts.outsider(u)?))));
            let mut outcome_of = async |user: &str, ctx| -> Notified {
                if ignoring.get(user).is_some_and(|list| list.contains(sender)) {
                    return None;
                }
                let (_, rules) = memo.rules.get(user)?;
                let outcome = eval::evaluate_facts(rules, ctx, &facts).await;
                if !outcome.notify {
                    return None;
                }
                let key = (outcome.actions.as_ptr() as usize, outcome.actions.len());
                let actions = actions_json.entry(key).or_insert_with(|| {
                    Arc::from(serde_json::to_string(outcome.actions).unwrap_or_else(|_| "[]".into()))
                });
                Some((actions.clone(), outcome.highlight))
            };
            let mut members = Vec::with_capacity(contexts.len());
            for (user, ctx) in contexts.members().filter(|(user, _)| *user != sender) {
                members.push((user.as_str(), outcome_of(user, ctx).await));
            }
            let mut outsiders = Vec::new();
            if let Some((user, ctx)) = &invitee {
                outsiders.push((user.as_str(), outcome_of(user, ctx).await));
            }
            let info = EventInfo { pos, room, event_id, sender, ts: ev.get(7) };
            record.add(&info, &members, &outsiders, &pushed);
        }
        let (e, m) = (&record.events, &record.members);
        if !e.positions.is_empty() {
            self.lull(shutdown, until).await;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                [&e.positions, &e.rooms, &e.event_ids, &e.senders, &e.actions, &e.highlights, &e.ts];
            tx.execute(RECORD_EVENTS, &params).await?;
        }
        for start in (0..m.len()).step_by(SLICE) {
            self.lull(shutdown, until).await;
            let s = start..(start + SLICE).min(m.len());
            let slice: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &&m.users[s.clone()],
                &&m.rooms[s.clone()],
                &&m.event_ids[s.clone()],
                &&m.positions[s.clone()],
                &&m.actions[s.clone()],
                &&m.highlights[s.clone()],
                &&m.ts[s.clone()],
                &&m.notify[s.clone()],
            ];
            tx.execute(RECORD_MEMBERS, &slice).await?;
        }
        let queued = match record.push_users.is_empty() {
            true => 0,
            false => tx.execute(QUEUE_PUSHES, &[&record.push_users, &record.push_positions, &now_ms()]).await?,
        };
        tx.execute(ADVANCE, &[&upto]).await?;
        tx.commit().await?;
        if queued > 0 {
            self.push_queued.notify_one();
        }
        tracing::debug!(from, upto, events = events.len(), queued, "push notifier batch");
        Ok(full)
    }

    /// Waits (until `until` at the latest) for a moment when no long-poll has been answered
    /// for `LULL_MS`: notifying is background work, and its thousand-row writes would otherwise
    /// land in the middle of a message's delivery to the clients waiting for it.
    async fn lull(&self, shutdown: &Shutdown, until: tokio::time::Instant) {
        loop {
            let quiet = self.uptime_ms() - self.last_answer_ms.load(std::sync::atomic::Ordering::Relaxed);
            if quiet >= LULL_MS || tokio::time::Instant::now() >= until || shutdown.is_triggered() {
                return;
            }
            let pause = Duration::from_millis((LULL_MS - quiet).clamp(1, LULL_MS) as u64);
            tokio::select! {
                _ = tokio::time::sleep_until((tokio::time::Instant::now() + pause).min(until)) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// Makes `memo` hold the current rules of every user in `users` (one query for all of
    /// them; only the users whose stored rules moved are loaded again), and returns whom each
    /// of them ignores (their events notify nobody who ignores them).
    async fn refresh_rules(
        &self,
        read: &deadpool_postgres::Client,
        memo: &mut Memo,
        users: &[String],
    ) -> Result<HashMap<String, HashSet<String>>> {
        let mut stored: HashMap<String, i64> = HashMap::new();
        let mut ignoring = HashMap::new();
        for row in read.query(RULE_POSITIONS, &[&users]).await? {
            let (user, kind): (String, &str) = (row.get(0), row.get(1));
            if kind == crate::poll::ignored::IGNORED_USER_LIST {
                let content: Option<&str> = row.get(3);
                let content: serde_json::Value = content.and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
                ignoring.insert(user, crate::poll::ignored::parse(&content));
            } else {
                stored.insert(user, row.get(2));
            }
        }
        for user in users {
            let now = stored.get(user).copied();
            if memo.rules.get(user).is_none_or(|(at, _)| *at != now) {
                let (_, rules) = self.load_push_rules(read, user).await?;
                memo.rules.insert(user.clone(), (now, rules));
            }
        }
        Ok(ignoring)
    }
}
