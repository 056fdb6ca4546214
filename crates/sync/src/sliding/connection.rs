//! A sliding sync connection's memory of what it sent: per room, whether the client holds it
//! live (everything up to the position's stream token) or up to an older events position, and
//! the `required_state` and `timeline_limit` it was last sent with; per list, the count last
//! sent. Stored in PostgreSQL (V31) so any worker continues any connection and a restarted
//! worker loses nothing, and kept in memory for the worker's next request of the connection.
//!
//! The client's `pos` is `<position>/<stream token>`: the position names the stored state, and
//! only changes when that state does, so a response that only carries new events writes
//! nothing.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use trellis_core::{Error, ErrorCode, Result, StreamToken, time::now_ms};

use super::request::RoomConfig;
use crate::queries::Client;

/// A connection unused for this long is forgotten (its `pos` answers `M_UNKNOWN_POS`).
pub(crate) const EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

const FIND: &str = "SELECT c.id, p.lists FROM sliding_connections c JOIN sliding_positions p ON p.connection_id = c.id \
     WHERE c.user_id = $1 AND c.device_id = $2 AND c.conn_id = $3 AND p.pos = $4 AND c.last_used_ts > $5";
const ROOMS: &str = "SELECT DISTINCT ON (room_id) room_id, state FROM sliding_rooms \
     WHERE connection_id = $1 AND pos <= $2 ORDER BY room_id, pos DESC";
const DROP: &str = "DELETE FROM sliding_connections WHERE user_id = $1 AND device_id = $2 AND conn_id = $3";
const CREATE: &str = "INSERT INTO sliding_connections (user_id, device_id, conn_id, created_ts, last_used_ts) \
     VALUES ($1, $2, $3, $4, $4) RETURNING id";
const LOCK: &str = "SELECT id FROM sliding_connections WHERE id = $1 FOR UPDATE";
/// A position made from the same one since this request began.
const SUPERSEDED: &str =
    "SELECT 1 FROM sliding_positions WHERE connection_id = $1 AND pos > $2 AND created_ts >= $3 LIMIT 1";
const TOUCH: &str = "UPDATE sliding_connections SET last_used_ts = $2 WHERE id = $1";
/// Answers the client never received, and positions it has moved past.
const FORGET_POSITIONS: &str = "DELETE FROM sliding_positions WHERE connection_id = $1 AND pos <> $2";
const FORGET_ROOMS: &str = "DELETE FROM sliding_rooms WHERE connection_id = $1 AND pos > $2";
/// Room rows superseded by a later row at or below the position in use.
const COMPACT: &str = "DELETE FROM sliding_rooms r WHERE connection_id = $1 AND pos < $2 AND EXISTS \
     (SELECT 1 FROM sliding_rooms n WHERE n.connection_id = r.connection_id AND n.room_id = r.room_id \
      AND n.pos > r.pos AND n.pos <= $2)";
const NEW_POSITION: &str =
    "INSERT INTO sliding_positions (connection_id, lists, created_ts) VALUES ($1, $2, $3) RETURNING pos";
const ROOMS_SENT: &str = "INSERT INTO sliding_rooms (connection_id, room_id, pos, state) \
     SELECT $1, r.room_id, $2, r.state FROM unnest($3::text[], $4::text[]) AS r(room_id, state)";
/// How often a connection answered without changes is marked used.
const TOUCH_EVERY: Duration = Duration::from_secs(3600);
const EXPIRE: &str = "DELETE FROM sliding_connections WHERE last_used_ts <= $1";

/// What the client holds of one room.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RoomSent {
    /// `None`: live, the client has the room up to the connection's token. `Some(p)`: it has
    /// the room up to events position `p` only (the room changed while out of its windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<i64>,
    pub config: RoomConfig,
}

/// A connection's state at one position.
#[derive(Clone, Debug, Default)]
pub(crate) struct State {
    /// The connection's row; 0 before it is stored.
    pub id: i64,
    pub pos: i64,
    pub rooms: HashMap<String, RoomSent>,
    pub lists: BTreeMap<String, u64>,
    /// When the connection was last marked used in PostgreSQL (ms).
    pub touched: i64,
}

/// A parsed `pos`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pos {
    pub position: i64,
    pub token: StreamToken,
}

pub(crate) fn unknown_pos() -> Error {
    Error::new(ErrorCode::UnknownPos, "Unknown position; start a new connection")
}

impl Pos {
    pub(crate) fn parse(s: &str) -> Result<Pos> {
        let (position, token) = s.split_once('/').ok_or_else(unknown_pos)?;
        let position = position.parse::<i64>().map_err(|_| unknown_pos())?;
        let token = token.parse::<StreamToken>().map_err(|_| unknown_pos())?;
        Ok(Pos { position, token })
    }

    pub(crate) fn render(position: i64, token: StreamToken) -> String {
        format!("{position}/{token}")
    }
}

/// The key of a connection in the worker's memory.
pub(crate) type Key = crate::poll::caches::Key<3>;

/// States last written or read by this worker, by connection.
pub(crate) struct Memory {
    states: moka::sync::Cache<Key, Arc<State>>,
}

impl Memory {
    pub(crate) fn new() -> Memory {
        Memory {
            states: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(30 * 60))
                .build(),
        }
    }

    fn get(&self, key: &Key, position: i64) -> Option<Arc<State>> {
        self.states.get(key).filter(|s| s.pos == position)
    }

    pub(crate) fn put(&self, key: Key, state: Arc<State>) {
        self.states.insert(key, state);
    }
}

/// The connection's state at `pos`: from memory when this worker holds exactly that position,
/// else from PostgreSQL; `M_UNKNOWN_POS` if the position is not (or no longer) the user's.
pub(crate) async fn load(client: &Client, memory: &Memory, key: &Key, pos: &Pos) -> Result<Arc<State>> {
    if let Some(state) = memory.get(key, pos.position) {
        return Ok(state);
    }
    let [user, device, conn] = [key_part(key, 0), key_part(key, 1), key_part(key, 2)];
    let oldest = now_ms() - EXPIRY.as_millis() as i64;
    let stmt = client.prepare_cached(FIND).await?;
    let row = client.query_opt(&stmt, &[&user, &device, &conn, &pos.position, &oldest]).await?;
    let row = row.ok_or_else(unknown_pos)?;
    let id: i64 = row.get(0);
    let lists = serde_json::from_str(row.get::<_, &str>(1)).unwrap_or_default();
    let stmt = client.prepare_cached(ROOMS).await?;
    let mut rooms = HashMap::new();
    for row in client.query(&stmt, &[&id, &pos.position]).await? {
        if let Ok(sent) = serde_json::from_str::<RoomSent>(row.get(1)) {
            rooms.insert(row.get::<_, String>(0), sent);
        }
    }
    let state = Arc::new(State { id, pos: pos.position, rooms, lists, touched: 0 });
    memory.put(key.clone(), state.clone());
    Ok(state)
}

fn key_part(key: &Key, i: usize) -> &str {
    crate::poll::caches::Parts::part(key, i)
}

/// Stores `next`, the connection's state after a response to a request at `previous` (`None`
/// for a new connection, which replaces any of the same `conn_id`); `changed` lists the rooms
/// whose entries differ; the request began at `started_ms`. Returns the new state with its
/// position.
pub(crate) async fn store(
    client: &mut Client,
    key: &Key,
    previous: Option<&State>,
    mut next: State,
    changed: &[String],
    started_ms: i64,
) -> Result<State> {
    let tx = client.transaction().await?;
    let now = now_ms();
    let id = match previous {
        Some(prev) => {
            // Two requests of one connection at once (a client retrying before the first is
            // cancelled) store one after the other: the later one's deletions then cover the
            // earlier one's rows.
            if tx.query_opt(LOCK, &[&prev.id]).await?.is_none() {
                return Err(unknown_pos());
            }
            // A request the client gave up on (it sent the same `pos` again, and that one was
            // answered first) must not undo the answer the client holds.
            if tx.query_opt(SUPERSEDED, &[&prev.id, &prev.pos, &started_ms]).await?.is_some() {
                return Err(Error::new(ErrorCode::UnknownPos, "A later request of this connection was answered"));
            }
            tx.execute(FORGET_POSITIONS, &[&prev.id, &prev.pos]).await?;
            tx.execute(FORGET_ROOMS, &[&prev.id, &prev.pos]).await?;
            tx.execute(COMPACT, &[&prev.id, &prev.pos]).await?;
            tx.execute(TOUCH, &[&prev.id, &now]).await?;
            prev.id
        }
        None => {
            let [user, device, conn] = [key_part(key, 0), key_part(key, 1), key_part(key, 2)];
            tx.execute(DROP, &[&user, &device, &conn]).await?;
            tx.query_one(CREATE, &[&user, &device, &conn, &now]).await?.get(0)
        }
    };
    let lists = serde_json::to_string(&next.lists)?;
    let pos: i64 = tx.query_one(NEW_POSITION, &[&id, &lists, &now]).await?.get(0);
    // Every changed room in one statement (a new connection's first answer may hold hundreds).
    let (mut rooms, mut states) = (Vec::new(), Vec::new());
    for room in changed {
        if let Some(sent) = next.rooms.get(room) {
            rooms.push(room.as_str());
            states.push(serde_json::to_string(sent)?);
        }
    }
    if !rooms.is_empty() {
        tx.execute(ROOMS_SENT, &[&id, &pos, &rooms, &states]).await?;
    }
    tx.commit().await?;
    next.id = id;
    next.pos = pos;
    next.touched = now;
    Ok(next)
}

/// A connection whose answers change nothing it stores is still in use: it is marked so at
/// most once an hour, so it does not expire while a client keeps it busy.
pub(crate) async fn keep_alive(client: &Client, memory: &Memory, key: &Key, state: &State) -> Result<()> {
    let now = now_ms();
    if now - state.touched < TOUCH_EVERY.as_millis() as i64 {
        return Ok(());
    }
    client.execute(TOUCH, &[&state.id, &now]).await?;
    memory.put(key.clone(), Arc::new(State { touched: now, ..state.clone() }));
    Ok(())
}

/// [`keep_alive`] for an answer that read nothing: a database connection is taken only when
/// the mark is due.
pub(crate) async fn keep_alive_in(
    pool: &trellis_storage::Pool,
    memory: &Memory,
    key: &Key,
    state: &State,
) -> Result<()> {
    if now_ms() - state.touched < TOUCH_EVERY.as_millis() as i64 {
        return Ok(());
    }
    keep_alive(&pool.get().await?, memory, key, state).await
}

/// Forgets connections unused for [`EXPIRY`]; returns how many.
pub(crate) async fn expire(client: &Client) -> Result<u64> {
    let oldest = now_ms() - EXPIRY.as_millis() as i64;
    Ok(client.execute(EXPIRE, &[&oldest]).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_garbage_is_unknown() {
        let token: StreamToken = "s12_3_4".parse().unwrap_or_else(|_| StreamToken::new(12));
        let s = Pos::render(7, token);
        let pos = Pos::parse(&s).unwrap();
        assert_eq!((pos.position, pos.token.to_string()), (7, token.to_string()));
        for bad in ["", "7", "x/s1", "7/zz", "/s1"] {
            let e = Pos::parse(bad).unwrap_err();
            assert_eq!(e.matrix().map(|m| m.code), Some(ErrorCode::UnknownPos), "{bad}");
        }
    }
}
