//! Delivery of queued pushes to http pushers (push gateway API, `POST /_matrix/push/v1/notify`):
//! each `push_outbox` row is claimed under a lease (so two workers never send it at once), sent,
//! and deleted once the gateway accepts it; a failure is retried with exponential backoff
//! until it is given up. A claimed batch is sent concurrently, so one slow gateway holds up
//! no other, and delivery runs beside the notifier rather than in its loop.
//!
//! A row with an event is a notification; a row without one is a badge update (the unread
//! count after a read receipt), as Synapse sends them.

use std::{sync::Weak, time::Duration};

use serde_json::{Map, Value, json};
use trellis_core::{Result, shutdown::Shutdown, time::now_ms};

use crate::SyncWorker;

/// A claimed push is not claimed again for this long (covers the request's timeout).
const LEASE_MS: i64 = 30_000;
/// The first retry waits this long; each further one twice as long as the one before.
const FIRST_RETRY_MS: i64 = 1_000;
const MAX_RETRY_MS: i64 = 3_600_000;
/// Attempts before a push is dropped.
const MAX_ATTEMPTS: i32 = 12;
/// How often delivery looks for due pushes when nothing was queued on this worker.
const TICK: Duration = Duration::from_millis(200);
/// A gateway that takes longer has failed this attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const CLAIM: &str = "UPDATE push_outbox SET next_attempt_ms = $1 + $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM push_outbox WHERE next_attempt_ms <= $1 ORDER BY id LIMIT 50 \
        FOR UPDATE SKIP LOCKED) \
     RETURNING id, event_pos, user_id, app_id, pushkey, attempts";
/// What a push needs: the pusher, and for a notification its event, the room's name and
/// canonical alias and the sender's display name.
const PUSHER: &str = "SELECT data, pushkey_ts FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3";
const DETAILS: &str = "SELECT n.room_id, n.event_id, n.actions, e.type, e.sender, e.content, e.state_key, \
        (SELECT s.content FROM current_state c JOIN events s ON s.event_id = c.event_id \
           WHERE c.room_id = n.room_id AND c.type = 'm.room.name' AND c.state_key = ''), \
        (SELECT s.content FROM current_state c JOIN events s ON s.event_id = c.event_id \
           WHERE c.room_id = n.room_id AND c.type = 'm.room.canonical_alias' AND c.state_key = ''), \
        (SELECT s.content FROM current_state c JOIN events s ON s.event_id = c.event_id \
           WHERE c.room_id = n.room_id AND c.type = 'm.room.member' AND c.state_key = e.sender) \
     FROM user_notifications n JOIN events e ON e.event_id = n.event_id \
     WHERE n.user_id = $2 AND n.event_pos = $1";
/// Notifications after the user's read receipt in each room they are in: the badge count.
const UNREAD: &str = "SELECT COALESCE(sum(c.n), 0)::bigint FROM memberships m CROSS JOIN LATERAL ( \
        SELECT count(*) AS n FROM user_notifications u WHERE u.user_id = m.user_id AND u.room_id = m.room_id \
        AND u.event_pos > COALESCE((SELECT max(event_pos) FROM receipts r WHERE r.room_id = m.room_id \
           AND r.user_id = m.user_id AND r.receipt_type IN ('m.read', 'm.read.private')), 0)) c \
     WHERE m.user_id = $1 AND m.membership = 'join'";
/// A badge update for each of the user's http pushers that has none waiting.
pub(crate) const QUEUE_BADGES: &str = "INSERT INTO push_outbox (user_id, event_pos, app_id, pushkey, next_attempt_ms) \
     SELECT p.user_id, NULL, p.app_id, p.pushkey, $2 FROM pushers p WHERE p.user_id = $1 AND p.kind = 'http' \
     AND NOT EXISTS (SELECT 1 FROM push_outbox o WHERE o.user_id = p.user_id AND o.app_id = p.app_id \
        AND o.pushkey = p.pushkey AND o.event_pos IS NULL AND o.attempts = 0)";
const DONE: &str = "DELETE FROM push_outbox WHERE id = $1";
const RETRY: &str = "UPDATE push_outbox SET next_attempt_ms = $2 WHERE id = $1";
/// The gateway said the pushkey is no longer valid: the user's pusher goes.
const REJECTED: &str = "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3";

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

/// The pusher a push goes to.
pub struct Device<'a> {
    pub app_id: &'a str,
    pub pushkey: &'a str,
    /// Milliseconds; sent in seconds.
    pub pushkey_ts: i64,
    pub data: &'a Value,
}

/// The event of a notification and what the push says about it.
pub struct Notice<'a> {
    pub room: &'a str,
    pub event_id: &'a str,
    pub kind: &'a str,
    pub sender: &'a str,
    pub state_key: Option<&'a str>,
    pub content: &'a str,
    pub actions: &'a Value,
    /// The room's name, else its canonical alias.
    pub room_name: Option<String>,
    pub sender_display_name: Option<String>,
}

/// The push gateway request body for `notice` (`None`: a badge update) to one device of `user`.
pub fn body(user: &str, notice: Option<&Notice<'_>>, device: &Device<'_>, unread: i64) -> Value {
    let mut data = device.data.as_object().cloned().unwrap_or_default();
    data.remove("url");
    let event_id_only = data.get("format").and_then(Value::as_str) == Some("event_id_only");
    let mut d = json!({
        "app_id": device.app_id, "pushkey": device.pushkey, "pushkey_ts": device.pushkey_ts / 1000, "data": data,
    });
    let Some(n) = notice else {
        return json!({ "notification": { "counts": { "unread": unread }, "devices": [d] } });
    };
    let tweaks = tweaks(n.actions);
    let high = tweaks.get("highlight").is_some_and(|h| h != &Value::Bool(false)) || tweaks.contains_key("sound");
    d["tweaks"] = Value::Object(tweaks);
    let mut out = json!({
        // `id` is the event ID under its pre-spec name, which older gateways still read.
        "id": n.event_id,
        "event_id": n.event_id,
        "room_id": n.room,
        "counts": { "unread": unread },
        "prio": if high { "high" } else { "low" },
        "devices": [d],
    });
    if !event_id_only {
        out["type"] = json!(n.kind);
        out["sender"] = json!(n.sender);
        out["content"] = serde_json::from_str(n.content).unwrap_or_else(|_| json!({}));
        if let Some(name) = &n.room_name {
            out["room_name"] = json!(name);
        }
        if let Some(name) = &n.sender_display_name {
            out["sender_display_name"] = json!(name);
        }
        if n.kind == "m.room.member"
            && let Some(target) = n.state_key
        {
            let content: Value = serde_json::from_str(n.content).unwrap_or_default();
            out["membership"] = content["membership"].clone();
            out["user_is_target"] = json!(target == user);
        }
    }
    json!({ "notification": out })
}

/// A string field of a stored JSON content, when present and not empty.
fn field(content: Option<String>, key: &str) -> Option<String> {
    let v: Value = serde_json::from_str(&content?).ok()?;
    v[key].as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Runs delivery until `shutdown`: due pushes are sent when the notifier or a receipt queues
/// some on this worker, and at every tick (retries, and pushes queued by other workers).
pub(crate) async fn run(worker: Weak<SyncWorker>, shutdown: Shutdown) {
    let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap_or_else(|_| reqwest::Client::new());
    loop {
        let Some(queued) = worker.upgrade().map(|w| w.push_queued.clone()) else { return };
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = queued.notified() => {}
            _ = shutdown.wait() => return,
        }
        let Some(worker) = worker.upgrade() else { return };
        if let Err(e) = worker.deliver_due(&http).await {
            tracing::warn!(error = ?e, "push delivery failed");
        }
    }
}

/// One claimed push, ready to send.
struct Claimed {
    id: i64,
    user: String,
    app_id: String,
    pushkey: String,
    attempts: i32,
    url: String,
    body: Value,
}

impl SyncWorker {
    /// Sends every push that is due, concurrently.
    pub(crate) async fn deliver_due(&self, http: &reqwest::Client) -> Result<()> {
        let client = self.pool.get().await?;
        let claimed = client.query(CLAIM, &[&now_ms(), &LEASE_MS]).await?;
        let mut ready = Vec::new();
        for row in claimed {
            let (id, event_pos, user): (i64, Option<i64>, String) = (row.get(0), row.get(1), row.get(2));
            let (app_id, pushkey, attempts): (String, String, i32) = (row.get(3), row.get(4), row.get(5));
            let Some(pusher) = client.query_opt(PUSHER, &[&user, &app_id, &pushkey]).await? else {
                // The pusher was removed: nothing to send.
                client.execute(DONE, &[&id]).await?;
                continue;
            };
            let data: Value = serde_json::from_str(pusher.get::<_, &str>(0)).unwrap_or_else(|_| json!({}));
            let Some(url) = data["url"].as_str().map(str::to_owned) else {
                client.execute(DONE, &[&id]).await?;
                continue;
            };
            let device = Device { app_id: &app_id, pushkey: &pushkey, pushkey_ts: pusher.get(1), data: &data };
            let unread: i64 = client.query_one(UNREAD, &[&user]).await?.get(0);
            let body = match event_pos {
                None => body(&user, None, &device, unread),
                Some(pos) => {
                    let Some(d) = client.query_opt(DETAILS, &[&pos, &user]).await? else {
                        // The notification (or its event) is gone.
                        client.execute(DONE, &[&id]).await?;
                        continue;
                    };
                    let actions: Value = serde_json::from_str(d.get::<_, &str>(2)).unwrap_or_else(|_| json!([]));
                    let notice = Notice {
                        room: d.get(0),
                        event_id: d.get(1),
                        kind: d.get(3),
                        sender: d.get(4),
                        content: d.get(5),
                        state_key: d.get(6),
                        actions: &actions,
                        room_name: field(d.get(7), "name").or_else(|| field(d.get(8), "alias")),
                        sender_display_name: field(d.get(9), "displayname"),
                    };
                    body(&user, Some(&notice), &device, unread)
                }
            };
            ready.push(Claimed { id, user, app_id, pushkey, attempts, url, body });
        }
        let sent = futures_util::future::join_all(ready.iter().map(|p| send(http, &p.url, &p.body))).await;
        for (push, outcome) in ready.iter().zip(sent) {
            let (id, app_id, attempts) = (push.id, push.app_id.as_str(), push.attempts);
            match outcome {
                Ok(rejected) => {
                    client.execute(DONE, &[&id]).await?;
                    if rejected.contains(&push.pushkey) {
                        tracing::info!(app_id, "push gateway rejected the pushkey; removing the pusher");
                        client.execute(REJECTED, &[&push.user, &app_id, &push.pushkey]).await?;
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

    fn notice<'a>(kind: &'a str, state_key: Option<&'a str>, content: &'a str, actions: &'a Value) -> Notice<'a> {
        Notice {
            room: "!r:x",
            event_id: "$e",
            kind,
            sender: "@b:x",
            state_key,
            content,
            actions,
            room_name: Some("Lunch".into()),
            sender_display_name: Some("Bob".into()),
        }
    }

    #[test]
    fn body_has_the_push_gateway_shape() {
        let actions = json!(["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]);
        let data = json!({"url": "http://x/_matrix/push/v1/notify", "format": "full", "extra": 1});
        let device = Device { app_id: "app", pushkey: "key", pushkey_ts: 5000, data: &data };
        let b = body("@a:x", Some(&notice("m.room.message", None, r#"{"body":"hi"}"#, &actions)), &device, 3);
        let n = &b["notification"];
        assert_eq!((&n["event_id"], &n["id"]), (&json!("$e"), &json!("$e")));
        assert_eq!(n["counts"]["unread"], 3);
        assert_eq!(n["prio"], "high");
        assert_eq!(n["content"]["body"], "hi");
        assert_eq!((&n["room_name"], &n["sender_display_name"]), (&json!("Lunch"), &json!("Bob")));
        assert!(n.get("membership").is_none());
        let d = &n["devices"][0];
        assert_eq!(d["pushkey_ts"], 5);
        assert_eq!(d["data"], json!({"format": "full", "extra": 1}), "url is left out");
        assert_eq!(d["tweaks"], json!({"sound": "default", "highlight": true}));

        let invite = notice("m.room.member", Some("@a:x"), r#"{"membership":"invite"}"#, &actions);
        let n = &body("@a:x", Some(&invite), &device, 0)["notification"];
        assert_eq!((&n["membership"], &n["user_is_target"]), (&json!("invite"), &json!(true)));

        let only = json!({"format": "event_id_only"});
        let device = Device { app_id: "a", pushkey: "k", pushkey_ts: 0, data: &only };
        let plain = json!(["notify"]);
        let b = body("@a:x", Some(&notice("m.room.message", None, "{}", &plain)), &device, 0);
        assert!(b["notification"].get("sender").is_none());
        assert!(b["notification"].get("room_name").is_none());
        assert_eq!(b["notification"]["prio"], "low");

        let badge = body("@a:x", None, &device, 2);
        assert_eq!(
            badge,
            json!({"notification": {"counts": {"unread": 2}, "devices": [{
            "app_id": "a", "pushkey": "k", "pushkey_ts": 0, "data": {"format": "event_id_only"}}]}})
        );
    }
}
