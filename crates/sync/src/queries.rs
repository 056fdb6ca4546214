//! The SQL of a sync: memberships, then timelines and state for all rooms at once (one query
//! each, however many rooms), so a sync costs a handful of round trips.

use std::collections::HashMap;

use ruma::api::client::filter::RoomEventFilter;
use tokio_postgres::types::ToSql;
use trellis_core::Result;
use trellis_storage::{
    events::{COLUMNS, EventRow},
    filter,
};

pub type Client = deadpool_postgres::Client;

const SELECT_MEMBERSHIPS: &str = "SELECT room_id, membership, pos, forgotten FROM memberships WHERE user_id = $1";
const MEMBERSHIP_AT: &str = "SELECT content, pos FROM events WHERE type = 'm.room.member' AND state_key = $1 \
     AND room_id = $2 AND pos <= $3 ORDER BY pos DESC LIMIT 1";
const JOINED_MEMBERS: &str = "SELECT DISTINCT user_id FROM memberships WHERE room_id = ANY($1) AND membership = 'join'";
const MEMBER_COUNTS: &str = "SELECT room_id, membership, count(*) FROM memberships \
     WHERE room_id = ANY($1) AND membership IN ('join', 'invite') GROUP BY room_id, membership";
/// Per room: whether it has a name or canonical alias (then it needs no heroes), and the
/// first six joined or invited and the first six departed members (six: one may be the
/// syncing user, who is never a hero of their own room).
const HERO_CANDIDATES: &str = "SELECT r.rid, EXISTS (SELECT 1 FROM current_state c JOIN events e ON e.event_id = c.event_id \
        WHERE c.room_id = r.rid AND c.state_key = '' AND \
        ((c.type = 'm.room.name' AND coalesce(trellis_jsonb(e.content)->>'name', '') <> '') \
         OR (c.type = 'm.room.canonical_alias' AND coalesce(trellis_jsonb(e.content)->>'alias', '') <> ''))), \
     ARRAY(SELECT user_id FROM memberships m WHERE m.room_id = r.rid \
        AND m.membership IN ('join', 'invite') ORDER BY m.pos LIMIT 6), \
     ARRAY(SELECT user_id FROM memberships m WHERE m.room_id = r.rid \
        AND m.membership IN ('leave', 'ban') ORDER BY m.pos LIMIT 6) \
     FROM unnest($1::text[]) AS r(rid)";

/// State types shown to invitees (stripped state), as the spec recommends.
pub const INVITE_STATE_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

#[derive(Debug, Clone)]
pub struct Membership {
    pub room_id: String,
    pub membership: String,
    pub pos: i64,
    /// The user forgot this (left) room: it no longer appears anywhere.
    pub forgotten: bool,
}

/// The user's current memberships (possibly ahead of the position being synced).
pub async fn memberships(client: &Client, user: &str) -> Result<Vec<Membership>> {
    let stmt = client.prepare_cached(SELECT_MEMBERSHIPS).await?;
    Ok(client
        .query(&stmt, &[&user])
        .await?
        .iter()
        .map(|r| Membership { room_id: r.get(0), membership: r.get(1), pos: r.get(2), forgotten: r.get(3) })
        .collect())
}

/// The user's membership of `room` as of position `at`.
pub async fn membership_at(client: &Client, user: &str, room: &str, at: i64) -> Result<Option<Membership>> {
    let stmt = client.prepare_cached(MEMBERSHIP_AT).await?;
    let Some(row) = client.query_opt(&stmt, &[&user, &room, &at]).await? else { return Ok(None) };
    let content: serde_json::Value = serde_json::from_str(row.get::<_, &str>(0))?;
    Ok(content["membership"].as_str().map(|m| Membership {
        room_id: room.to_owned(),
        membership: m.to_owned(),
        pos: row.get(1),
        forgotten: false,
    }))
}

/// Up to `limit` events per room in `(lo, hi]`, newest first, matching `filter`.
pub async fn timelines(
    client: &Client,
    bounds: &[(String, i64, i64)],
    limit: i64,
    filter: &RoomEventFilter,
) -> Result<HashMap<String, Vec<EventRow>>> {
    timelines_each(client, bounds, &vec![limit; bounds.len()], filter).await
}

/// Up to `limits[i]` events of room `bounds[i]` in its `(lo, hi]`, newest first, matching
/// `filter` (rooms asking for few events read no more than that).
pub async fn timelines_each(
    client: &Client,
    bounds: &[(String, i64, i64)],
    limits: &[i64],
    filter: &RoomEventFilter,
) -> Result<HashMap<String, Vec<EventRow>>> {
    if bounds.is_empty() {
        return Ok(HashMap::new());
    }
    let (cond, params) = filter::conditions(filter, 5);
    let sql = format!(
        "SELECT e.* FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS r(rid, lo, hi, lim) \
         CROSS JOIN LATERAL (SELECT {COLUMNS} FROM events WHERE room_id = r.rid AND pos > r.lo AND pos <= r.hi{cond} \
          ORDER BY pos DESC LIMIT r.lim) e"
    );
    let rooms: Vec<&str> = bounds.iter().map(|b| b.0.as_str()).collect();
    let los: Vec<i64> = bounds.iter().map(|b| b.1).collect();
    let his: Vec<i64> = bounds.iter().map(|b| b.2).collect();
    let mut args: Vec<&(dyn ToSql + Sync)> = vec![&rooms, &los, &his, &limits];
    args.extend(params.iter().map(|p| &**p as &(dyn ToSql + Sync)));
    grouped(client.query(&client.prepare_cached(&sql).await?, &args).await?)
}

/// Which member events a state query returns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Members {
    All,
    /// None: lazy-loading adds the ones needed itself.
    Without,
    Only,
}

/// Per room, the latest state event of each key with a position in `(lo, before)`.
pub async fn state_between(
    client: &Client,
    bounds: &[(String, i64, i64)],
    filter: &RoomEventFilter,
    members: Members,
) -> Result<HashMap<String, Vec<EventRow>>> {
    if bounds.is_empty() {
        return Ok(HashMap::new());
    }
    let (mut cond, params) = filter::conditions(filter, 4);
    match members {
        Members::All => {}
        Members::Without => cond.push_str(" AND type <> 'm.room.member'"),
        Members::Only => cond.push_str(" AND type = 'm.room.member'"),
    }
    let sql = format!(
        "SELECT s.* FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS r(rid, lo, before) CROSS JOIN LATERAL \
         (SELECT DISTINCT ON (type, state_key) {COLUMNS} FROM events WHERE room_id = r.rid \
          AND state_key IS NOT NULL AND pos > r.lo AND pos < r.before{cond} \
          ORDER BY type, state_key, pos DESC) s ORDER BY s.pos"
    );
    let rooms: Vec<&str> = bounds.iter().map(|b| b.0.as_str()).collect();
    let los: Vec<i64> = bounds.iter().map(|b| b.1).collect();
    let befores: Vec<i64> = bounds.iter().map(|b| b.2).collect();
    let mut args: Vec<&(dyn ToSql + Sync)> = vec![&rooms, &los, &befores];
    args.extend(params.iter().map(|p| &**p as &(dyn ToSql + Sync)));
    grouped(client.query(&client.prepare_cached(&sql).await?, &args).await?)
}

/// Stripped-state material for invites: the listed state types, the user's member event and
/// the inviter's as of each invite (Synapse shows the inviter's, and clients name the invite
/// by it).
pub async fn invite_state(
    client: &Client,
    user: &str,
    invites: &[(String, i64)],
) -> Result<HashMap<String, Vec<EventRow>>> {
    if invites.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT s.* FROM unnest($1::text[], $2::bigint[]) AS r(rid, at) CROSS JOIN LATERAL \
         (SELECT DISTINCT ON (type, state_key) {COLUMNS} FROM events WHERE room_id = r.rid \
          AND state_key IS NOT NULL AND pos <= r.at \
          AND ((state_key = '' AND type = ANY($3)) OR (type = 'm.room.member' AND (state_key = $4 \
            OR state_key = (SELECT i.sender FROM events i WHERE i.room_id = r.rid AND i.type = 'm.room.member' \
              AND i.state_key = $4 AND i.pos <= r.at ORDER BY i.pos DESC LIMIT 1)))) \
          ORDER BY type, state_key, pos DESC) s ORDER BY s.pos"
    );
    let rooms: Vec<&str> = invites.iter().map(|i| i.0.as_str()).collect();
    let ats: Vec<i64> = invites.iter().map(|i| i.1).collect();
    let types: Vec<&str> = INVITE_STATE_TYPES.to_vec();
    grouped(client.query(&client.prepare_cached(&sql).await?, &[&rooms, &ats, &types, &user]).await?)
}

/// The joined members of these rooms.
pub async fn joined_members(client: &Client, rooms: &[&str]) -> Result<Vec<String>> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = client.prepare_cached(JOINED_MEMBERS).await?;
    Ok(client.query(&stmt, &[&rooms]).await?.iter().map(|r| r.get(0)).collect())
}

/// Joined and invited member counts per room.
pub async fn member_counts(client: &Client, rooms: &[&str]) -> Result<HashMap<String, (u64, u64)>> {
    let stmt = client.prepare_cached(MEMBER_COUNTS).await?;
    let mut out: HashMap<String, (u64, u64)> = HashMap::new();
    for row in client.query(&stmt, &[&rooms]).await? {
        let entry = out.entry(row.get(0)).or_default();
        let n = row.get::<_, i64>(2) as u64;
        match row.get::<_, &str>(1) {
            "join" => entry.0 = n,
            _ => entry.1 = n,
        }
    }
    Ok(out)
}

/// Up to five other members per room, for clients to name unnamed rooms: the first joined or
/// invited ones in the order they got there, or, when nobody else is, the first who left or
/// were banned (the spec's rule). `None` for a room with a name or canonical alias (spec:
/// `m.heroes` is required only without them, and Synapse leaves it out then).
pub async fn heroes(client: &Client, rooms: &[&str], user: &str) -> Result<HashMap<String, Option<Vec<String>>>> {
    Ok(hero_candidates(client, rooms).await?.into_iter().map(|(room, c)| (room, c.heroes(user))).collect())
}

/// Per room, the members its heroes are chosen from, for any syncing user.
pub async fn hero_candidates(client: &Client, rooms: &[&str]) -> Result<HashMap<String, HeroCandidates>> {
    let stmt = client.prepare_cached(HERO_CANDIDATES).await?;
    Ok(client
        .query(&stmt, &[&rooms])
        .await?
        .iter()
        .map(|row| (row.get(0), HeroCandidates { named: row.get(1), present: row.get(2), gone: row.get(3) }))
        .collect())
}

/// A room's name status and the earliest present and departed members, in the order they
/// got there.
#[derive(Debug, Clone, Default)]
pub struct HeroCandidates {
    pub named: bool,
    pub present: Vec<String>,
    pub gone: Vec<String>,
}

impl HeroCandidates {
    /// The heroes `user` is shown (see [`heroes`]).
    pub fn heroes(&self, user: &str) -> Option<Vec<String>> {
        if self.named {
            return None;
        }
        let pick = |list: &[String]| -> Vec<String> { list.iter().filter(|u| *u != user).take(5).cloned().collect() };
        let present = pick(&self.present);
        Some(if present.is_empty() { pick(&self.gone) } else { present })
    }
}

/// The stored PDUs of these events (for `event_format: federation`), each with its
/// `event_id` (not part of a PDU since room version 3, but clients asking for this format
/// expect it, as Synapse serves it).
pub async fn pdus(client: &Client, event_ids: &[&str]) -> Result<HashMap<String, String>> {
    if event_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client.query("SELECT event_id, pdu FROM events WHERE event_id = ANY($1)", &[&event_ids]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (id, pdu): (String, String) = (r.get(0), r.get(1));
            let pdu = match serde_json::from_str::<serde_json::Value>(&pdu) {
                Ok(serde_json::Value::Object(mut map)) => {
                    map.insert("event_id".into(), serde_json::Value::String(id.clone()));
                    serde_json::Value::Object(map).to_string()
                }
                _ => pdu,
            };
            (id, pdu)
        })
        .collect())
}

/// Rows of events, by room, in their order.
pub(crate) fn grouped(rows: Vec<tokio_postgres::Row>) -> Result<HashMap<String, Vec<EventRow>>> {
    let mut out: HashMap<String, Vec<EventRow>> = HashMap::new();
    for row in rows {
        let ev = EventRow::from_row(&row);
        out.entry(ev.room_id.clone()).or_default().push(ev);
    }
    Ok(out)
}

/// Member events as of just before `before`, per room, for the given members.
pub async fn members_before(
    client: &deadpool_postgres::Client,
    wanted: &[(String, String, i64)],
) -> Result<Vec<EventRow>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT m.* FROM unnest($1::text[], $2::text[], $3::bigint[]) AS w(rid, member, before) \
         CROSS JOIN LATERAL (SELECT {COLUMNS} FROM events WHERE room_id = w.rid AND type = 'm.room.member' \
         AND state_key = w.member AND pos < w.before ORDER BY pos DESC LIMIT 1) m"
    );
    let rooms: Vec<&str> = wanted.iter().map(|w| w.0.as_str()).collect();
    let members: Vec<&str> = wanted.iter().map(|w| w.1.as_str()).collect();
    let befores: Vec<i64> = wanted.iter().map(|w| w.2).collect();
    let rows = client.query(&client.prepare_cached(&sql).await?, &[&rooms, &members, &befores]).await?;
    Ok(rows.iter().map(EventRow::from_row).collect())
}
