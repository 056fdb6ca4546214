//! Sessions beyond a password login: refreshing an access token (spec 1.3), a login token
//! for signing in another device (`POST /login/get_token`, spec 1.7), and whether a
//! registration token is usable (spec 1.2).

use std::time::Duration;

use axum::Router;
use ruma::api::client::{
    account::check_registration_token_validity,
    session::{get_login_token, refresh_token},
};
use trellis_core::ratelimit::Action;
use trellis_proto::auth::{CreateLoginTokenRequest, RefreshRequest, RegistrationTokenRequest};

use crate::{
    AppState,
    adjust::Uia,
    error::ApiResult,
    extract::Ruma,
    router::{RumaRoutes, also_under, paths_of},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma_on(refresh_paths(), refresh_token_route)
        .ruma(get_login_token_route)
        .ruma(check_registration_token_validity_route)
}

/// `/refresh` on ruma's paths, and under r0 and v1 as well: Synapse serves it under r0 too,
/// and clients written against MSC2918's drafts call v1.
fn refresh_paths() -> Vec<String> {
    also_under(paths_of::<refresh_token::v3::Request>(), "/_matrix/client/", &["r0", "v1"])
}

/// # `POST /_matrix/client/v3/refresh`
///
/// Authenticated by the refresh token in the body, not an access token.
async fn refresh_token_route(
    s: AppState,
    req: Ruma<refresh_token::v3::Request>,
) -> ApiResult<refresh_token::v3::Response> {
    let refresh_token = req.body.refresh_token;
    let resp = s.services.auth.refresh(RefreshRequest { refresh_token }).await?;
    let mut out = refresh_token::v3::Response::new(resp.access_token);
    out.refresh_token = Some(resp.refresh_token);
    out.expires_in_ms = resp.expires_in_ms.map(ms);
    Ok(out)
}

/// # `POST /_matrix/client/v1/login/get_token`
///
/// Rate limited per user with the login rule (the spec asks for a strict limit here).
async fn get_login_token_route(
    s: AppState,
    req: Ruma<Uia<get_login_token::v1::Request>>,
) -> ApiResult<get_login_token::v1::Response> {
    s.limit_user(Action::Login, &req.user).await?;
    let create = CreateLoginTokenRequest { user_id: req.user.user_id.clone(), auth_json: req.body.auth_json() };
    let token = s.services.auth.create_login_token(create).await?;
    Ok(get_login_token::v1::Response::new(ms(token.expires_in_ms), token.login_token))
}

/// # `GET /_matrix/client/v1/register/m.login.registration_token/validity`
///
/// Rate limited per address with the login rule: guessing tokens is guessing credentials.
async fn check_registration_token_validity_route(
    s: AppState,
    req: Ruma<check_registration_token_validity::v1::Request>,
) -> ApiResult<check_registration_token_validity::v1::Response> {
    s.limit(Action::Login, &req.origin.ip_or_unknown()).await?;
    let token = req.body.token;
    let validity = s.services.auth.registration_token_validity(RegistrationTokenRequest { token }).await?;
    Ok(check_registration_token_validity::v1::Response::new(validity.valid))
}

/// A lifetime the auth service sent, in milliseconds.
pub(super) fn ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
