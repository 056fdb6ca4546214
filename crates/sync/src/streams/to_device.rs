//! Send-to-device messages: stored per recipient device with a position of the `to_device`
//! stream, delivered by `/sync` (at most [`PER_SYNC`] a response, oldest first) and deleted
//! once the device syncs with a token at or past them. Sending is idempotent per sending
//! device and transaction ID; unknown users and devices are skipped silently, as Synapse does.

use serde_json::{Map, Value, json};
use trellis_bus::Channel;
use trellis_core::{Error, Result, Stream, StreamPos, time::now_ms};
use trellis_proto::sync::{Ack, SendToDeviceRequest};

use crate::{SyncWorker, poll::response::RawEvent, poll::response::raw, queries::Client, streams};

/// Most messages one `/sync` response carries.
pub const PER_SYNC: i64 = 100;

const TXN: &str = "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT DO NOTHING";
/// One message to one device, or (`*`) to every device of the user; nothing for an unknown one.
const INSERT: &str = "INSERT INTO to_device_messages (user_id, device_id, pos, sender, event_type, content) \
     SELECT user_id, device_id, $3, $4, $5, $6 FROM devices WHERE user_id = $1 AND ($2 = '*' OR device_id = $2) \
     ON CONFLICT DO NOTHING";
const PENDING: &str = "SELECT pos, sender, event_type, content FROM to_device_messages \
     WHERE user_id = $1 AND device_id = $2 AND pos <= $3 ORDER BY pos LIMIT $4";
const ACK: &str = "DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND pos <= $3";

impl SyncWorker {
    #[tracing::instrument(skip_all, fields(user = %req.user_id, event_type = %req.event_type))]
    pub(crate) async fn send_to_device(&self, req: SendToDeviceRequest) -> Result<Ack> {
        let messages: Map<String, Value> = match serde_json::from_str(&req.messages_json) {
            Ok(Value::Object(m)) => m,
            _ => return Err(Error::bad_json("messages must be an object")),
        };
        let mut targets = Vec::new();
        for (user, devices) in &messages {
            let Value::Object(devices) = devices else {
                return Err(Error::bad_json("messages.<user_id> must be an object"));
            };
            for (device, content) in devices {
                if !content.is_object() {
                    return Err(Error::bad_json("message content must be an object"));
                }
                targets.push((user.as_str(), device.as_str(), content.to_string()));
            }
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(TXN).await?;
        if tx.execute(&stmt, &[&req.user_id, &req.device_id, &req.txn_id, &now_ms()]).await? == 0 {
            // A retry of a transaction already sent.
            return Ok(Ack {});
        }
        let pos = streams::next_position(&tx, Stream::ToDevice).await?;
        let stmt = tx.prepare_cached(INSERT).await?;
        let mut woken = Vec::new();
        for (user, device, content) in &targets {
            let n = tx.execute(&stmt, &[user, device, &pos, &req.user_id, &req.event_type, content]).await?;
            if n > 0 && !woken.iter().any(|c| matches!(c, Channel::User(u) if u.as_str() == *user)) {
                woken.push(Channel::User((*user).to_owned()));
            }
        }
        tx.commit().await?;
        self.announce(&woken, Stream::ToDevice, pos).await;
        Ok(Ack {})
    }

    /// Deletes what the device acknowledged (everything at or below `since`), then reads what
    /// is pending up to `upto`, at most `limit` of them: the events and, when more are left,
    /// the position of the last one delivered.
    pub(crate) async fn to_device_events(
        &self,
        client: &Client,
        user: &str,
        device: &str,
        since: Option<StreamPos>,
        upto: StreamPos,
        limit: i64,
    ) -> Result<(Vec<RawEvent>, Option<StreamPos>)> {
        if let Some(since) = since.filter(|s| *s > 0) {
            let stmt = client.prepare_cached(ACK).await?;
            client.execute(&stmt, &[&user, &device, &since]).await?;
        }
        let stmt = client.prepare_cached(PENDING).await?;
        let rows = client.query(&stmt, &[&user, &device, &upto, &limit]).await?;
        let truncated = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.get::<_, i64>(0))).flatten();
        let events = rows
            .iter()
            .map(|r| {
                let content: Value = serde_json::from_str(r.get(3)).unwrap_or_else(|_| json!({}));
                raw(json!({ "sender": r.get::<_, &str>(1), "type": r.get::<_, &str>(2), "content": content })
                    .to_string())
            })
            .collect();
        Ok((events, truncated))
    }
}
