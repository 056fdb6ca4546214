//! Delivery of queued pushes to http pushers (push gateway API, `POST /_matrix/push/v1/notify`):
//! each `push_outbox` row is claimed under a lease (so two workers never send it at once), sent,
//! and deleted once the gateway accepts it; a failure is retried with exponential backoff
//! until it is given up.

use serde_json::{Map, Value, json};
use trellis_core::{Result, time::now_ms};

use crate::SyncWorker;

/// A claimed push is not claimed again for this long (covers the request's timeout).
const LEASE_MS: i64 = 30_000;
/// The first retry waits this long; each further one twice as long as the one before.
const FIRST_RETRY_MS: i64 = 1_000;
const MAX_RETRY_MS: i64 = 3_600_000;
/// Attempts before a push is dropped.
const MAX_ATTEMPTS: i32 = 12;

const CLAIM: &str = "UPDATE push_outbox SET next_attempt_ms = $1 + $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM push_outbox WHERE next_attempt_ms <= $1 ORDER BY id LIMIT 20 \
        FOR UPDATE SKIP LOCKED) \
     RETURNING id, event_pos, user_id, app_id, pushkey, attempts";
/// What the push needs: the notification, its event and the pusher.
const DETAILS: &str = "SELECT n.room_id, n.event_id, n.actions, e.type, e.sender, e.content, p.data, p.pushkey_ts \
     FROM notifications n JOIN events e ON e.event_id = n.event_id \
     JOIN pushers p ON p.user_id = n.user_id AND p.app_id = $2 AND p.pushkey = $3 \
     WHERE n.user_id = $4 AND n.event_pos = $1";
/// Notifications after the user's read receipt in each room: the badge count.
const UNREAD: &str = "SELECT count(*) FROM notifications n WHERE n.user_id = $1 AND n.event_pos > \
     COALESCE((SELECT max(event_pos) FROM receipts r WHERE r.room_id = n.room_id AND r.user_id = n.user_id \
        AND r.receipt_type IN ('m.read', 'm.read.private')), 0)";
const DONE: &str = "DELETE FROM push_outbox WHERE id = $1";
const RETRY: &str = "UPDATE push_outbox SET next_attempt_ms = $2 WHERE id = $1";
const REJECTED: &str = "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2";

/// The wait before retry number `attempts` (1 = the first retry).
pub fn backoff_ms(attempts: i32) -> i64 {
    let shift = attempts.clamp(1, 30) - 1;
    (FIRST_RETRY_MS << shift).min(MAX_RETRY_MS)
}

/// The `tweaks` of a rule's actions (`set_tweak` objects), as the push gateway expects them.
pub fn tweaks(actions: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    for a in actions.as_array().into_iter().flatten() {
        if let Some(name) = a["set_tweak"].as_str() {
            out.insert(name.to_owned(), a.get("value").cloned().unwrap_or(Value::Bool(true)));
        }
    }
    out
}

/// The push gateway request body for one notification to one device.
#[allow(clippy::too_many_arguments)]
pub fn body(
    room: &str,
    event_id: &str,
    kind: &str,
    sender: &str,
    content: &str,
    actions: &Value,
    (app_id, pushkey, pushkey_ts): (&str, &str, i64),
    data: &Value,
    unread: i64,
) -> Value {
    let mut data = data.as_object().cloned().unwrap_or_default();
    data.remove("url");
    let tweaks = tweaks(actions);
    let high = tweaks.get("highlight").is_some_and(|h| h != &Value::Bool(false)) || tweaks.contains_key("sound");
    let event_id_only = data.get("format").and_then(Value::as_str) == Some("event_id_only");
    let mut n = json!({
        "event_id": event_id,
        "room_id": room,
        "counts": { "unread": unread },
        "prio": if high { "high" } else { "low" },
        "devices": [{
            "app_id": app_id, "pushkey": pushkey, "pushkey_ts": pushkey_ts / 1000, "data": data, "tweaks": tweaks,
        }],
    });
    if !event_id_only {
        n["type"] = json!(kind);
        n["sender"] = json!(sender);
        n["content"] = serde_json::from_str(content).unwrap_or_else(|_| json!({}));
    }
    json!({ "notification": n })
}

impl SyncWorker {
    /// Sends every push that is due.
    pub(crate) async fn deliver_due(&self, http: &reqwest::Client) -> Result<()> {
        let client = self.pool.get().await?;
        let claimed = client.query(CLAIM, &[&now_ms(), &LEASE_MS]).await?;
        for row in claimed {
            let (id, event_pos, user): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
            let (app_id, pushkey, attempts): (String, String, i32) = (row.get(3), row.get(4), row.get(5));
            let Some(d) = client.query_opt(DETAILS, &[&event_pos, &app_id, &pushkey, &user]).await? else {
                // The pusher was removed (or the event is gone): nothing to send.
                client.execute(DONE, &[&id]).await?;
                continue;
            };
            let data: Value = serde_json::from_str(d.get::<_, &str>(6)).unwrap_or_else(|_| json!({}));
            let Some(url) = data["url"].as_str().map(str::to_owned) else {
                client.execute(DONE, &[&id]).await?;
                continue;
            };
            let actions: Value = serde_json::from_str(d.get::<_, &str>(2)).unwrap_or_else(|_| json!([]));
            let unread: i64 = client.query_one(UNREAD, &[&user]).await?.get(0);
            let body = body(
                d.get(0),
                d.get(1),
                d.get(3),
                d.get(4),
                d.get(5),
                &actions,
                (app_id.as_str(), pushkey.as_str(), d.get(7)),
                &data,
                unread,
            );
            match send(http, &url, &body).await {
                Ok(rejected) => {
                    client.execute(DONE, &[&id]).await?;
                    if rejected.contains(&pushkey) {
                        tracing::info!(app_id, "push gateway rejected the pushkey; removing the pusher");
                        client.execute(REJECTED, &[&app_id, &pushkey]).await?;
                    }
                    metrics::counter!("trellis_push_delivered_total").increment(1);
                }
                Err(reason) if attempts >= MAX_ATTEMPTS => {
                    tracing::warn!(app_id, attempts, reason, "push given up");
                    client.execute(DONE, &[&id]).await?;
                }
                Err(reason) => {
                    tracing::info!(app_id, attempts, reason, "push failed; will retry");
                    client.execute(RETRY, &[&id, &(now_ms() + backoff_ms(attempts))]).await?;
                }
            }
        }
        Ok(())
    }
}

/// POSTs one push; the pushkeys the gateway rejected, or why it failed.
async fn send(http: &reqwest::Client, url: &str, body: &Value) -> std::result::Result<Vec<String>, String> {
    let resp = http.post(url).json(body).send().await.map_err(|e| format!("request failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let answer: Value = resp.json().await.unwrap_or_else(|_| json!({}));
    Ok(answer["rejected"].as_array().into_iter().flatten().filter_map(|k| k.as_str().map(str::to_owned)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(2), 2_000);
        assert_eq!(backoff_ms(5), 16_000);
        assert_eq!(backoff_ms(40), MAX_RETRY_MS);
    }

    #[test]
    fn body_has_the_push_gateway_shape() {
        let actions = json!(["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]);
        let data = json!({"url": "http://x/_matrix/push/v1/notify", "format": "full", "extra": 1});
        let b =
            body("!r:x", "$e", "m.room.message", "@b:x", r#"{"body":"hi"}"#, &actions, ("app", "key", 5000), &data, 3);
        let n = &b["notification"];
        assert_eq!(n["event_id"], "$e");
        assert_eq!(n["counts"]["unread"], 3);
        assert_eq!(n["prio"], "high");
        assert_eq!(n["content"]["body"], "hi");
        let d = &n["devices"][0];
        assert_eq!(d["pushkey_ts"], 5);
        assert_eq!(d["data"], json!({"format": "full", "extra": 1}), "url is left out");
        assert_eq!(d["tweaks"], json!({"sound": "default", "highlight": true}));
        let only = body(
            "!r:x",
            "$e",
            "m.room.message",
            "@b:x",
            "{}",
            &json!(["notify"]),
            ("a", "k", 0),
            &json!({"format": "event_id_only"}),
            0,
        );
        assert!(only["notification"].get("sender").is_none());
        assert_eq!(only["notification"]["prio"], "low");
    }
}
