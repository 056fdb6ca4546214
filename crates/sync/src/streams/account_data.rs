//! Account data, global and per room, room tags (`m.tag`) included: stored by the sync
//! service, delivered by `/sync`, announced on the owner's user channel.

use std::collections::HashMap;

use serde_json::{Value, json};
use trellis_bus::Channel;
use trellis_core::{Error, Result, Stream};
use trellis_proto::sync::{AccountDataResponse, Ack, GetAccountDataRequest, SetAccountDataRequest, UpdateTagRequest};

use crate::{SyncWorker, access, streams::next_position};

const GET: &str = "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3";
const UPSERT: &str = "INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = EXCLUDED.content, pos = EXCLUDED.pos";
const LOCK_TAGS: &str =
    "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = 'm.tag' FOR UPDATE";
const CHANGED: &str =
    "SELECT room_id, type, content FROM account_data WHERE user_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos";
const OF_ROOMS: &str = "SELECT room_id, type, content FROM account_data \
     WHERE user_id = $1 AND room_id = ANY($2) AND pos <= $3 ORDER BY pos";

/// Longest account data type, in bytes.
const MAX_TYPE_BYTES: usize = 255;

impl SyncWorker {
    pub(crate) async fn get_account_data(&self, req: GetAccountDataRequest) -> Result<AccountDataResponse> {
        access::own(&req.requester, &req.user_id)?;
        if !req.room_id.is_empty() {
            access::room_id(&req.room_id)?;
        }
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(GET).await?;
        let row = client.query_opt(&stmt, &[&req.user_id, &req.room_id, &req.data_type]).await?;
        let content_json = row.ok_or_else(|| Error::not_found("Account data not found"))?.get(0);
        Ok(AccountDataResponse { content_json })
    }

    pub(crate) async fn set_account_data(&self, req: SetAccountDataRequest) -> Result<Ack> {
        // Through the account data API the read marker is refused: it has its own endpoint
        // with its own checks.
        if req.data_type == "m.fully_read" {
            return Err(Error::bad_json("Cannot set m.fully_read through this API; use /read_markers"));
        }
        if req.data_type == crate::push::rules::PUSH_RULES {
            return Err(Error::bad_json("Cannot set m.push_rules through this API; use /pushrules"));
        }
        self.write_account_data(req).await
    }

    pub(crate) async fn write_account_data(&self, req: SetAccountDataRequest) -> Result<Ack> {
        access::own(&req.requester, &req.user_id)?;
        if !req.room_id.is_empty() {
            access::room_id(&req.room_id)?;
        }
        if req.data_type.is_empty() || req.data_type.len() > MAX_TYPE_BYTES {
            return Err(Error::invalid_param("type must be 1 to 255 bytes"));
        }
        match serde_json::from_str::<Value>(&req.content_json) {
            Ok(Value::Object(_)) => {}
            Ok(_) => return Err(Error::bad_json("account data must be a JSON object")),
            Err(_) => return Err(Error::new(trellis_core::ErrorCode::NotJson, "Content not JSON.")),
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let pos = next_position(&tx, Stream::AccountData).await?;
        tx.execute(UPSERT, &[&req.user_id, &req.room_id, &req.data_type, &req.content_json, &pos]).await?;
        tx.commit().await?;
        self.announce(&[Channel::User(req.user_id)], Stream::AccountData, pos).await;
        Ok(Ack {})
    }

    /// Adds or removes one tag in the room's `m.tag` account data, atomically.
    pub(crate) async fn update_tag(&self, req: UpdateTagRequest) -> Result<Ack> {
        access::own(&req.requester, &req.user_id)?;
        access::room_id(&req.room_id)?;
        if req.tag.is_empty() || req.tag.len() > MAX_TYPE_BYTES {
            return Err(Error::invalid_param("tag must be 1 to 255 bytes"));
        }
        let tag_content = match req.content_json.as_deref() {
            None => None,
            Some(c) => match serde_json::from_str::<Value>(c) {
                Ok(v @ Value::Object(_)) => Some(v),
                _ => return Err(Error::bad_json("tag content must be a JSON object")),
            },
        };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The stream row lock taken first serialises concurrent tag edits of any user.
        let pos = next_position(&tx, Stream::AccountData).await?;
        let mut tags: Value = match tx.query_opt(LOCK_TAGS, &[&req.user_id, &req.room_id]).await? {
            Some(row) => serde_json::from_str(row.get::<_, &str>(0)).unwrap_or_else(|_| json!({ "tags": {} })),
            None => json!({ "tags": {} }),
        };
        if !tags["tags"].is_object() {
            tags["tags"] = json!({});
        }
        let map = tags["tags"].as_object_mut().expect("checked");
        match tag_content {
            Some(c) => {
                map.insert(req.tag.clone(), c);
            }
            None => {
                map.remove(&req.tag);
            }
        }
        tx.execute(UPSERT, &[&req.user_id, &req.room_id, &"m.tag", &tags.to_string(), &pos]).await?;
        tx.commit().await?;
        self.announce(&[Channel::User(req.user_id)], Stream::AccountData, pos).await;
        Ok(Ack {})
    }

    /// Account data written in `(since, upto]` (everything when `since` is `None`): global
    /// events, and events per room.
    pub(crate) async fn account_data_events(
        &self,
        client: &deadpool_postgres::Client,
        user: &str,
        since: Option<i64>,
        upto: i64,
    ) -> Result<(Vec<Value>, HashMap<String, Vec<Value>>)> {
        let stmt = client.prepare_cached(CHANGED).await?;
        let (mut global, mut rooms) = (Vec::new(), HashMap::<String, Vec<Value>>::new());
        for row in client.query(&stmt, &[&user, &since.unwrap_or(-1), &upto]).await? {
            let (room, kind, content): (String, String, String) = (row.get(0), row.get(1), row.get(2));
            let event = if room.is_empty() && kind == crate::push::rules::PUSH_RULES {
                // Served merged over the current server defaults, like `GET /pushrules/`.
                json!({ "type": kind, "content": self.push_rules_content(user, Some(&content)) })
            } else {
                event(&kind, &content)
            };
            if room.is_empty() {
                global.push(event);
            } else {
                rooms.entry(room).or_default().push(event);
            }
        }
        if since.is_none() && !global.iter().any(|e| e["type"] == crate::push::rules::PUSH_RULES) {
            // Clients (Element) read their rules from the first sync, edited or not.
            global.push(
                json!({ "type": crate::push::rules::PUSH_RULES, "content": self.push_rules_content(user, None) }),
            );
        }
        Ok((global, rooms))
    }

    /// All account data of `rooms` written up to `upto`, per room (a room sent whole needs
    /// only its own, not every room's).
    pub(crate) async fn room_account_data(
        &self,
        client: &deadpool_postgres::Client,
        user: &str,
        rooms: &[&str],
        upto: i64,
    ) -> Result<HashMap<String, Vec<Value>>> {
        let mut out = HashMap::<String, Vec<Value>>::new();
        if rooms.is_empty() {
            return Ok(out);
        }
        let stmt = client.prepare_cached(OF_ROOMS).await?;
        for row in client.query(&stmt, &[&user, &rooms, &upto]).await? {
            let (room, kind): (String, &str) = (row.get(0), row.get(1));
            out.entry(room).or_default().push(event(kind, row.get(2)));
        }
        Ok(out)
    }

    fn push_rules_content(&self, user: &str, stored: Option<&str>) -> Value {
        match ruma::UserId::parse(user) {
            Ok(uid) => crate::push::rules::content(&crate::push::rules::effective(&uid, stored)),
            Err(_) => json!({}),
        }
    }
}

/// An account data event: its type and stored content (`{}` if that is not JSON).
fn event(kind: &str, content: &str) -> Value {
    let content: Value = serde_json::from_str(content).unwrap_or_else(|_| json!({}));
    json!({ "type": kind, "content": content })
}
