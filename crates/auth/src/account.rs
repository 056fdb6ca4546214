//! Account management behind user-interactive auth: password change (optionally logging
//! out every other device) and deactivation (no more logins; devices, tokens and key backups
//! removed; then the rooms service has the account leave its rooms, `rooms.rs`).

use tracing::{info, instrument};
use trellis_core::Result;
use trellis_proto::auth::{AuthAck, ChangePasswordRequest, DeactivateRequest, ThreepidUnbindResult};

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
        self.set_password(&req.user_id, new, req.logout_devices.then_some(Some(req.device_id.as_str()))).await?;
        Ok(AuthAck {})
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_deactivate(&self, req: DeactivateRequest) -> Result<ThreepidUnbindResult> {
        let by_appservice = req.appservice_id.as_deref().and_then(|id| self.appservices.by_id(id));
        if !by_appservice.is_some_and(|a| a.is_interested_in_user(&req.user_id)) {
            self.require_uia(&req.user_id, "deactivate", None, &req.auth_json).await?;
        }
        let unbound = self.deactivate_account_unbinding(&req.user_id, req.erase).await?;
        Ok(crate::threepid::unbind_result(unbound))
    }

    /// Sets a (checked) new password; with `logout` every device but the one named (all of
    /// them for `Some(None)`) is removed with its tokens.
    pub(crate) async fn set_password(&self, user_id: &str, new: String, logout: Option<Option<&str>>) -> Result<()> {
        let hash = password::hash(new).await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(&tx.prepare_cached(SET_PASSWORD).await?, &[&user_id, &hash]).await?;
        let removed = match logout {
            Some(except) => Some(devices::delete_all_devices(&tx, user_id, except).await?),
            None => None,
        };
        tx.commit().await?;
        let tokens = removed.as_ref().map_or(0, |r| r.revoked.len());
        if let Some(removed) = removed {
            self.removed(user_id, removed).await;
        }
        info!(user_id = %user_id, tokens, "password changed");
        Ok(())
    }

    /// No more logins; every device, token, UIA session, key backup and OpenID token of the
    /// user removed, then every room left (through the rooms service).
    /// The account's 3PIDs go too, and are unbound from the identity servers they were bound
    /// on through this server (`unbound`: whether every one of those answered).
    pub(crate) async fn deactivate_account(&self, user_id: &str, erase: bool) -> Result<()> {
        self.deactivate_account_unbinding(user_id, erase).await.map(|_| ())
    }

    /// [`Auth::deactivate_account`], saying whether the identity servers unbound everything.
    pub(crate) async fn deactivate_account_unbinding(&self, user_id: &str, erase: bool) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(&tx.prepare_cached(DEACTIVATE).await?, &[&user_id, &erase]).await?;
        let removed = devices::delete_all_devices(&tx, user_id, None).await?;
        tx.execute(&tx.prepare_cached(DELETE_USER_UIA).await?, &[&user_id]).await?;
        backup_store::delete_all(&tx, user_id).await?;
        openid::delete_user_tokens(&tx, user_id).await?;
        crate::threepid::store::delete_all(&tx, user_id).await?;
        tx.commit().await?;
        let tokens = removed.revoked.len();
        self.removed(user_id, removed).await;
        let unbound = self.unbind_everywhere(user_id).await?;
        info!(user_id = %user_id, tokens, erase, "account deactivated");
        self.leave_all_rooms(user_id).await?;
        Ok(unbound)
    }
}
