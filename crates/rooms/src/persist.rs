//! What one append writes inside its transaction: the events, current state, memberships,
//! client transaction IDs, relations and threads, the search index, and the effect of
//! redactions on the events they redact.

use std::collections::HashMap;

use ruma::events::TimelineEventType;
use trellis_core::Result;

use crate::{
    new_event::Row,
    redact,
    state::{RoomState, membership_of},
};

const INSERT_EVENTS: &str = "INSERT INTO events (pos, event_id, room_id, sender, type, state_key, depth, \
     origin_server_ts, content, unsigned_json, pdu, txn_device, txn_id, redacts) \
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])";
const UPSERT_STATE: &str = "INSERT INTO current_state (room_id, type, state_key, event_id, pos) \
     SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) \
     ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = EXCLUDED.event_id, pos = EXCLUDED.pos";
// A new membership event un-forgets the room. `joined_pos` is where the user's stretch of
// being joined began (`$6`, the first join of the batch's last run of joins): it stays while
// joins follow joins (a display name change) and through a leave, and moves on a new join.
const UPSERT_MEMBERSHIPS: &str = "INSERT INTO memberships (room_id, user_id, membership, event_id, pos, joined_pos) \
     SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) \
     ON CONFLICT (user_id, room_id) DO UPDATE SET membership = EXCLUDED.membership, \
     event_id = EXCLUDED.event_id, pos = EXCLUDED.pos, forgotten = FALSE, \
     joined_pos = CASE WHEN EXCLUDED.membership <> 'join' THEN memberships.joined_pos \
       WHEN memberships.membership = 'join' THEN COALESCE(memberships.joined_pos, EXCLUDED.joined_pos) \
       ELSE EXCLUDED.joined_pos END";
/// A batch that both left (or was invited, ...) and joined again starts a new stretch,
/// whatever the membership before the batch.
const RESTART_JOINED: &str = "UPDATE memberships SET joined_pos = r.pos \
     FROM unnest($2::text[], $3::bigint[]) AS r(user_id, pos) \
     WHERE memberships.room_id = $1 AND memberships.user_id = r.user_id";
const INSERT_TXNS: &str = "INSERT INTO event_txns (user_id, device_id, txn_id, scope, event_id, created_ts) \
     SELECT *, $6 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])";
const INSERT_RELATION: &str = "INSERT INTO event_relations (event_id, room_id, relates_to, rel_type, type, sender, pos) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING";
const UPSERT_THREAD: &str = "INSERT INTO threads (root_id, room_id, latest_pos) VALUES ($1, $2, $3) \
     ON CONFLICT (root_id) DO UPDATE SET latest_pos = GREATEST(threads.latest_pos, EXCLUDED.latest_pos)";

/// Writes a batch of authorised events at `positions`.
pub(crate) async fn write_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    room: &RoomState,
    rows: &[Row],
    positions: &[i64],
) -> Result<()> {
    let room_id = room.room_id.as_str();
    let mut c = EventColumns::default();
    for (row, pos) in rows.iter().zip(positions) {
        let p = &row.pdu;
        c.pos.push(*pos);
        c.event_id.push(p.event_id.to_string());
        c.room_id.push(room_id.to_owned());
        c.sender.push(p.sender.to_string());
        c.kind.push(p.kind.to_string());
        c.state_key.push(p.state_key.clone());
        c.depth.push(u64::from(p.depth) as i64);
        c.ts.push(u64::from(p.origin_server_ts.0) as i64);
        c.content.push(p.content_str().to_owned());
        c.unsigned.push(row.unsigned.clone());
        c.pdu.push(row.json.clone());
        c.txn_device.push(row.txn.as_ref().map(|t| t.device.clone()));
        c.txn_id.push(row.txn.as_ref().map(|t| t.id.clone()));
        c.redacts.push(row.redacts.as_ref().map(|r| r.to_string()));
    }
    let stmt = tx.prepare_cached(INSERT_EVENTS).await?;
    tx.execute(
        &stmt,
        &[
            &c.pos,
            &c.event_id,
            &c.room_id,
            &c.sender,
            &c.kind,
            &c.state_key,
            &c.depth,
            &c.ts,
            &c.content,
            &c.unsigned,
            &c.pdu,
            &c.txn_device,
            &c.txn_id,
            &c.redacts,
        ],
    )
    .await?;

    // Later events of the batch win for the same state key (one upsert may not touch a row
    // twice).
    let mut state: HashMap<(String, String), (String, i64, Option<String>)> = HashMap::new();
    let mut stretches = Stretches::default();
    for (row, pos) in rows.iter().zip(positions) {
        if let Some(key) = &row.pdu.state_key {
            let membership = (row.pdu.kind == TimelineEventType::RoomMember).then(|| membership_of(&row.pdu)).flatten();
            if let Some(m) = &membership {
                stretches.see(key, m, *pos);
            }
            state.insert((row.pdu.kind.to_string(), key.clone()), (row.pdu.event_id.to_string(), *pos, membership));
        }
    }
    if !state.is_empty() {
        let (mut types, mut keys, mut ids, mut poss) = (vec![], vec![], vec![], vec![]);
        let (mut m_users, mut m_kinds, mut m_ids, mut m_pos, mut m_joined) = (vec![], vec![], vec![], vec![], vec![]);
        for ((t, k), (id, pos, membership)) in state {
            if let Some(m) = membership {
                m_joined.push(stretches.start(&k));
                m_users.push(k.clone());
                m_kinds.push(m);
                m_ids.push(id.clone());
                m_pos.push(pos);
            }
            types.push(t);
            keys.push(k);
            ids.push(id);
            poss.push(pos);
        }
        let stmt = tx.prepare_cached(UPSERT_STATE).await?;
        tx.execute(&stmt, &[&room_id, &types, &keys, &ids, &poss]).await?;
        if !m_users.is_empty() {
            let stmt = tx.prepare_cached(UPSERT_MEMBERSHIPS).await?;
            tx.execute(&stmt, &[&room_id, &m_users, &m_kinds, &m_ids, &m_pos, &m_joined]).await?;
            let (restarted, at) = stretches.restarted();
            if !restarted.is_empty() {
                let stmt = tx.prepare_cached(RESTART_JOINED).await?;
                tx.execute(&stmt, &[&room_id, &restarted, &at]).await?;
            }
        }
    }

    let txns: Vec<_> = rows.iter().filter_map(|r| r.txn.as_ref().map(|t| (r, t))).collect();
    if !txns.is_empty() {
        let users: Vec<String> = txns.iter().map(|(r, _)| r.pdu.sender.to_string()).collect();
        let devices: Vec<&str> = txns.iter().map(|(_, t)| t.device.as_str()).collect();
        let ids: Vec<&str> = txns.iter().map(|(_, t)| t.id.as_str()).collect();
        let scopes: Vec<&str> = txns.iter().map(|(_, t)| t.scope.as_str()).collect();
        let events: Vec<String> = txns.iter().map(|(r, _)| r.pdu.event_id.to_string()).collect();
        let stmt = tx.prepare_cached(INSERT_TXNS).await?;
        tx.execute(&stmt, &[&users, &devices, &ids, &scopes, &events, &trellis_core::time::now_ms()]).await?;
    }

    crate::search::index::write(tx, room_id, rows, positions).await?;
    for (row, pos) in rows.iter().zip(positions) {
        write_relation(tx, room_id, row, *pos).await?;
        if let Some(target) = &row.redacts {
            redact::apply_stored(tx, room, target, row).await?;
        }
    }
    Ok(())
}

/// Records the event as a child of the event its `m.relates_to` names (state events have no
/// relations that aggregate, like Synapse).
async fn write_relation(tx: &deadpool_postgres::Transaction<'_>, room_id: &str, row: &Row, pos: i64) -> Result<()> {
    let p = &row.pdu;
    let Some((rel_type, parent)) = p.relation().filter(|_| p.state_key.is_none()) else { return Ok(()) };
    let stmt = tx.prepare_cached(INSERT_RELATION).await?;
    let (id, kind, sender) = (p.event_id.as_str(), p.kind.to_string(), p.sender.as_str());
    tx.execute(&stmt, &[&id, &room_id, &parent, &rel_type, &kind, &sender, &pos]).await?;
    if rel_type == "m.thread" {
        let stmt = tx.prepare_cached(UPSERT_THREAD).await?;
        tx.execute(&stmt, &[&parent, &room_id, &pos]).await?;
    }
    Ok(())
}

#[derive(Default)]
struct EventColumns {
    pos: Vec<i64>,
    event_id: Vec<String>,
    room_id: Vec<String>,
    sender: Vec<String>,
    kind: Vec<String>,
    state_key: Vec<Option<String>>,
    depth: Vec<i64>,
    ts: Vec<i64>,
    content: Vec<String>,
    unsigned: Vec<Option<String>>,
    pdu: Vec<String>,
    txn_device: Vec<Option<String>>,
    txn_id: Vec<Option<String>>,
    redacts: Vec<Option<String>>,
}

/// Each user's run of joins in a batch: where the last run began, and whether a membership
/// other than a join came before it in the same batch (then the run is a new stretch, not a
/// continuation of a join stored before).
#[derive(Default)]
struct Stretches(HashMap<String, (Option<i64>, bool)>);

impl Stretches {
    fn see(&mut self, user: &str, membership: &str, pos: i64) {
        let (start, broken) = self.0.entry(user.to_owned()).or_insert((None, false));
        if membership == "join" {
            start.get_or_insert(pos);
        } else {
            *start = None;
            *broken = true;
        }
    }

    /// Where the user's last run of joins began (none when the batch ends in another
    /// membership).
    fn start(&self, user: &str) -> Option<i64> {
        self.0.get(user).and_then(|(start, _)| *start)
    }

    /// The users whose batch ends in a run of joins after another membership, and where
    /// each run began.
    fn restarted(&self) -> (Vec<&str>, Vec<i64>) {
        self.0.iter().filter_map(|(user, (start, broken))| Some((user.as_str(), (*start).filter(|_| *broken)?))).unzip()
    }
}
