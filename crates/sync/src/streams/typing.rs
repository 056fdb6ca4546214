//! Typing notifications: who is typing in which room, until when. Every change (start, stop,
//! timeout) takes a position in the typing stream; `/sync` sends the room's current typers as
//! one `m.typing` event whenever that position moved.

use std::{collections::HashMap, time::Duration};

use serde_json::json;
use trellis_bus::Channel;
use trellis_core::{Result, Stream, time::now_ms};
use trellis_proto::sync::{Ack, SetTypingRequest};

use crate::{SyncWorker, access, streams::next_position};

/// Longest a typing notification lasts without being renewed (Synapse caps it too).
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

const UPSERT: &str = "INSERT INTO typing (room_id, user_id, expires_ts) VALUES ($1, $2, $3) \
     ON CONFLICT (room_id, user_id) DO UPDATE SET expires_ts = EXCLUDED.expires_ts \
     RETURNING (xmax = 0) AS inserted";
const DELETE: &str = "DELETE FROM typing WHERE room_id = $1 AND user_id = $2";
const EXPIRE: &str = "DELETE FROM typing WHERE expires_ts <= $1 RETURNING room_id";
const MARK: &str = "INSERT INTO typing_changes (room_id, pos) VALUES ($1, $2) \
     ON CONFLICT (room_id) DO UPDATE SET pos = EXCLUDED.pos";
const CHANGED: &str = "SELECT room_id FROM typing_changes WHERE room_id = ANY($1) AND pos > $2 AND pos <= $3";
const TYPERS: &str =
    "SELECT room_id, user_id FROM typing WHERE room_id = ANY($1) AND expires_ts > $2 ORDER BY room_id, user_id";

impl SyncWorker {
    pub(crate) async fn set_typing(&self, req: SetTypingRequest) -> Result<Ack> {
        access::own(&req.requester, &req.user_id)?;
        access::room_id(&req.room_id)?;
        let mut client = self.pool.get().await?;
        access::joined(&client, &req.user_id, &req.room_id).await?;
        let tx = client.transaction().await?;
        let changed = if req.typing {
            let timeout = Duration::from_millis(req.timeout_ms).min(MAX_TIMEOUT);
            let expires = now_ms() + timeout.as_millis() as i64;
            // Renewing a running notification changes nothing a client can see.
            tx.query_one(UPSERT, &[&req.room_id, &req.user_id, &expires]).await?.get::<_, bool>(0)
        } else {
            tx.execute(DELETE, &[&req.room_id, &req.user_id]).await? > 0
        };
        if !changed {
            return Ok(Ack {});
        }
        let pos = next_position(&tx, Stream::Typing).await?;
        tx.execute(MARK, &[&req.room_id, &pos]).await?;
        tx.commit().await?;
        self.announce(&[Channel::Room(req.room_id)], Stream::Typing, pos).await;
        Ok(Ack {})
    }

    /// Ends expired notifications; returns how many rooms changed. Every worker runs this:
    /// the `DELETE ... RETURNING` hands each expired row to exactly one of them.
    pub(crate) async fn expire_typing(&self) -> Result<usize> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut rooms: Vec<String> = tx.query(EXPIRE, &[&now_ms()]).await?.iter().map(|r| r.get(0)).collect();
        rooms.sort();
        rooms.dedup();
        if rooms.is_empty() {
            return Ok(0);
        }
        let pos = next_position(&tx, Stream::Typing).await?;
        for room in &rooms {
            tx.execute(MARK, &[room, &pos]).await?;
        }
        tx.commit().await?;
        let channels: Vec<Channel> = rooms.iter().cloned().map(Channel::Room).collect();
        self.announce(&channels, Stream::Typing, pos).await;
        Ok(rooms.len())
    }

    /// `m.typing` events for the rooms whose typers changed in `(since, upto]` (all rooms
    /// with typers when `since` is `None`).
    pub(crate) async fn typing_events(
        &self,
        client: &deadpool_postgres::Client,
        rooms: &[String],
        since: Option<i64>,
        upto: i64,
    ) -> Result<HashMap<String, serde_json::Value>> {
        if rooms.is_empty() {
            return Ok(HashMap::new());
        }
        let changed: Vec<String> = match since {
            Some(since) => client.query(CHANGED, &[&rooms, &since, &upto]).await?.iter().map(|r| r.get(0)).collect(),
            None => rooms.to_vec(),
        };
        if changed.is_empty() {
            return Ok(HashMap::new());
        }
        let mut typers: HashMap<String, Vec<String>> = changed.iter().map(|r| (r.clone(), Vec::new())).collect();
        for row in client.query(TYPERS, &[&changed, &now_ms()]).await? {
            typers.entry(row.get(0)).or_default().push(row.get(1));
        }
        Ok(typers
            .into_iter()
            // An initial sync only mentions rooms where someone is typing.
            .filter(|(_, users)| since.is_some() || !users.is_empty())
            .map(|(room, users)| (room, typing_event(&users)))
            .collect())
    }
}

/// The `m.typing` event of a room whose typers are `users`.
pub(crate) fn typing_event(users: &[String]) -> serde_json::Value {
    json!({ "type": "m.typing", "content": { "user_ids": users } })
}
