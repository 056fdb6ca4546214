//! Admin API handlers for registration tokens (`/_synapse/admin/v1/registration_tokens`):
//! the auth service's registration token operations, which the CLI uses too.

use axum::Router;
use trellis_proto::auth::{
    CreateRegistrationTokenRequest, ListRegistrationTokensRequest, RegistrationToken, RegistrationTokenRequest,
    UpdateRegistrationTokenRequest,
};

use super::{
    ServerAdmin,
    api_tokens::{self as api, Token},
};
use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(list_route).ruma(create_route).ruma(get_route).ruma(update_route).ruma(delete_route)
}

fn token(t: RegistrationToken) -> Token {
    Token {
        token: t.token,
        uses_allowed: t.uses_allowed,
        pending: t.pending,
        completed: t.completed,
        expiry_time: t.expiry_time,
    }
}

/// # `GET /_synapse/admin/v1/registration_tokens`
async fn list_route(s: AppState, req: Ruma<api::list::Request, ServerAdmin>) -> ApiResult<api::list::Response> {
    let found =
        s.services.auth.list_registration_tokens(ListRegistrationTokensRequest { valid: req.body.valid }).await?;
    Ok(api::list::Response { registration_tokens: found.tokens.into_iter().map(token).collect() })
}

/// # `POST /_synapse/admin/v1/registration_tokens/new`
async fn create_route(s: AppState, req: Ruma<api::create::Request, ServerAdmin>) -> ApiResult<api::create::Response> {
    let b = req.body;
    let create = CreateRegistrationTokenRequest {
        token: b.token,
        length: b.length,
        uses_allowed: b.uses_allowed,
        expiry_time: b.expiry_time,
    };
    Ok(api::create::Response { token: token(s.services.auth.create_registration_token(create).await?) })
}

/// # `GET /_synapse/admin/v1/registration_tokens/{token}`
async fn get_route(s: AppState, req: Ruma<api::get::Request, ServerAdmin>) -> ApiResult<api::get::Response> {
    let found = s.services.auth.get_registration_token(RegistrationTokenRequest { token: req.body.token }).await?;
    Ok(api::get::Response { token: token(found) })
}

/// # `PUT /_synapse/admin/v1/registration_tokens/{token}`
///
/// A field left out stays as it is; `null` means unlimited uses, or no expiry.
async fn update_route(s: AppState, req: Ruma<api::update::Request, ServerAdmin>) -> ApiResult<api::update::Response> {
    let b = req.body;
    let update = UpdateRegistrationTokenRequest {
        token: b.token,
        set_uses_allowed: !b.uses_allowed.is_undefined(),
        uses_allowed: b.uses_allowed.into_option(),
        set_expiry_time: !b.expiry_time.is_undefined(),
        expiry_time: b.expiry_time.into_option(),
    };
    Ok(api::update::Response { token: token(s.services.auth.update_registration_token(update).await?) })
}

/// # `DELETE /_synapse/admin/v1/registration_tokens/{token}`
async fn delete_route(s: AppState, req: Ruma<api::delete::Request, ServerAdmin>) -> ApiResult<api::delete::Response> {
    s.services.auth.delete_registration_token(RegistrationTokenRequest { token: req.body.token }).await?;
    Ok(api::delete::Response {})
}
