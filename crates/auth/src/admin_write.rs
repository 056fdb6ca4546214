//! The operators' changes to accounts (admin API and CLI): create or modify a user (password,
//! profile, admin flag, deactivation, lock), deactivate, reset a password, delete devices,
//! and a token to act as a user. Every change is logged on `trellis::audit` with the acting
//! admin (`cli` at the command line), its target and its outcome.

use tracing::{info, instrument};
use trellis_core::{Error, Result, ids::validate_new_localpart, time::now_ms};
use trellis_proto::auth::{
    AdminDeactivateRequest, AdminDeleteDevicesRequest, AdminLoginAsRequest, AdminLoginAsResponse, AdminPutUserRequest,
    AdminPutUserResponse, AdminResetPasswordRequest, AuthAck,
};

use crate::{
    admin::{find_user, local_user, user_not_found},
    devices,
    login::{deactivated, new_device},
    new_login::NewLogin,
    password,
    service::Auth,
    store::{self, Field},
    token::{hash_token, new_access_token},
};

const SET_ADMIN: &str = "UPDATE users SET admin = $2 WHERE user_id = $1";
const SET_LOCKED: &str = "UPDATE users SET locked = $2 WHERE user_id = $1";
const REACTIVATE: &str = "UPDATE users SET deactivated = FALSE WHERE user_id = $1";
const USER_TOKENS: &str = "SELECT token_hash FROM access_tokens WHERE user_id = $1";

/// Who acted, for the audit log: an admin's user ID, or the operator at the command line.
fn actor(admin: &str) -> &str {
    if admin.is_empty() { "cli" } else { admin }
}

/// Logs an admin action and its outcome on `trellis::audit`, and passes the outcome on.
pub(crate) fn audit<T>(admin: &str, action: &str, target: &str, outcome: Result<T>) -> Result<T> {
    match &outcome {
        Ok(_) => info!(target: "trellis::audit", admin = actor(admin), action, target, outcome = "ok", "admin action"),
        Err(e) => info!(
            target: "trellis::audit", admin = actor(admin), action, target, outcome = "refused",
            errcode = e.code().as_str(), "admin action"
        ),
    }
    outcome
}

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_admin_put_user(&self, req: AdminPutUserRequest) -> Result<AdminPutUserResponse> {
        let (admin, target) = (req.admin.clone(), req.user_id.clone());
        audit(&admin, "put_user", &target, self.put_user(req).await)
    }

    async fn put_user(&self, req: AdminPutUserRequest) -> Result<AdminPutUserResponse> {
        local_user(&req.user_id, &self.config.server_name)?;
        if req.make_admin == Some(false) && req.admin == req.user_id {
            return Err(Error::invalid_param("You may not demote yourself."));
        }
        let new_password = match &req.password {
            Some(p) => Some(password::check_new(Some(p), self.config.min_password_len)?.to_owned()),
            None => None,
        };
        let existing = find_user(&self.pool.get().await?, &req.user_id).await?;
        let created = existing.is_none();
        let (mut deactivated_now, mut devices_logged_out) = (false, false);
        match existing {
            None => {
                let localpart = req.user_id[1..].split(':').next().unwrap_or_default().to_owned();
                validate_new_localpart(&localpart, &self.config.server_name)?;
                let hash = match new_password.clone() {
                    Some(p) => Some(password::hash(p).await?),
                    None => None,
                };
                let displayname = req.displayname.clone().unwrap_or(localpart);
                let client = self.pool.get().await?;
                store::create_user(&client, &req.user_id, hash.as_deref(), false, &displayname).await?;
                info!(user_id = %req.user_id, "account created by an admin");
            }
            Some(user) => {
                if user.deactivated && req.deactivated == Some(false) {
                    if new_password.is_none() {
                        return Err(Error::missing_param("Must provide a password to re-activate an account."));
                    }
                    let client = self.pool.get().await?;
                    client.execute(&client.prepare_cached(REACTIVATE).await?, &[&req.user_id]).await?;
                }
                if let Some(p) = new_password {
                    self.set_password(&req.user_id, p, req.logout_devices.then_some(None)).await?;
                    devices_logged_out = req.logout_devices;
                }
                if let Some(name) = &req.displayname {
                    store::set_profile_field(&self.pool.get().await?, &req.user_id, Field::Displayname, Some(name))
                        .await?;
                }
                if req.deactivated == Some(true) && !user.deactivated {
                    self.deactivate_account(&req.user_id, false).await?;
                    deactivated_now = true;
                }
            }
        }
        let client = self.pool.get().await?;
        if let Some(url) = &req.avatar_url {
            store::set_profile_field(&client, &req.user_id, Field::AvatarUrl, Some(url)).await?;
        }
        if let Some(admin) = req.make_admin {
            client.execute(&client.prepare_cached(SET_ADMIN).await?, &[&req.user_id, &admin]).await?;
        }
        if let Some(locked) = req.locked {
            client.execute(&client.prepare_cached(SET_LOCKED).await?, &[&req.user_id, &locked]).await?;
            if locked {
                self.forget_user_tokens(&req.user_id).await?;
            }
        }
        let user = find_user(&client, &req.user_id).await?.ok_or_else(user_not_found)?;
        Ok(AdminPutUserResponse { user: Some(user), created, deactivated_now, devices_logged_out })
    }

    /// Validations of the user's tokens remembered here and by gateways end (a lock takes
    /// effect at once).
    pub(crate) async fn forget_user_tokens(&self, user_id: &str) -> Result<()> {
        let client = self.pool.get().await?;
        let revoked = store::hashes(client.query(&client.prepare_cached(USER_TOKENS).await?, &[&user_id]).await?)?;
        self.removed(user_id, devices::Removed { revoked, change: None }).await;
        Ok(())
    }

    /// The user must exist and be local.
    async fn existing(&self, user_id: &str) -> Result<()> {
        local_user(user_id, &self.config.server_name)?;
        if !store::user_exists(&self.pool.get().await?, user_id).await? {
            return Err(user_not_found());
        }
        Ok(())
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_admin_deactivate(&self, req: AdminDeactivateRequest) -> Result<AuthAck> {
        let outcome = async {
            self.existing(&req.user_id).await?;
            self.deactivate_account(&req.user_id, req.erase).await
        };
        audit(&req.admin, "deactivate", &req.user_id, outcome.await).map(|()| AuthAck {})
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_admin_reset_password(&self, req: AdminResetPasswordRequest) -> Result<AuthAck> {
        let outcome = async {
            self.existing(&req.user_id).await?;
            let new = password::check_new(Some(&req.new_password), self.config.min_password_len)?.to_owned();
            self.set_password(&req.user_id, new, req.logout_devices.then_some(None)).await
        };
        audit(&req.admin, "reset_password", &req.user_id, outcome.await).map(|()| AuthAck {})
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_admin_delete_devices(&self, req: AdminDeleteDevicesRequest) -> Result<AuthAck> {
        let outcome = async {
            self.existing(&req.user_id).await?;
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let removed = devices::delete_devices(&tx, &req.user_id, &req.device_ids).await?;
            tx.commit().await?;
            self.removed(&req.user_id, removed).await;
            Ok(())
        };
        let target = format!("{} {:?}", req.user_id, req.device_ids);
        audit(&req.admin, "delete_devices", &target, outcome.await).map(|()| AuthAck {})
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_admin_login_as(&self, req: AdminLoginAsRequest) -> Result<AdminLoginAsResponse> {
        let outcome = async {
            if req.admin == req.user_id {
                return Err(Error::invalid_param("Cannot use admin API to login as self"));
            }
            local_user(&req.user_id, &self.config.server_name)?;
            let user = find_user(&self.pool.get().await?, &req.user_id).await?.ok_or_else(user_not_found)?;
            if req.valid_until_ms.is_some_and(|at| at <= now_ms()) {
                return Err(Error::invalid_param("valid_until_ms must be in the future"));
            }
            if user.deactivated {
                return Err(deactivated());
            }
            // Tokens belong to devices here, so the admin's session is a device of its own,
            // named after who opened it (the user sees it in their device list).
            let login =
                NewLogin { display_name: Some(format!("admin login by {}", actor(&req.admin))), ..NewLogin::default() };
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let device_id = new_device(&tx, &req.user_id, &login).await?;
            // A new device, as a login makes one: the user's device list changed.
            let device_list_pos = crate::keys::changes::record(&tx, &req.user_id).await?;
            let access_token = new_access_token();
            store::insert_token(&tx, &hash_token(&access_token), &req.user_id, &device_id, req.valid_until_ms, None)
                .await?;
            tx.commit().await?;
            self.announce_device_list(&req.user_id, device_list_pos).await;
            Ok(AdminLoginAsResponse { access_token })
        };
        audit(&req.admin, "login_as", &req.user_id, outcome.await)
    }
}
