//! The SQL of a sliding sync request, each query batched over all the rooms it concerns:
//! the user's memberships with who set them, the facts lists filter and sort on (recency,
//! encryption, room type, direct chats), current state (all of it or what changed since a
//! position) and which rooms outside the windows saw events.

use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use tokio_postgres::types::ToSql;
use trellis_core::Result;
use trellis_storage::events::{BUMP_TYPES, COLUMNS, EventRow};

use crate::{
    poll::caches::Bounded,
    queries::{Client, grouped},
};

/// A membership of the user, with the sender of its event (a leave sent by someone else is a
/// kick, which keeps the room in the lists).
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub room_id: String,
    pub membership: String,
    pub pos: i64,
    pub sender: String,
    /// An invite marked `is_direct`: a DM for the invitee before any `m.direct` names it.
    pub direct_invite: bool,
}

/// The sender of a leave (a kick when it is not the user) and the `is_direct` of an invite
/// are read from the membership event; a join, most of a user's rooms, reads no event.
const MEMBERSHIPS: &str = "SELECT m.room_id, m.membership, m.pos, \
       CASE WHEN m.membership = 'leave' \
         THEN coalesce((SELECT e.sender FROM events e WHERE e.event_id = m.event_id), m.user_id) \
         ELSE m.user_id END, \
       CASE WHEN m.membership = 'invite' \
         THEN coalesce((SELECT trellis_jsonb(e.content)->'is_direct' = 'true'::jsonb FROM events e \
           WHERE e.event_id = m.event_id), false) \
         ELSE false END \
     FROM memberships m WHERE m.user_id = $1 AND NOT m.forgotten";

/// The latest bump event of each room at or below `$2`: the room's stored one
/// (`rooms.bump_pos`), unless it came after `$2` (committed since the answer's position was
/// read), then read from the events (the list is the index `events_room_bump`'s).
static BUMPS: LazyLock<String> = LazyLock::new(|| {
    let types = BUMP_TYPES.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT r.room_id, CASE WHEN r.bump_pos <= $2 THEN r.bump_pos ELSE \
           (SELECT max(pos) FROM events e WHERE e.room_id = r.room_id AND e.pos <= $2 AND e.type IN ({types})) END \
         FROM rooms r WHERE r.room_id = ANY($1)"
    )
});

/// The rooms among `$1` that are encrypted.
const ENCRYPTED: &str = "SELECT room_id FROM current_state \
     WHERE room_id = ANY($1) AND type = 'm.room.encryption' AND state_key = ''";

/// Each room's type, from its create event.
const ROOM_TYPES: &str = "SELECT c.room_id, trellis_jsonb(e.content)->>'type' FROM current_state c \
     JOIN events e ON e.event_id = c.event_id \
     WHERE c.room_id = ANY($1) AND c.type = 'm.room.create' AND c.state_key = ''";

const DIRECT: &str = "SELECT content FROM account_data WHERE user_id = $1 AND room_id = '' AND type = 'm.direct'";

/// The children of spaces: `m.space.child` state with a non-empty `via`.
const CHILDREN: &str = "SELECT c.room_id, c.state_key FROM current_state c JOIN events e ON e.event_id = c.event_id \
     WHERE c.room_id = ANY($1) AND c.type = 'm.space.child' \
     AND jsonb_typeof(trellis_jsonb(e.content)->'via') = 'array' \
     AND jsonb_array_length(trellis_jsonb(e.content)->'via') > 0";

/// Rooms among `$1` with an event in `($2, $3]`.
const ACTIVE: &str = "SELECT r.rid FROM unnest($1::text[]) AS r(rid) WHERE EXISTS \
     (SELECT 1 FROM events e WHERE e.room_id = r.rid AND e.pos > $2 AND e.pos <= $3)";

pub(crate) struct Facts {
    pub bump: Option<i64>,
    pub encrypted: bool,
    pub room_type: Option<String>,
}

pub(crate) async fn memberships(client: &Client, user: &str) -> Result<Vec<Member>> {
    let stmt = client.prepare_cached(MEMBERSHIPS).await?;
    Ok(client
        .query(&stmt, &[&user])
        .await?
        .iter()
        .map(|r| Member {
            room_id: r.get(0),
            membership: r.get(1),
            pos: r.get(2),
            sender: r.get(3),
            direct_invite: r.get(4),
        })
        .collect())
}

/// Which facts the lists filter on: a request whose lists filter on neither reads neither.
#[derive(Clone, Copy, Default)]
pub(crate) struct Needs {
    pub encrypted: bool,
    pub room_type: bool,
}

/// The facts of `rooms` the lists need, bump stamps always. Room types come from the
/// worker's cache where it has them (a create event never changes).
pub(crate) async fn facts(
    client: &Client,
    rooms: &[&str],
    upto: i64,
    needs: Needs,
    room_types: &Bounded<String, Option<String>>,
) -> Result<HashMap<String, Facts>> {
    if rooms.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = client.prepare_cached(&BUMPS).await?;
    let mut out: HashMap<String, Facts> = client
        .query(&stmt, &[&rooms, &upto])
        .await?
        .iter()
        .map(|r| (r.get(0), Facts { bump: r.get(1), encrypted: false, room_type: None }))
        .collect();
    if needs.encrypted {
        let stmt = client.prepare_cached(ENCRYPTED).await?;
        for row in client.query(&stmt, &[&rooms]).await? {
            if let Some(f) = out.get_mut(row.get::<_, &str>(0)) {
                f.encrypted = true;
            }
        }
    }
    if needs.room_type {
        let mut missing = Vec::new();
        for room in rooms {
            match room_types.get(*room) {
                Some(t) => {
                    if let Some(f) = out.get_mut(*room) {
                        f.room_type = t;
                    }
                }
                None => missing.push(*room),
            }
        }
        if !missing.is_empty() {
            let stmt = client.prepare_cached(ROOM_TYPES).await?;
            for row in client.query(&stmt, &[&missing]).await? {
                let (room, kind): (String, Option<String>) = (row.get(0), row.get(1));
                room_types.insert(room.clone(), kind.clone());
                if let Some(f) = out.get_mut(&room) {
                    f.room_type = kind;
                }
            }
        }
    }
    Ok(out)
}

/// The rooms `m.direct` names.
pub(crate) async fn direct_rooms(client: &Client, user: &str) -> Result<HashSet<String>> {
    let stmt = client.prepare_cached(DIRECT).await?;
    let Some(row) = client.query_opt(&stmt, &[&user]).await? else { return Ok(HashSet::new()) };
    let content: serde_json::Value = serde_json::from_str(row.get::<_, &str>(0)).unwrap_or_default();
    let mut out = HashSet::new();
    if let Some(users) = content.as_object() {
        for rooms in users.values().filter_map(|r| r.as_array()) {
            out.extend(rooms.iter().filter_map(|r| r.as_str()).map(str::to_owned));
        }
    }
    Ok(out)
}

/// The children of each of `spaces`.
pub(crate) async fn children(client: &Client, spaces: &[&str]) -> Result<HashMap<String, HashSet<String>>> {
    let mut out: HashMap<String, HashSet<String>> = HashMap::new();
    if spaces.is_empty() {
        return Ok(out);
    }
    let stmt = client.prepare_cached(CHILDREN).await?;
    for row in client.query(&stmt, &[&spaces]).await? {
        out.entry(row.get(0)).or_default().insert(row.get(1));
    }
    Ok(out)
}

pub(crate) async fn active(client: &Client, rooms: &[&str], after: i64, upto: i64) -> Result<HashSet<String>> {
    if rooms.is_empty() || after >= upto {
        return Ok(HashSet::new());
    }
    let stmt = client.prepare_cached(ACTIVE).await?;
    Ok(client.query(&stmt, &[&rooms, &after, &upto]).await?.iter().map(|r| r.get(0)).collect())
}

/// Which current state to read for rooms sent whole: every type, or these; every member, or
/// these.
#[derive(Default)]
pub(crate) struct Wanted {
    pub all_types: bool,
    pub types: HashSet<String>,
    pub all_members: bool,
    pub members: HashSet<String>,
}

/// Current state of `rooms` narrowed by `wanted` (the caller filters each room exactly).
pub(crate) async fn current_state(
    client: &Client,
    rooms: &[&str],
    wanted: &Wanted,
) -> Result<HashMap<String, Vec<EventRow>>> {
    if rooms.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE event_id IN (SELECT event_id FROM current_state \
         WHERE room_id = ANY($1) AND ($2 OR type = ANY($3)) \
         AND (type <> 'm.room.member' OR $4 OR state_key = ANY($5))) ORDER BY pos"
    );
    let types: Vec<&str> = wanted.types.iter().map(String::as_str).collect();
    let members: Vec<&str> = wanted.members.iter().map(String::as_str).collect();
    let args: [&(dyn ToSql + Sync); 5] = [&rooms, &wanted.all_types, &types, &wanted.all_members, &members];
    grouped(client.query(&client.prepare_cached(&sql).await?, &args).await?)
}

/// The current state entries of each room set after its position: `(room, after)` pairs.
pub(crate) async fn state_changes(client: &Client, rooms: &[(String, i64)]) -> Result<HashMap<String, Vec<EventRow>>> {
    if rooms.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE event_id IN (SELECT c.event_id FROM unnest($1::text[], $2::bigint[]) \
         AS r(rid, after) JOIN current_state c ON c.room_id = r.rid AND c.pos > r.after) ORDER BY pos"
    );
    let ids: Vec<&str> = rooms.iter().map(|r| r.0.as_str()).collect();
    let afters: Vec<i64> = rooms.iter().map(|r| r.1).collect();
    grouped(client.query(&client.prepare_cached(&sql).await?, &[&ids, &afters]).await?)
}
