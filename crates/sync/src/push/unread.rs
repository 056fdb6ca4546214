//! Unread notification counts per room: the events from others after the user's latest read
//! receipt (or, without one, since the user arrived in the room) that the user's push rules
//! say notify, and of those the ones that highlight. Events the notifier has evaluated count
//! as it recorded them (the rules in force when they arrived, like Synapse's push actions);
//! later ones are evaluated here with the current rules.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::push::PushConditionRoomCtx;
use trellis_core::Result;

use crate::{SyncWorker, poll::tail_cache::TailEvent, push::eval, push::matching::CompiledRules};

/// Counting stops here: a client shows "99+" long before.
const MAX_COUNTED: i64 = 1000;

/// Per room, after the user's read-receipt floor (or where their stretch of being joined
/// began): the notifier's recorded notifications for the events it has evaluated (rows
/// without an event; their counts, from the view `user_notifications`), then each later
/// event for evaluation here. One statement, so the notifier's position and its notifications are
/// read from one snapshot.
const UNREAD: &str = "WITH np AS (SELECT COALESCE((SELECT pos FROM push_notifier WHERE id = 1), 0) AS pos), \
     f AS (SELECT r.rid, GREATEST( \
        (SELECT max(event_pos) FROM receipts WHERE room_id = r.rid AND user_id = $2 \
           AND receipt_type IN ('m.read', 'm.read.private')), \
        (SELECT joined_pos FROM memberships WHERE user_id = $2 AND room_id = r.rid), \
        0) AS floor FROM unnest($1::text[]) AS r(rid)) \
     SELECT f.rid, e.event_id, e.sender, e.type, e.state_key, e.content, 0::bigint, 0::bigint \
     FROM f CROSS JOIN np CROSS JOIN LATERAL (SELECT event_id, sender, type, state_key, content FROM events \
        WHERE room_id = f.rid AND pos > GREATEST(f.floor, np.pos) AND pos <= $3 AND sender <> $2 \
        ORDER BY pos DESC LIMIT $4) e \
     UNION ALL \
     SELECT f.rid, NULL, NULL, NULL, NULL, NULL, n.notes, n.highlights \
     FROM f CROSS JOIN np CROSS JOIN LATERAL (SELECT count(*) AS notes, count(*) FILTER (WHERE highlight) AS highlights \
        FROM user_notifications WHERE user_id = $2 AND room_id = f.rid \
        AND event_pos > f.floor AND event_pos <= LEAST($3, np.pos)) n";

/// `(notification_count, highlight_count)`.
pub type Counts = (u64, u64);

impl SyncWorker {
    /// Counts for each of `rooms`, as of events position `upto`; the events of `ignored`
    /// users do not count (the notifier does not record them either).
    pub(crate) async fn unread_counts(
        &self,
        client: &deadpool_postgres::Client,
        user: &str,
        rooms: &[String],
        upto: i64,
        ignored: &HashSet<String>,
    ) -> Result<HashMap<String, Counts>> {
        let mut out: HashMap<String, Counts> = rooms.iter().map(|r| (r.clone(), (0, 0))).collect();
        if rooms.is_empty() {
            return Ok(out);
        }
        let (_, rules) = self.load_push_rules(client, user).await?;
        let mut contexts: HashMap<String, Arc<PushConditionRoomCtx>> = HashMap::new();
        for room in rooms {
            if let Some(ctx) = eval::room_ctx(client, user, room).await? {
                let ctx = Arc::new(ctx);
                self.caches.push_rooms.insert_at([user, room], ctx.clone());
                contexts.insert(room.clone(), ctx);
            }
        }
        let stmt = client.prepare_cached(UNREAD).await?;
        for row in client.query(&stmt, &[&rooms, &user, &upto, &MAX_COUNTED]).await? {
            let room: String = row.get(0);
            let Some(event_id) = row.get::<_, Option<&str>>(1) else {
                let (notes, highlights): (i64, i64) = (row.get(6), row.get(7));
                let entry = out.entry(room).or_default();
                entry.0 += notes.max(0) as u64;
                entry.1 += highlights.max(0) as u64;
                continue;
            };
            let Some(ctx) = contexts.get(&room) else { continue };
            if ignored.contains(row.get::<_, &str>(2)) {
                continue;
            }
            let event = eval::event_json(event_id, &room, row.get(2), row.get(3), row.get(4), row.get(5));
            let outcome = eval::evaluate(&rules, ctx, &event).await;
            let entry = out.entry(room).or_default();
            entry.0 += u64::from(outcome.notify);
            entry.1 += u64::from(outcome.notify && outcome.highlight);
        }
        for (room, counts) in &out {
            self.caches.unread.insert_at([user, room], (upto, *counts));
        }
        Ok(out)
    }

    /// Counts moved on by `events` from memory, or `None` when the cached rules or room
    /// context cannot be vouched for (the rules may have changed since `since_account_data`,
    /// or a state event may change the room context).
    pub(crate) async fn count_on(
        &self,
        user: &str,
        room: &str,
        since_account_data: i64,
        counts: Counts,
        events: &[Arc<TailEvent>],
    ) -> Option<Counts> {
        let (loaded_at, rules): (i64, Arc<CompiledRules>) = self.caches.push_rules.get(user)?;
        if loaded_at < since_account_data || events.iter().any(|e| e.row.state_key.is_some()) {
            return None;
        }
        let ctx = self.caches.push_rooms.get_at([user, room])?;
        let (mut notes, mut highlights) = counts;
        for e in events.iter().filter(|e| e.row.sender != user) {
            let Some(facts) = &e.push else { continue };
            let outcome = eval::evaluate_facts(&rules, &ctx, facts).await;
            notes += u64::from(outcome.notify);
            highlights += u64::from(outcome.notify && outcome.highlight);
        }
        Some((notes, highlights))
    }
}
