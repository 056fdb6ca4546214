//! Pushers (`GET /pushers`, `POST /pushers/set`; a pusher goes with the device that set it)
//! and the events that notified a user (`GET /notifications`).

use serde_json::{Map, Value};
use trellis_core::{Error, Result, time::now_ms};
use trellis_proto::sync::{
    Ack, DeleteDevicePushersRequest, GetPushersRequest, Notification, NotificationPage, NotificationsRequest, Pusher,
    PusherList, SetPusherRequest, delete_device_pushers_request::Which,
};
use trellis_storage::events::{EventRow, Format};

use crate::{SyncWorker, access};

/// The path every push gateway serves (push gateway API, `POST /_matrix/push/v1/notify`).
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
const MAX_PUSHKEY: usize = 512;
const MAX_APP_ID: usize = 64;
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

const LIST: &str = "SELECT app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data \
     FROM pushers WHERE user_id = $1 ORDER BY pushkey_ts";
const DELETE: &str = "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3";
const DELETE_OTHERS: &str = "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3";
const UPSERT: &str = "INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name, \
        profile_tag, lang, data, pushkey_ts, device_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = EXCLUDED.kind, \
        app_display_name = EXCLUDED.app_display_name, device_display_name = EXCLUDED.device_display_name, \
        profile_tag = EXCLUDED.profile_tag, lang = EXCLUDED.lang, data = EXCLUDED.data, \
        device_id = EXCLUDED.device_id";
const DELETE_OF_DEVICES: &str = "DELETE FROM pushers WHERE user_id = $1 AND device_id = ANY($2)";
// Pushers of unknown origin (made before devices were recorded) go too.
const DELETE_ALL_BUT: &str = "DELETE FROM pushers WHERE user_id = $1 AND device_id IS DISTINCT FROM $2";
const DELETE_ALL: &str = "DELETE FROM pushers WHERE user_id = $1";
/// A page of the user's notifications, newest first: per room, the page's worth of the
/// room's per-event records the user is covered by (joined then, not the sender, no row of
/// their own), and the user's own rows that notify; then the newest of those, with events.
const NOTIFICATIONS: &str = "WITH n AS (SELECT * FROM ( \
        SELECT d.event_pos, d.room_id, d.actions, d.ts, d.event_id FROM memberships m \
        CROSS JOIN LATERAL (SELECT d.* FROM event_notifications d WHERE d.room_id = m.room_id \
           AND d.event_pos > m.joined_pos AND (m.membership = 'join' OR d.event_pos <= m.pos) \
           AND d.event_pos < $2 AND d.sender <> $1 AND (NOT $3 OR d.highlight) \
           AND NOT EXISTS (SELECT 1 FROM notifications x WHERE x.user_id = $1 AND x.event_pos = d.event_pos) \
           ORDER BY d.event_pos DESC LIMIT $4) d \
        WHERE m.user_id = $1 \
        UNION ALL \
        SELECT event_pos, room_id, actions, ts, event_id FROM notifications \
        WHERE user_id = $1 AND notify AND event_pos < $2 AND (NOT $3 OR highlight)) u \
     ORDER BY event_pos DESC LIMIT $4) \
     SELECT n.event_pos, n.room_id, n.actions, n.ts, \
        n.event_pos <= COALESCE((SELECT max(event_pos) FROM receipts r WHERE r.room_id = n.room_id \
           AND r.user_id = $1 AND r.receipt_type IN ('m.read', 'm.read.private')), 0), \
        e.pos, e.event_id, e.room_id, e.sender, e.type, e.state_key, e.origin_server_ts, e.content, \
        e.unsigned_json, e.txn_device, e.txn_id, e.redacts \
     FROM n JOIN events e ON e.event_id = n.event_id ORDER BY n.event_pos DESC";

const COMPLETE: &str = "SELECT pos FROM stream_positions WHERE stream = 'events'";
const NOTIFIER_POS: &str = "SELECT pos FROM push_notifier WHERE id = 1";
/// The longest `/notifications` waits for the notifier (which defers to busy moments for up
/// to a second).
const CATCH_UP: std::time::Duration = std::time::Duration::from_millis(2_500);

/// A required field of a pusher (`M_MISSING_PARAM` when absent).
fn text<'a>(field: &'a Option<String>, key: &str) -> Result<&'a str> {
    field.as_deref().ok_or_else(|| Error::missing_param(format!("{key} is required")))
}

/// A pusher's `data` (JSON) checked for its kind: http pushers need a push gateway URL.
fn checked_data(kind: &str, data: Option<&str>) -> Result<Map<String, Value>> {
    let data: Option<Value> =
        data.map(serde_json::from_str).transpose().map_err(|_| Error::bad_json("invalid data"))?;
    let data = data.and_then(|d| d.as_object().cloned()).ok_or_else(|| Error::missing_param("data is required"))?;
    match kind {
        "http" => {
            let url =
                data.get("url").and_then(Value::as_str).ok_or_else(|| Error::invalid_param("data.url is required"))?;
            let parsed = url.split_once("://").filter(|(scheme, _)| matches!(*scheme, "http" | "https"));
            if parsed.is_none() || !url.ends_with(NOTIFY_PATH) {
                return Err(Error::invalid_param(format!("data.url must be an http(s) URL ending in {NOTIFY_PATH}")));
            }
            Ok(data)
        }
        "email" => Err(Error::invalid_param("email pushers are not supported")),
        _ => Err(Error::invalid_param("unknown pusher kind")),
    }
}

impl SyncWorker {
    /// Waits (up to `CATCH_UP`) until the notifier has evaluated every event committed before
    /// now, so `/notifications` shows what was sent before it was asked for. The notifier may
    /// run on another worker, so its stored position is what is watched.
    async fn notifier_caught_up(&self, client: &deadpool_postgres::Client) -> Result<()> {
        let goal: i64 = client.query_one(COMPLETE, &[]).await?.get(0);
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        let stmt = client.prepare_cached(NOTIFIER_POS).await?;
        while client.query_one(&stmt, &[]).await?.get::<_, i64>(0) < goal {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub(crate) async fn get_pushers_op(&self, req: GetPushersRequest) -> Result<PusherList> {
        access::own(&req.requester, &req.user_id)?;
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(LIST).await?;
        let mut pushers = Vec::new();
        for row in client.query(&stmt, &[&req.user_id]).await? {
            pushers.push(Pusher {
                app_id: row.get(0),
                pushkey: row.get(1),
                kind: row.get(2),
                app_display_name: row.get(3),
                device_display_name: row.get(4),
                profile_tag: row.get(5),
                lang: row.get(6),
                // Stored data that is not JSON is shown as none.
                data: Some(row.get::<_, String>(7))
                    .filter(|d| serde_json::from_str::<Value>(d).is_ok())
                    .unwrap_or_else(|| "{}".into()),
            });
        }
        Ok(PusherList { pushers })
    }

    /// Sets a pusher, or deletes it when the request has no kind. The checks come in Synapse's
    /// order: the IDs, then the kind and its data, then the display fields.
    pub(crate) async fn set_pusher_op(&self, req: SetPusherRequest) -> Result<Ack> {
        access::own(&req.requester, &req.user_id)?;
        let (app_id, pushkey) = (text(&req.app_id, "app_id")?, text(&req.pushkey, "pushkey")?);
        if app_id.len() > MAX_APP_ID || pushkey.len() > MAX_PUSHKEY {
            return Err(Error::invalid_param("app_id or pushkey too long"));
        }
        let client = self.pool.get().await?;
        let Some(kind) = req.kind.as_deref() else {
            client.execute(DELETE, &[&req.user_id, &app_id, &pushkey]).await?;
            return Ok(Ack {});
        };
        let data = checked_data(kind, req.data.as_deref())?;
        let (app_name, device_name, lang) = (
            text(&req.app_display_name, "app_display_name")?,
            text(&req.device_display_name, "device_display_name")?,
            text(&req.lang, "lang")?,
        );
        let data = Value::Object(data).to_string();
        if !req.append {
            client.execute(DELETE_OTHERS, &[&app_id, &pushkey, &req.user_id]).await?;
        }
        let device_id = Some(req.device_id.as_str()).filter(|d| !d.is_empty());
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
            &req.user_id,
            &app_id,
            &pushkey,
            &kind,
            &app_name,
            &device_name,
            &req.profile_tag,
            &lang,
            &data,
            &now_ms(),
            &device_id,
        ];
        client.execute(UPSERT, &params).await?;
        Ok(Ack {})
    }

    /// Deletes the pushers of devices that are gone (see `DeleteDevicePushersRequest`).
    pub(crate) async fn delete_device_pushers_op(&self, req: DeleteDevicePushersRequest) -> Result<Ack> {
        let client = self.pool.get().await?;
        let deleted = match &req.which {
            Some(Which::Devices(list)) => client.execute(DELETE_OF_DEVICES, &[&req.user_id, &list.device_ids]).await?,
            Some(Which::AllBut(device_id)) => client.execute(DELETE_ALL_BUT, &[&req.user_id, device_id]).await?,
            Some(Which::All(true)) => client.execute(DELETE_ALL, &[&req.user_id]).await?,
            Some(Which::All(false)) | None => 0,
        };
        if deleted > 0 {
            tracing::info!(user_id = %req.user_id, deleted, "pushers of removed devices deleted");
        }
        Ok(Ack {})
    }

    pub(crate) async fn list_notifications(&self, req: NotificationsRequest) -> Result<NotificationPage> {
        access::own(&req.requester, &req.user_id)?;
        let from: i64 = match req.from.as_str() {
            "" => i64::MAX,
            f => f.parse().map_err(|_| Error::invalid_param("invalid from token"))?,
        };
        let limit = match req.limit {
            0 => DEFAULT_LIMIT,
            l => l.min(MAX_LIMIT),
        };
        let client = self.pool.get().await?;
        self.notifier_caught_up(&client).await?;
        let stmt = client.prepare_cached(NOTIFICATIONS).await?;
        let rows = client.query(&stmt, &[&req.user_id, &from, &req.only_highlight, &i64::from(limit)]).await?;
        let now = now_ms();
        let mut page = NotificationPage::default();
        for row in &rows {
            let event = EventRow::from_row_at(row, 5).render(None, Format::Client, now);
            // Stored actions that are not a list are none.
            let actions: Vec<Value> = serde_json::from_str(row.get::<_, &str>(2)).unwrap_or_default();
            page.notifications.push(Notification {
                actions: actions.iter().map(Value::to_string).collect(),
                event,
                read: row.get(4),
                room_id: row.get(1),
                ts: row.get(3),
            });
        }
        if rows.len() as u32 == limit
            && let Some(last) = rows.last()
        {
            page.next_token = Some(last.get::<_, i64>(0).to_string());
        }
        Ok(page)
    }
}
