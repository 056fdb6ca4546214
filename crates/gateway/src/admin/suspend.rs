//! Account moderation for server admins: the client API's suspend and lock endpoints (spec
//! 1.18, `/_matrix/client/v1/admin/suspend|lock/{userId}`, and MSC4323's unstable paths) and
//! Synapse's `PUT /_synapse/admin/v1/suspend/{userId}`. The auth service keeps the flags and
//! their rules; this gateway forgets the user's remembered tokens at once, since a token's
//! validation carries the flags.

use axum::Router;
use ruma::api::client::admin::{is_user_locked, is_user_suspended, lock_user, suspend_user};
use trellis_proto::auth::{AdminModerateRequest, AdminModeration};

use super::ServerAdmin;
use crate::{AppState, client::forget_devices, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(is_user_suspended_route)
        .ruma(suspend_user_route)
        .ruma(is_user_locked_route)
        .ruma(lock_user_route)
        .ruma(synapse_suspend_route)
}

/// Asks the auth service to read (`None`s) or change the user's flags.
async fn moderate(
    s: &AppState,
    admin: String,
    user_id: String,
    suspended: Option<bool>,
    locked: Option<bool>,
) -> ApiResult<AdminModeration> {
    let ask = AdminModerateRequest { admin, user_id: user_id.clone(), suspended, locked, shadow_banned: None };
    let now = s.services.auth.admin_moderate(ask).await?;
    if suspended.is_some() || locked.is_some() {
        forget_devices(s, &user_id, |_| true);
    }
    Ok(now)
}

/// # `GET /_matrix/client/v1/admin/suspend/{userId}`
async fn is_user_suspended_route(
    s: AppState,
    req: Ruma<is_user_suspended::v1::Request, ServerAdmin>,
) -> ApiResult<is_user_suspended::v1::Response> {
    let now = moderate(&s, req.user.user_id, req.body.user_id.to_string(), None, None).await?;
    Ok(is_user_suspended::v1::Response::new(now.suspended))
}

/// # `PUT /_matrix/client/v1/admin/suspend/{userId}`
async fn suspend_user_route(
    s: AppState,
    req: Ruma<suspend_user::v1::Request, ServerAdmin>,
) -> ApiResult<suspend_user::v1::Response> {
    let (user_id, suspend) = (req.body.user_id.to_string(), req.body.suspended);
    let now = moderate(&s, req.user.user_id, user_id, Some(suspend), None).await?;
    Ok(suspend_user::v1::Response::new(now.suspended))
}

/// # `GET /_matrix/client/v1/admin/lock/{userId}`
async fn is_user_locked_route(
    s: AppState,
    req: Ruma<is_user_locked::v1::Request, ServerAdmin>,
) -> ApiResult<is_user_locked::v1::Response> {
    let now = moderate(&s, req.user.user_id, req.body.user_id.to_string(), None, None).await?;
    Ok(is_user_locked::v1::Response::new(now.locked))
}

/// # `PUT /_matrix/client/v1/admin/lock/{userId}`
async fn lock_user_route(
    s: AppState,
    req: Ruma<lock_user::v1::Request, ServerAdmin>,
) -> ApiResult<lock_user::v1::Response> {
    let (user_id, lock) = (req.body.user_id.to_string(), req.body.locked);
    let now = moderate(&s, req.user.user_id, user_id, None, Some(lock)).await?;
    Ok(lock_user::v1::Response::new(now.locked))
}

/// # `PUT /_synapse/admin/v1/suspend/{userId}`
///
/// Synapse's form: `{"suspend": bool}` in, `{"user_<userId>_suspended": bool}` out.
async fn synapse_suspend_route(
    s: AppState,
    req: Ruma<synapse_suspend::Request, ServerAdmin>,
) -> ApiResult<synapse_suspend::Response> {
    let user_id = req.body.user_id.to_string();
    let now = moderate(&s, req.user.user_id, user_id.clone(), Some(req.body.suspend), None).await?;
    Ok(synapse_suspend::Response { status: [(format!("user_{user_id}_suspended"), now.suspended)].into() })
}

/// Synapse's suspend endpoint (ruma has no types for Synapse's admin API).
pub mod synapse_suspend {
    use std::collections::BTreeMap;

    use ruma::{
        OwnedUserId,
        api::{auth_scheme::AccessToken, metadata, request, response},
    };

    metadata! { method: PUT, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v1/suspend/{user_id}" }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,
        pub suspend: bool,
    }

    #[response]
    pub struct Response {
        #[ruma_api(body)]
        pub status: BTreeMap<String, bool>,
    }
}
