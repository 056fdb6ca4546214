//! Account moderation short of deactivation (spec 1.18 `/admin/suspend|lock/{userId}`,
//! Synapse's suspend, shadow-ban and `override_ratelimit` APIs): an admin suspends an account
//! (it may read but not act in rooms), locks it (its tokens stop working), shadow-bans it
//! (what it sends seems to succeed but reaches nobody) or sets its own rate limits, and lifts
//! any of them. All of these travel with every token validation, so a change ends the
//! validations remembered for the user's tokens.

use tracing::{info, instrument};
use trellis_core::{Error, Result};
use trellis_proto::auth::{
    AdminModerateRequest, AdminModeration, AdminSetRatelimitOverrideRequest, AdminUserRequest, RatelimitOverride,
    RatelimitOverrideAnswer,
};

use crate::{
    admin::{find_user, local_user, user_not_found},
    admin_write::audit,
    service::Auth,
};

const SET_FLAGS: &str = "UPDATE users SET suspended = COALESCE($2, suspended), locked = COALESCE($3, locked), \
                         shadow_banned = COALESCE($4, shadow_banned) \
                         WHERE user_id = $1 RETURNING suspended, locked, shadow_banned";
const SELECT_OVERRIDE: &str = "SELECT messages_per_second, burst_count FROM ratelimit_overrides WHERE user_id = $1";
const UPSERT_OVERRIDE: &str = "INSERT INTO ratelimit_overrides (user_id, messages_per_second, burst_count) \
                               VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE \
                               SET messages_per_second = $2, burst_count = $3";
const DELETE_OVERRIDE: &str = "DELETE FROM ratelimit_overrides WHERE user_id = $1";

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_admin_moderate(&self, req: AdminModerateRequest) -> Result<AdminModeration> {
        let outcome = self.moderate(&req).await;
        let action = match (req.suspended, req.locked, req.shadow_banned) {
            (Some(true), ..) => "suspend",
            (Some(false), ..) => "unsuspend",
            (None, Some(true), _) => "lock",
            (None, Some(false), _) => "unlock",
            (None, None, Some(true)) => "shadow_ban",
            (None, None, Some(false)) => "unshadow_ban",
            (None, None, None) => return outcome,
        };
        audit(&req.admin, action, &req.user_id, outcome)
    }

    async fn moderate(&self, req: &AdminModerateRequest) -> Result<AdminModeration> {
        local_user(&req.user_id, &self.config.server_name)?;
        let client = self.pool.get().await?;
        // The spec: an unknown account and a deactivated one are both not found.
        let user = find_user(&client, &req.user_id).await?.filter(|u| !u.deactivated).ok_or_else(user_not_found)?;
        let before =
            AdminModeration { suspended: user.suspended, locked: user.locked, shadow_banned: user.shadow_banned };
        if req.suspended.is_none() && req.locked.is_none() && req.shadow_banned.is_none() {
            return Ok(before);
        }
        // Synapse shadow-bans any local account; suspension and locking spare admins.
        if req.suspended.is_some() || req.locked.is_some() {
            if req.admin == req.user_id {
                return Err(Error::forbidden("You may not suspend or lock your own account"));
            }
            if user.admin {
                return Err(Error::forbidden("You may not suspend or lock another server admin"));
            }
        }
        let stmt = client.prepare_cached(SET_FLAGS).await?;
        let row = client.query_one(&stmt, &[&req.user_id, &req.suspended, &req.locked, &req.shadow_banned]).await?;
        let now = AdminModeration { suspended: row.get(0), locked: row.get(1), shadow_banned: row.get(2) };
        if now != before {
            // Validations remembered here and by gateways carry the old flags: they end.
            self.forget_user_tokens(&req.user_id).await?;
            info!(
                user_id = %req.user_id, suspended = now.suspended, locked = now.locked,
                shadow_banned = now.shadow_banned, "account moderated"
            );
        }
        Ok(now)
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_admin_get_ratelimit_override(
        &self,
        req: AdminUserRequest,
    ) -> Result<RatelimitOverrideAnswer> {
        local_user(&req.user_id, &self.config.server_name)?;
        let client = self.pool.get().await?;
        find_user(&client, &req.user_id).await?.ok_or_else(user_not_found)?;
        let row = client.query_opt(&client.prepare_cached(SELECT_OVERRIDE).await?, &[&req.user_id]).await?;
        let current = row.map(|row| RatelimitOverride { messages_per_second: row.get(0), burst_count: row.get(1) });
        Ok(RatelimitOverrideAnswer { r#override: current })
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_admin_set_ratelimit_override(
        &self,
        req: AdminSetRatelimitOverrideRequest,
    ) -> Result<RatelimitOverrideAnswer> {
        let action = if req.r#override.is_some() { "override_ratelimit" } else { "delete_ratelimit_override" };
        audit(&req.admin, action, &req.user_id, self.set_ratelimit_override(&req).await)
    }

    async fn set_ratelimit_override(&self, req: &AdminSetRatelimitOverrideRequest) -> Result<RatelimitOverrideAnswer> {
        local_user(&req.user_id, &self.config.server_name)?;
        if let Some(o) = &req.r#override
            && (o.messages_per_second < 0 || o.burst_count < 0)
        {
            return Err(Error::invalid_param("messages_per_second and burst_count must be positive integers"));
        }
        let client = self.pool.get().await?;
        find_user(&client, &req.user_id).await?.ok_or_else(user_not_found)?;
        match &req.r#override {
            Some(o) => {
                let stmt = client.prepare_cached(UPSERT_OVERRIDE).await?;
                client.execute(&stmt, &[&req.user_id, &o.messages_per_second, &o.burst_count]).await?;
            }
            None => {
                client.execute(&client.prepare_cached(DELETE_OVERRIDE).await?, &[&req.user_id]).await?;
            }
        }
        // Validations remembered here and by gateways carry the old limits: they end.
        self.forget_user_tokens(&req.user_id).await?;
        info!(user_id = %req.user_id, ratelimit_override = ?req.r#override, "rate-limit override changed");
        Ok(RatelimitOverrideAnswer { r#override: req.r#override })
    }
}
