//! Synapse's shadow-ban and rate-limit override admin API
//! (`/_synapse/admin/v1/users/{userId}/shadow_ban|override_ratelimit`). The auth service
//! keeps both (they travel with each token validation); this gateway forgets the user's
//! remembered tokens at once after a change, as for suspension.

use axum::Router;
use trellis_core::Error;
use trellis_proto::auth::{
    AdminModerateRequest, AdminSetRatelimitOverrideRequest, AdminUserRequest, RatelimitOverride,
};

use super::ServerAdmin;
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
async fn shadow_ban(s: &AppState, admin: String, user_id: String, on: bool) -> ApiResult<()> {
    let ask = AdminModerateRequest { admin, user_id: user_id.clone(), shadow_banned: Some(on), ..Default::default() };
    s.services.auth.admin_moderate(ask).await?;
    forget_devices(s, &user_id, |_| true);
    Ok(())
}

/// # `POST /_synapse/admin/v1/users/{userId}/shadow_ban`
async fn shadow_ban_route(s: AppState, req: Ruma<shadow_ban::Request, ServerAdmin>) -> ApiResult<shadow_ban::Response> {
    shadow_ban(&s, req.user.user_id, req.body.user_id.to_string(), true).await?;
    Ok(shadow_ban::Response {})
}

/// # `DELETE /_synapse/admin/v1/users/{userId}/shadow_ban`
async fn unshadow_ban_route(
    s: AppState,
    req: Ruma<unshadow_ban::Request, ServerAdmin>,
) -> ApiResult<unshadow_ban::Response> {
    shadow_ban(&s, req.user.user_id, req.body.user_id.to_string(), false).await?;
    Ok(unshadow_ban::Response {})
}

fn limits(o: Option<RatelimitOverride>) -> ratelimit::Limits {
    ratelimit::Limits { messages_per_second: o.map(|o| o.messages_per_second), burst_count: o.map(|o| o.burst_count) }
}

/// # `GET /_synapse/admin/v1/users/{userId}/override_ratelimit`: `{}` when there is none.
async fn get_ratelimit_route(
    s: AppState,
    req: Ruma<ratelimit::get::Request, ServerAdmin>,
) -> ApiResult<ratelimit::get::Response> {
    let ask = AdminUserRequest { user_id: req.body.user_id.to_string() };
    let now = s.services.auth.admin_get_ratelimit_override(ask).await?;
    Ok(ratelimit::get::Response { limits: limits(now.r#override) })
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
async fn set(s: &AppState, admin: String, user_id: String, to: Option<RatelimitOverride>) -> ApiResult<()> {
    let ask = AdminSetRatelimitOverrideRequest { admin, user_id: user_id.clone(), r#override: to };
    s.services.auth.admin_set_ratelimit_override(ask).await?;
    forget_devices(s, &user_id, |_| true);
    Ok(())
}

/// # `POST /_synapse/admin/v1/users/{userId}/override_ratelimit`: 0 and 0 exempt the user.
async fn set_ratelimit_route(
    s: AppState,
    req: Ruma<ratelimit::set::Request, ServerAdmin>,
) -> ApiResult<ratelimit::set::Response> {
    req.json_object()?;
    let body = req.body;
    let to = RatelimitOverride {
        messages_per_second: count("messages_per_second", body.messages_per_second)?,
        burst_count: count("burst_count", body.burst_count)?,
    };
    set(&s, req.user.user_id, body.user_id.to_string(), Some(to)).await?;
    Ok(ratelimit::set::Response { messages_per_second: to.messages_per_second, burst_count: to.burst_count })
}

/// # `DELETE /_synapse/admin/v1/users/{userId}/override_ratelimit`
async fn delete_ratelimit_route(
    s: AppState,
    req: Ruma<ratelimit::delete::Request, ServerAdmin>,
) -> ApiResult<ratelimit::delete::Response> {
    set(&s, req.user.user_id, req.body.user_id.to_string(), None).await?;
    Ok(ratelimit::delete::Response {})
}

/// Synapse's shadow-ban endpoints (ruma has no types for Synapse's admin API).
pub mod shadow_ban {
    use ruma::{
        OwnedUserId,
        api::{auth_scheme::AccessToken, metadata, request, response},
    };

    metadata! { method: POST, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v1/users/{user_id}/shadow_ban" }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,
    }

    #[response]
    pub struct Response {}
}

pub mod unshadow_ban {
    use ruma::{
        OwnedUserId,
        api::{auth_scheme::AccessToken, metadata, request, response},
    };

    metadata! { method: DELETE, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v1/users/{user_id}/shadow_ban" }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,
    }

    #[response]
    pub struct Response {}
}

/// Synapse's `override_ratelimit` endpoints.
pub mod ratelimit {
    use serde::{Deserialize, Serialize};

    /// The override as `GET` shows it: both fields, or none when the user has no override.
    #[derive(Clone, Debug, Default, Serialize, Deserialize)]
    pub struct Limits {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub messages_per_second: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub burst_count: Option<i64>,
    }

    pub mod get {
        use ruma::{
            OwnedUserId,
            api::{auth_scheme::AccessToken, metadata, request, response},
        };

        metadata! {
            method: GET, rate_limited: false, authentication: AccessToken,
            path: "/_synapse/admin/v1/users/{user_id}/override_ratelimit"
        }

        #[request]
        pub struct Request {
            #[ruma_api(path)]
            pub user_id: OwnedUserId,
        }

        #[response]
        pub struct Response {
            #[ruma_api(body)]
            pub limits: super::Limits,
        }
    }

    pub mod set {
        use ruma::{
            OwnedUserId,
            api::{auth_scheme::AccessToken, metadata, request, response},
        };

        metadata! {
            method: POST, rate_limited: false, authentication: AccessToken,
            path: "/_synapse/admin/v1/users/{user_id}/override_ratelimit"
        }

        /// Each count is checked by hand (Synapse answers `M_INVALID_PARAM` for a value
        /// that is not a whole number of at least 0, whatever its JSON type).
        #[request]
        pub struct Request {
            #[ruma_api(path)]
            pub user_id: OwnedUserId,
            #[serde(default)]
            pub messages_per_second: Option<serde_json::Value>,
            #[serde(default)]
            pub burst_count: Option<serde_json::Value>,
        }

        #[response]
        pub struct Response {
            pub messages_per_second: i64,
            pub burst_count: i64,
        }
    }

    pub mod delete {
        use ruma::{
            OwnedUserId,
            api::{auth_scheme::AccessToken, metadata, request, response},
        };

        metadata! {
            method: DELETE, rate_limited: false, authentication: AccessToken,
            path: "/_synapse/admin/v1/users/{user_id}/override_ratelimit"
        }

        #[request]
        pub struct Request {
            #[ruma_api(path)]
            pub user_id: OwnedUserId,
        }

        #[response]
        pub struct Response {}
    }
}
