//! Account moderation short of deactivation (spec 1.18 `/admin/suspend|lock/{userId}` and
//! Synapse's suspend API): an admin suspends an account (it may read but not act in rooms)
//! or locks it (its tokens stop working), and lifts either. The flags travel with every
//! token validation, so a change ends the validations remembered for the user's tokens.

use tracing::{info, instrument};
use trellis_core::{Error, Result};
use trellis_proto::auth::{AdminModerateRequest, AdminModeration};

use crate::{
    admin::{find_user, local_user, user_not_found},
    admin_write::audit,
    service::Auth,
};

const SET_FLAGS: &str = "UPDATE users SET suspended = COALESCE($2, suspended), locked = COALESCE($3, locked) \
                         WHERE user_id = $1 RETURNING suspended, locked";

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_admin_moderate(&self, req: AdminModerateRequest) -> Result<AdminModeration> {
        let changes = req.suspended.is_some() || req.locked.is_some();
        let outcome = self.moderate(&req).await;
        if !changes {
            return outcome;
        }
        let action = match (req.suspended, req.locked) {
            (Some(true), _) => "suspend",
            (Some(false), _) => "unsuspend",
            (None, Some(true)) => "lock",
            _ => "unlock",
        };
        audit(&req.admin, action, &req.user_id, outcome)
    }

    async fn moderate(&self, req: &AdminModerateRequest) -> Result<AdminModeration> {
        local_user(&req.user_id, &self.config.server_name)?;
        let client = self.pool.get().await?;
        // The spec: an unknown account and a deactivated one are both not found.
        let user = find_user(&client, &req.user_id).await?.filter(|u| !u.deactivated).ok_or_else(user_not_found)?;
        if req.suspended.is_none() && req.locked.is_none() {
            return Ok(AdminModeration { suspended: user.suspended, locked: user.locked });
        }
        if req.admin == req.user_id {
            return Err(Error::forbidden("You may not suspend or lock your own account"));
        }
        if user.admin {
            return Err(Error::forbidden("You may not suspend or lock another server admin"));
        }
        let row = client
            .query_one(&client.prepare_cached(SET_FLAGS).await?, &[&req.user_id, &req.suspended, &req.locked])
            .await?;
        let now = AdminModeration { suspended: row.get(0), locked: row.get(1) };
        if (now.suspended, now.locked) != (user.suspended, user.locked) {
            // Validations remembered here and by gateways carry the old flags: they end.
            self.forget_user_tokens(&req.user_id).await?;
            info!(user_id = %req.user_id, suspended = now.suspended, locked = now.locked, "account moderated");
        }
        Ok(now)
    }
}
