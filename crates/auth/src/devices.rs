//! Devices: the one place devices are created and deleted (so a device-list change can be
//! recorded here), listing, renaming, deletion behind user-interactive auth, and the
//! throttled last-seen record.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tracing::{info, instrument};
use trellis_core::{Error, Result, StreamPos, time::now_ms};
use trellis_proto::auth::{
    AuthAck, DeleteDevicesRequest, Device, DeviceList, GetDeviceRequest, ListDevicesRequest, Requester,
    UpdateDeviceRequest,
};

use crate::{new_login::NewLogin, service::Auth, store, token::TokenHash};

const SELECT_DEVICES: &str = "SELECT device_id, display_name, last_seen_ip, last_seen_ts FROM devices \
                              WHERE user_id = $1 ORDER BY device_id";
const SELECT_DEVICE: &str = "SELECT device_id, display_name, last_seen_ip, last_seen_ts FROM devices \
                             WHERE user_id = $1 AND device_id = $2";
const RENAME_DEVICE: &str = "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2 \
                             AND display_name IS DISTINCT FROM $3";
const TOUCH_DEVICE: &str = "UPDATE devices SET last_seen_ts = $3, last_seen_ip = COALESCE($4, last_seen_ip), \
                            last_seen_user_agent = COALESCE($5, last_seen_user_agent) \
                            WHERE user_id = $1 AND device_id = $2";
const DELETE_TOKENS: &str = "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = ANY($2) \
                             RETURNING token_hash";
const DELETE_DEVICES: &str = "DELETE FROM devices WHERE user_id = $1 AND device_id = ANY($2)";
const DELETE_OTHER_TOKENS: &str = "DELETE FROM access_tokens WHERE user_id = $1 \
                                   AND device_id IS DISTINCT FROM $2 RETURNING token_hash";
const DELETE_OTHER_DEVICES: &str = "DELETE FROM devices WHERE user_id = $1 AND device_id IS DISTINCT FROM $2";

/// The `uia_sessions.kind` of device deletion.
const UIA_KIND: &str = "delete_devices";

/// Creates the device unless it exists, seen now from where the login came; true if it was
/// created.
pub async fn create_device(c: &impl GenericClient, user_id: &str, device_id: &str, login: &NewLogin) -> Result<bool> {
    store::ensure_device(c, user_id, device_id, login).await
}

/// What a deletion did, for after its transaction commits: the token hashes to evict and the
/// device-list change to announce (see [`Auth::removed`]).
pub struct Removed {
    pub revoked: Vec<TokenHash>,
    pub change: Option<StreamPos>,
}

/// Deletes the listed devices (unknown ones are skipped) with their tokens and keys, and
/// records the device-list change.
pub async fn delete_devices(c: &impl GenericClient, user_id: &str, device_ids: &[String]) -> Result<Removed> {
    let stmt = c.prepare_cached(DELETE_TOKENS).await?;
    let revoked = store::hashes(c.query(&stmt, &[&user_id, &device_ids]).await?)?;
    let stmt = c.prepare_cached(DELETE_DEVICES).await?;
    let deleted = c.execute(&stmt, &[&user_id, &device_ids]).await?;
    removed(c, user_id, revoked, deleted).await
}

/// Deletes every device of the user but `except` (all of them when `None`), like
/// [`delete_devices`].
pub async fn delete_all_devices(c: &impl GenericClient, user_id: &str, except: Option<&str>) -> Result<Removed> {
    let stmt = c.prepare_cached(DELETE_OTHER_TOKENS).await?;
    let revoked = store::hashes(c.query(&stmt, &[&user_id, &except]).await?)?;
    let stmt = c.prepare_cached(DELETE_OTHER_DEVICES).await?;
    let deleted = c.execute(&stmt, &[&user_id, &except]).await?;
    removed(c, user_id, revoked, deleted).await
}

/// A deletion of `deleted` devices is a device-list change when it deleted any.
async fn removed(c: &impl GenericClient, user_id: &str, revoked: Vec<TokenHash>, deleted: u64) -> Result<Removed> {
    let change = if deleted > 0 { Some(crate::keys::changes::record(c, user_id).await?) } else { None };
    Ok(Removed { revoked, change })
}

fn device(row: &tokio_postgres::Row) -> Device {
    Device { device_id: row.get(0), display_name: row.get(1), last_seen_ip: row.get(2), last_seen_ts: row.get(3) }
}

fn unknown_device() -> Error {
    Error::not_found("Unknown device")
}

/// Slack for the gateways' clocks running a little slow against this one's.
const CLOCK_MARGIN: Duration = Duration::from_millis(20);

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_list_devices(&self, req: ListDevicesRequest) -> Result<DeviceList> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_DEVICES).await?;
        let rows = client.query(&stmt, &[&req.user_id]).await?;
        Ok(DeviceList { devices: rows.iter().map(device).collect() })
    }

    #[instrument(skip_all, fields(user_id = %req.user_id, device_id = %req.device_id))]
    pub(crate) async fn do_get_device(&self, req: GetDeviceRequest) -> Result<Device> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_DEVICE).await?;
        let row = client.query_opt(&stmt, &[&req.user_id, &req.device_id]).await?;
        row.as_ref().map(device).ok_or_else(unknown_device)
    }

    #[instrument(skip_all, fields(user_id = %req.user_id, device_id = %req.device_id))]
    pub(crate) async fn do_update_device(&self, req: UpdateDeviceRequest) -> Result<AuthAck> {
        let mut client = self.pool.get().await?;
        // A new name is a device-list change: other users' clients show device names (as
        // Synapse, which tells the users sharing a room).
        let tx = client.transaction().await?;
        let renamed = match &req.display_name {
            Some(name) => {
                tx.execute(&tx.prepare_cached(RENAME_DEVICE).await?, &[&req.user_id, &req.device_id, name]).await?
            }
            None => 0,
        };
        if renamed == 0 {
            // No name, or the same one: nothing changes, but the device must exist.
            let stmt = tx.prepare_cached(SELECT_DEVICE).await?;
            tx.query_opt(&stmt, &[&req.user_id, &req.device_id]).await?.ok_or_else(unknown_device)?;
            return Ok(AuthAck {});
        }
        let pos = crate::keys::changes::record(&tx, &req.user_id).await?;
        tx.commit().await?;
        self.announce_device_list(&req.user_id, pos).await;
        Ok(AuthAck {})
    }

    #[instrument(skip_all, fields(user_id = %req.user_id, devices = req.device_ids.len()))]
    pub(crate) async fn do_delete_devices(&self, req: DeleteDevicesRequest) -> Result<AuthAck> {
        // The session is bound to the devices it deletes: one started to delete a device
        // cannot be completed to delete another.
        let mut target = req.device_ids.clone();
        target.sort();
        target.dedup();
        let target = serde_json::to_string(&target)?;
        self.require_uia(&req.user_id, UIA_KIND, Some(&target), &req.auth_json).await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let removed = delete_devices(&tx, &req.user_id, &req.device_ids).await?;
        tx.commit().await?;
        let tokens = removed.revoked.len();
        self.removed(&req.user_id, removed).await;
        info!(user_id = %req.user_id, devices = ?req.device_ids, tokens, "devices deleted");
        Ok(AuthAck {})
    }

    /// After a deletion committed: its tokens stop working here at once, and the sync workers
    /// of the user's contacts hear that the device list changed. In split mode the answer
    /// waits until no gateway can still hold a validation of those tokens from before the
    /// commit (`AuthConfig::remote_token_cache`): a revoked token fails everywhere as soon as
    /// the revoking request has answered.
    pub(crate) async fn removed(&self, user_id: &str, removed: Removed) {
        let committed = tokio::time::Instant::now();
        self.tokens.revoke(&removed.revoked).await;
        if let Some(pos) = removed.change {
            self.announce_device_list(user_id, pos).await;
        }
        if !removed.revoked.is_empty() && !self.config.remote_token_cache.is_zero() {
            tokio::time::sleep_until(committed + self.config.remote_token_cache + CLOCK_MARGIN).await;
        }
    }

    /// Records that the requester's device was just used, at most once per
    /// [`crate::service::LAST_SEEN_EVERY`] per device; the write runs in the background.
    pub(crate) async fn note_seen(&self, requester: &Requester, ip: Option<String>, user_agent: Option<String>) {
        let key = (requester.user_id.clone(), requester.device_id.clone());
        if self.seen.contains_key(&key) {
            return;
        }
        self.seen.insert(key.clone(), ()).await;
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let result: Result<()> = async {
                let client = pool.get().await?;
                let stmt = client.prepare_cached(TOUCH_DEVICE).await?;
                client.execute(&stmt, &[&key.0, &key.1, &now_ms(), &ip, &user_agent]).await?;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "recording device last-seen failed");
            }
        });
    }
}
