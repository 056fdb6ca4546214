//! Account management behind user-interactive auth: password change (optionally logging
//! out every other device) and deactivation (no more logins; devices, tokens and key backups
//! removed; leaving the rooms is the rooms service's part, called by the gateway).

use tracing::{info, instrument};
use trellis_core::Result;
use trellis_proto::auth::{AuthAck, ChangePasswordRequest, DeactivateRequest};

use crate::{backup_store, devices, openid, password, service::Auth};

const SET_PASSWORD: &str = "UPDATE users SET password_hash = $2 WHERE user_id = $1";
const DEACTIVATE: &str = "UPDATE users SET deactivated = TRUE, erased = erased OR $2 WHERE user_id = $1";
const DELETE_USER_UIA: &str = "DELETE FROM uia_sessions WHERE user_id = $1";

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id, logout_devices = req.logout_devices))]
    pub(crate) async fn do_change_password(&self, req: ChangePasswordRequest) -> Result<AuthAck> {
        // A weak new password is refused before the client is asked for the old one.
        let new = password::check_new(Some(&req.new_password), self.config.min_password_len)?.to_owned();
        self.require_uia(&req.user_id, "change_password", None, &req.auth_json).await?;
        let hash = password::hash(new).await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(&tx.prepare_cached(SET_PASSWORD).await?, &[&req.user_id, &hash]).await?;
        let removed = if req.logout_devices {
            Some(devices::delete_all_devices(&tx, &req.user_id, Some(&req.device_id)).await?)
        } else {
            None
        };
        tx.commit().await?;
        let tokens = removed.as_ref().map_or(0, |r| r.revoked.len());
        if let Some(removed) = removed {
            self.removed(&req.user_id, removed).await;
        }
        info!(user_id = %req.user_id, tokens, "password changed");
        Ok(AuthAck {})
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_deactivate(&self, req: DeactivateRequest) -> Result<AuthAck> {
        self.require_uia(&req.user_id, "deactivate", None, &req.auth_json).await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(&tx.prepare_cached(DEACTIVATE).await?, &[&req.user_id, &req.erase]).await?;
        let removed = devices::delete_all_devices(&tx, &req.user_id, None).await?;
        tx.execute(&tx.prepare_cached(DELETE_USER_UIA).await?, &[&req.user_id]).await?;
        backup_store::delete_all(&tx, &req.user_id).await?;
        openid::delete_user_tokens(&tx, &req.user_id).await?;
        tx.commit().await?;
        let tokens = removed.revoked.len();
        self.removed(&req.user_id, removed).await;
        info!(user_id = %req.user_id, tokens, erase = req.erase, "account deactivated");
        Ok(AuthAck {})
    }
}
