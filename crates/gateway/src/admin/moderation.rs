//! Synapse's shadow-ban and rate-limit override admin API
//! (`/_synapse/admin/v1/users/{userId}/shadow_ban|override_ratelimit`). The auth service
//! keeps both (they travel with each token validation); this gateway forgets the user's
//! remembered tokens at once after a change, as for suspension.

use axum::Router;
use trellis_core::Error;
use trellis_proto::auth::{
    AdminModerateRequest, AdminSetRatelimitOverrideRequest, AdminUserRequest, RatelimitOverride,
};

use super::{
    ServerAdmin,
    api::{delete_ratelimit, get_ratelimit, set_ratelimit, shadow_ban, unshadow_ban},
};
use crate::{AppState, client::forget_devices, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(shadow_ban_route)
        .ruma(unshadow_ban_route)
        .ruma(get_ratelimit_route)
        .ruma(set_ratelimit_route)
        .ruma(delete_ratelimit_route)
}

/// Shadow-bans `user_id` or lifts it.
async fn set_shadow_ban(s: &AppState, admin: String, user_id: String, on: bool) -> ApiResult<()> {
    let ask = AdminModerateRequest { admin, user_id: user_id.clone(), shadow_banned: Some(on), ..Default::default() };
    s.services.auth.admin_moderate(ask).await?;
    forget_devices(s, &user_id, |_| true);
    Ok(())
}

/// # `POST /_synapse/admin/v1/users/{userId}/shadow_ban`
async fn shadow_ban_route(s: AppState, req: Ruma<shadow_ban::Request, ServerAdmin>) -> ApiResult<shadow_ban::Response> {
    set_shadow_ban(&s, req.user.user_id, req.body.user_id.to_string(), true).await?;
    Ok(shadow_ban::Response {})
}

/// # `DELETE /_synapse/admin/v1/users/{userId}/shadow_ban`
async fn unshadow_ban_route(
    s: AppState,
    req: Ruma<unshadow_ban::Request, ServerAdmin>,
) -> ApiResult<unshadow_ban::Response> {
    set_shadow_ban(&s, req.user.user_id, req.body.user_id.to_string(), false).await?;
    Ok(unshadow_ban::Response {})
}

/// # `GET /_synapse/admin/v1/users/{userId}/override_ratelimit`: `{}` when there is none.
async fn get_ratelimit_route(
    s: AppState,
    req: Ruma<get_ratelimit::Request, ServerAdmin>,
) -> ApiResult<get_ratelimit::Response> {
    let ask = AdminUserRequest { user_id: req.body.user_id.to_string() };
    let now = s.services.auth.admin_get_ratelimit_override(ask).await?.r#override;
    Ok(get_ratelimit::Response {
        messages_per_second: now.map(|o| o.messages_per_second),
        burst_count: now.map(|o| o.burst_count),
    })
}

/// A count as Synapse takes it: a whole number of at least 0; absent: 0.
fn count(name: &str, value: Option<serde_json::Value>) -> Result<i64, Error> {
    match value {
        None => Ok(0),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::invalid_param(format!("{name} must be a positive integer"))),
    }
}

/// Sets (`Some`) or removes the override, then forgets the user's remembered tokens.
async fn set_override(s: &AppState, admin: String, user_id: String, to: Option<RatelimitOverride>) -> ApiResult<()> {
    let ask = AdminSetRatelimitOverrideRequest { admin, user_id: user_id.clone(), r#override: to };
    s.services.auth.admin_set_ratelimit_override(ask).await?;
    forget_devices(s, &user_id, |_| true);
    Ok(())
}

/// # `POST /_synapse/admin/v1/users/{userId}/override_ratelimit`: 0 and 0 exempt the user.
async fn set_ratelimit_route(
    s: AppState,
    req: Ruma<set_ratelimit::Request, ServerAdmin>,
) -> ApiResult<set_ratelimit::Response> {
    req.json_object()?;
    let body = req.body;
    let to = RatelimitOverride {
        messages_per_second: count("messages_per_second", body.messages_per_second)?,
        burst_count: count("burst_count", body.burst_count)?,
    };
    set_override(&s, req.user.user_id, body.user_id.to_string(), Some(to)).await?;
    Ok(set_ratelimit::Response { messages_per_second: to.messages_per_second, burst_count: to.burst_count })
}

/// # `DELETE /_synapse/admin/v1/users/{userId}/override_ratelimit`
async fn delete_ratelimit_route(
    s: AppState,
    req: Ruma<delete_ratelimit::Request, ServerAdmin>,
) -> ApiResult<delete_ratelimit::Response> {
    set_override(&s, req.user.user_id, req.body.user_id.to_string(), None).await?;
    Ok(delete_ratelimit::Response {})
}
