//! The operators' admin API under `/_synapse/admin/...`, in Synapse's paths and shapes so
//! that existing tools (synapse-admin, moderation bots, scripts) work unchanged (the list is
//! in `docs/admin.md`). Every endpoint but the server version is for server admins only:
//! [`ServerAdmin`] asks the auth service before the handler runs, and every request is
//! written to the audit log (`trellis::audit`) with who asked, what and the outcome.

mod api;
mod api_rooms;
mod api_tokens;
mod background;
mod media;
mod media_api;
mod moderation;
mod notices;
mod reports;
mod rooms;
mod suspend;
mod tokens;
mod users;

/// Synapse checks `new_password` by hand (`M_MISSING_PARAM`): see `extract::missing_param`.
pub(crate) use api::reset_password::Request as ResetPasswordRequest;

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    extract::{FromRequestParts, MatchedPath, RawPathParams, Request},
    http::{StatusCode, request::Parts},
    middleware::{self, Next},
    response::Response,
};
use trellis_proto::auth::RequireAdminRequest;

use crate::{
    AppState,
    error::ApiError,
    extract::{Auth, Authed},
    response::Reply,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(users::routes())
        .merge(tokens::routes())
        .merge(suspend::routes())
        .merge(moderation::routes())
        .merge(media::routes())
        .merge(notices::routes())
        .merge(rooms::routes())
        .merge(reports::routes())
        .merge(background::routes())
        .route_layer(middleware::from_fn(audit))
}

/// Synapse's offset paging, shared by the admin lists: `limit` when none is given.
const DEFAULT_LIMIT: i64 = 100;

/// `dir` as Synapse reads it: `f` or `b` (`default` when absent); whether it is `b`.
fn backwards(dir: Option<&str>, default: bool) -> Result<bool, ApiError> {
    match dir {
        None => Ok(default),
        Some("f") => Ok(false),
        Some("b") => Ok(true),
        Some(_) => Err(trellis_core::Error::invalid_param("Unknown direction: dir must be 'f' or 'b'").into()),
    }
}

/// The `from` of the page after `limit` items from `from`, out of `total`; none after the last.
fn next_from(from: i64, limit: i64, total: i64) -> Option<i64> {
    (from + limit < total).then_some(from + limit)
}

/// `user_id` as a string, once the auth service knows it as a local account (`M_INVALID_PARAM`,
/// `M_NOT_FOUND` otherwise).
async fn existing_user(s: &AppState, user_id: &ruma::UserId) -> Result<String, ApiError> {
    let user_id = user_id.to_string();
    s.services.auth.admin_get_user(trellis_proto::auth::AdminUserRequest { user_id: user_id.clone() }).await?;
    Ok(user_id)
}

/// The authentication of admin endpoints: a valid access token of a server admin (the
/// auth service decides; anyone else gets 403 `M_FORBIDDEN`).
pub struct ServerAdmin;

impl Auth for ServerAdmin {
    type Requester = Authed;

    async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Authed, ApiError> {
        let authed = <Authed as FromRequestParts<AppState>>::from_request_parts(parts, state).await?;
        if let Some(slot) = parts.extensions.get::<Actor>() {
            *slot.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(authed.user_id.clone());
        }
        state.services.auth.require_admin(RequireAdminRequest { user_id: authed.user_id.clone() }).await?;
        Ok(authed)
    }
}

/// Who made an admin request, once [`ServerAdmin`] has seen the token, for the audit line.
#[derive(Clone, Default)]
struct Actor(Arc<Mutex<Option<String>>>);

/// One audit line per admin request: the requester (or `anonymous`), the route, its target
/// (the path's parameters) and the outcome (the status).
async fn audit(mut req: Request, next: Next) -> Response {
    let actor = Actor::default();
    req.extensions_mut().insert(actor.clone());
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let (mut parts, body) = req.into_parts();
    let target = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(params) => params.iter().map(|(_, v)| v.to_owned()).collect::<Vec<_>>().join(" "),
        Err(_) => String::new(),
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    let admin = actor.0.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_else(|| "anonymous".to_owned());
    let status = response.status().as_u16();
    let outcome = if response.status().is_success() { "ok" } else { "refused" };
    tracing::info!(target: "trellis::audit", admin, action = %format!("{method} {route}"), target, outcome, status, "admin request");
    response
}

/// An answer with another status than its endpoint's (201 for an account created by `PUT`).
pub struct WithStatus<R>(pub StatusCode, pub R);

impl<T, R: Reply<T>> Reply<T> for WithStatus<R> {
    fn into_answer(self) -> Response {
        let mut response = self.1.into_answer();
        if response.status().is_success() {
            *response.status_mut() = self.0;
        }
        response
    }
}
