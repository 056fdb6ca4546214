//! Ephemeral data and to-device messages for the appservices that ask for them (MSC2409's
//! `receive_ephemeral`, MSC4203's to-device): the receipts, typing and presence that changed
//! in its rooms or of its users, and the to-device messages sent to its users' devices, since
//! its stored positions in those streams. The sync service writes them all to PostgreSQL
//! (`receipts`, `typing`, `presence`, `to_device_messages`, each stream's mark in
//! `sync_streams`), so the sender reads them there as it reads events.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use trellis_core::{Result, appservice::Appservice, time::now_ms};

use crate::interest::{self, RoomFacts};

/// Most rows read per stream in one step (the rest waits for the next step).
const LIMIT: i64 = 2_000;

const INIT: &str = "UPDATE appservice_positions SET \
     receipts_pos = COALESCE(receipts_pos, (SELECT pos FROM sync_streams WHERE stream = 'receipts')), \
     typing_pos = COALESCE(typing_pos, (SELECT pos FROM sync_streams WHERE stream = 'typing')), \
     presence_pos = COALESCE(presence_pos, (SELECT pos FROM sync_streams WHERE stream = 'presence')), \
     to_device_pos = COALESCE(to_device_pos, (SELECT pos FROM sync_streams WHERE stream = 'to_device')) \
     WHERE appservice_id = $1";
const POSITIONS: &str =
    "SELECT receipts_pos, typing_pos, presence_pos, to_device_pos FROM appservice_positions WHERE appservice_id = $1";
const HEADS: &str = "SELECT \
     (SELECT pos FROM sync_streams WHERE stream = 'receipts'), \
     (SELECT pos FROM sync_streams WHERE stream = 'typing'), \
     (SELECT pos FROM sync_streams WHERE stream = 'presence'), \
     (SELECT pos FROM sync_streams WHERE stream = 'to_device')";

const RECEIPTS: &str = "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts, pos FROM receipts \
     WHERE pos > $1 AND pos <= $2 AND receipt_type <> 'm.read.private' ORDER BY pos LIMIT $3";
const TYPING_ROOMS: &str = "SELECT room_id FROM typing_changes WHERE pos > $1 AND pos <= $2";
const TYPERS: &str = "SELECT user_id FROM typing WHERE room_id = $1 AND expires_ts > $2 ORDER BY user_id";
const PRESENCE: &str = "SELECT user_id, state, status_msg, last_active_ts, currently_active, pos FROM presence \
     WHERE pos > $1 AND pos <= $2 ORDER BY pos LIMIT $3";
const SHARED: &str = "SELECT DISTINCT theirs.user_id FROM memberships mine \
     JOIN memberships theirs ON theirs.room_id = mine.room_id AND theirs.membership = 'join' \
     WHERE mine.user_id = $1 AND mine.membership = 'join'";
const TO_DEVICE: &str = "SELECT user_id, device_id, sender, event_type, content, pos FROM to_device_messages \
     WHERE pos > $1 AND pos <= $2 ORDER BY pos, user_id, device_id LIMIT $3";

/// Positions in the receipts, typing, presence and to-device streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Positions {
    pub receipts: i64,
    pub typing: i64,
    pub presence: i64,
    pub to_device: i64,
}

/// What one step found: the data to send and how far it reaches.
pub(crate) struct Found {
    pub ephemeral: Vec<Value>,
    pub to_device: Vec<Value>,
    /// The positions once these are delivered.
    pub next: Positions,
    /// A stream had more than one step reads.
    pub more: bool,
}

/// The stored positions (set to the streams' heads the first time) and the data after them.
pub(crate) async fn gather(
    client: &deadpool_postgres::Client,
    appservice: &Appservice,
    facts: &mut RoomFacts,
    server_name: &str,
) -> Result<(Positions, Found)> {
    let id = appservice.id();
    client.execute(&client.prepare_cached(INIT).await?, &[&id]).await?;
    let row = client.query_one(&client.prepare_cached(POSITIONS).await?, &[&id]).await?;
    let at = Positions { receipts: row.get(0), typing: row.get(1), presence: row.get(2), to_device: row.get(3) };
    let row = client.query_one(&client.prepare_cached(HEADS).await?, &[]).await?;
    let head = Positions { receipts: row.get(0), typing: row.get(1), presence: row.get(2), to_device: row.get(3) };
    let mut found = Found { ephemeral: Vec::new(), to_device: Vec::new(), next: at, more: false };
    if appservice.ephemeral {
        receipts(client, appservice, facts, server_name, (at.receipts, head.receipts), &mut found).await?;
        typing(client, appservice, facts, server_name, (at.typing, head.typing), &mut found).await?;
        presence(client, appservice, (at.presence, head.presence), &mut found).await?;
    }
    if appservice.to_device {
        to_device(client, appservice, (at.to_device, head.to_device), &mut found).await?;
    }
    Ok((at, found))
}

/// How far a read of `rows` positions (ordered, at most [`LIMIT`]) in `(from, head]` reaches,
/// and how many of the rows to keep: when the limit cut the read, the rows of the last
/// position read may be incomplete, so they wait for the next step (unless they are all).
fn reach(positions: &[i64], head: i64, found: &mut Found) -> (i64, usize) {
    if (positions.len() as i64) < LIMIT {
        return (head, positions.len());
    }
    found.more = true;
    let last = positions[positions.len() - 1];
    let keep = positions.iter().take_while(|p| **p < last).count();
    match keep {
        0 => (last, positions.len()),
        n => (positions[n - 1], n),
    }
}

/// The rows `sql` reads in `(from, head]` (its parameters: from, head, limit; the stream
/// position its last column), cut as [`reach`] says, and the position they reach; `None`
/// when the stream has not moved.
async fn window(
    client: &deadpool_postgres::Client,
    sql: &str,
    (from, head): (i64, i64),
    found: &mut Found,
) -> Result<Option<(Vec<tokio_postgres::Row>, i64)>> {
    if head <= from {
        return Ok(None);
    }
    let mut rows = client.query(&client.prepare_cached(sql).await?, &[&from, &head, &LIMIT]).await?;
    let positions: Vec<i64> = rows.iter().map(|r| r.get(r.len() - 1)).collect();
    let (to, keep) = reach(&positions, head, found);
    rows.truncate(keep);
    Ok(Some((rows, to)))
}

async fn receipts(
    client: &deadpool_postgres::Client,
    appservice: &Appservice,
    facts: &mut RoomFacts,
    server_name: &str,
    span: (i64, i64),
    found: &mut Found,
) -> Result<()> {
    let Some((rows, to)) = window(client, RECEIPTS, span, found).await? else { return Ok(()) };
    found.next.receipts = to;
    // room -> event -> receipt type -> user -> receipt
    let mut rooms: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for row in &rows {
        let room: String = row.get(0);
        if !interest::room_concerns(client, appservice, &room, facts, server_name).await? {
            continue;
        }
        let (user, kind, thread, event): (String, String, String, String) =
            (row.get(1), row.get(2), row.get(3), row.get(4));
        let mut receipt = json!({"ts": row.get::<_, i64>(5)});
        if !thread.is_empty() {
            receipt["thread_id"] = json!(thread);
        }
        let content = rooms.entry(room).or_default();
        let by_type = content.entry(event).or_insert_with(|| json!({}));
        by_type[kind.as_str()][user.as_str()] = receipt;
    }
    for (room, content) in rooms {
        found.ephemeral.push(json!({"type": "m.receipt", "room_id": room, "content": content}));
    }
    Ok(())
}

async fn typing(
    client: &deadpool_postgres::Client,
    appservice: &Appservice,
    facts: &mut RoomFacts,
    server_name: &str,
    (from, head): (i64, i64),
    found: &mut Found,
) -> Result<()> {
    if head <= from {
        return Ok(());
    }
    found.next.typing = head;
    let rooms = client.query(&client.prepare_cached(TYPING_ROOMS).await?, &[&from, &head]).await?;
    let now = now_ms();
    for row in &rooms {
        let room: String = row.get(0);
        if !interest::room_concerns(client, appservice, &room, facts, server_name).await? {
            continue;
        }
        let typers = client.query(&client.prepare_cached(TYPERS).await?, &[&room, &now]).await?;
        let user_ids: Vec<String> = typers.iter().map(|r| r.get(0)).collect();
        found.ephemeral.push(json!({"type": "m.typing", "room_id": room, "content": {"user_ids": user_ids}}));
    }
    Ok(())
}

/// Presence of the appservice's users and of the users who share a room with one of them.
async fn presence(
    client: &deadpool_postgres::Client,
    appservice: &Appservice,
    span: (i64, i64),
    found: &mut Found,
) -> Result<()> {
    let Some((rows, to)) = window(client, PRESENCE, span, found).await? else { return Ok(()) };
    found.next.presence = to;
    let now = now_ms();
    for row in &rows {
        let user: String = row.get(0);
        let concerns = appservice.is_interested_in_user(&user) || {
            let shared = client.query(&client.prepare_cached(SHARED).await?, &[&user]).await?;
            shared.iter().any(|r| appservice.is_interested_in_user(r.get::<_, &str>(0)))
        };
        if !concerns {
            continue;
        }
        let mut content = json!({
            "presence": row.get::<_, String>(1),
            "last_active_ago": (now - row.get::<_, i64>(3)).max(0),
            "currently_active": row.get::<_, bool>(4),
        });
        if let Some(status) = row.get::<_, Option<String>>(2) {
            content["status_msg"] = json!(status);
        }
        found.ephemeral.push(json!({"type": "m.presence", "sender": user, "content": content}));
    }
    Ok(())
}

/// To-device messages sent to devices of the appservice's users, with their recipient
/// (`to_user_id`, `to_device_id`) as MSC4203 has them.
async fn to_device(
    client: &deadpool_postgres::Client,
    appservice: &Appservice,
    span: (i64, i64),
    found: &mut Found,
) -> Result<()> {
    let Some((rows, to)) = window(client, TO_DEVICE, span, found).await? else { return Ok(()) };
    found.next.to_device = to;
    for row in &rows {
        let user: String = row.get(0);
        if !appservice.is_interested_in_user(&user) {
            continue;
        }
        let content: Value = serde_json::from_str(row.get::<_, &str>(4)).unwrap_or_else(|_| json!({}));
        found.to_device.push(json!({
            "type": row.get::<_, String>(3),
            "sender": row.get::<_, String>(2),
            "to_user_id": user,
            "to_device_id": row.get::<_, String>(1),
            "content": content,
        }));
    }
    Ok(())
}
