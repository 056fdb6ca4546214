//! Who sent a request: the [`Authed`] extractor, which validates the access token through the
//! auth service (or this gateway's short memory of validations, `tokens.rs`), retrying a
//! validation that could not reach the service.

use std::time::Duration;

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    http::{header, request::Parts},
};
use trellis_core::{Error, ErrorCode};
use trellis_proto::auth::{AuthenticateRequest, RatelimitOverride, Requester};

use crate::{
    AppState,
    error::ApiError,
    extract::{client_ip, user_agent},
};

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Authed {
    pub user_id: String,
    pub device_id: String,
    pub is_guest: bool,
    pub access_token: String,
    /// When the token stops working (ms since the epoch); `None`: never.
    pub expires_ts: Option<i64>,
    /// An admin suspended the account (as of the token's validation; a change of the flag
    /// ends remembered validations).
    pub suspended: bool,
    /// An admin shadow-banned the account: what it sends to others (events, invites,
    /// typing) is answered as if it succeeded and dropped (Synapse's shadow-ban; a made-up
    /// event ID where one is due, see `client::fake_event_id`).
    pub shadow_banned: bool,
    /// An admin's override of the account's rate limits (see `AppState::limit_user`).
    pub ratelimit_override: Option<RatelimitOverride>,
    /// The request came with this application service's `as_token` (then `device_id` is
    /// empty and `user_id` is its sender or the user named by `?user_id=`).
    pub appservice_id: Option<String>,
}

impl Authed {
    /// `M_USER_SUSPENDED` for a suspended account: for the actions the spec's account
    /// suspension recommends refusing (joining, knocking, inviting, sending, creating
    /// rooms, changing the profile, uploading media).
    pub fn not_suspended(&self) -> Result<(), ApiError> {
        if self.suspended { Err(ApiError(Error::suspended())) } else { Ok(()) }
    }
}

/// The access token of a request, if it carries one.
pub fn access_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_owned());
    }
    query_param(parts, "access_token")
}

fn query_param(parts: &Parts, name: &str) -> Option<String> {
    let query = parts.uri.query()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Authed, ApiError> {
        let token = access_token(parts).ok_or_else(|| Error::new(ErrorCode::MissingToken, "Missing access token"))?;
        // An application service acts as one of its users with `?user_id=`: remembered apart.
        let masquerade = query_param(parts, "user_id");
        let key = match &masquerade {
            Some(user) => format!("{token}\u{0}{user}"),
            None => token.clone(),
        };
        let cached = state.tokens.as_ref().and_then(|c| c.get(&key));
        let authed = match cached {
            Some(authed) => authed,
            None => {
                let validation = state.tokens.as_ref().map(|c| c.begin());
                let req = AuthenticateRequest {
                    access_token: token.clone(),
                    ip: client_ip(parts, state),
                    user_agent: user_agent(parts),
                    user_id: masquerade,
                };
                let requester = validate(state, req).await?;
                let authed = Authed {
                    user_id: requester.user_id,
                    device_id: requester.device_id,
                    is_guest: requester.is_guest,
                    access_token: token.clone(),
                    expires_ts: requester.expires_ts,
                    suspended: requester.suspended,
                    shadow_banned: requester.shadow_banned,
                    ratelimit_override: requester.ratelimit_override,
                    appservice_id: requester.appservice_id,
                };
                if let (Some(c), Some(since)) = (&state.tokens, validation) {
                    c.insert(key, authed.clone(), since);
                }
                authed
            }
        };
        tracing::Span::current().record("user_id", authed.user_id.as_str());
        if authed.is_guest {
            let route = parts.extensions.get::<axum::extract::MatchedPath>().map_or("", |m| m.as_str());
            if !crate::guest::allowed(&parts.method, route) {
                return Err(ApiError(Error::new(ErrorCode::GuestAccessForbidden, "Guest access not allowed")));
            }
        }
        Ok(authed)
    }
}

/// Waits before each new attempt of a token validation that could not reach the auth service.
const VALIDATION_RETRIES: [Duration; 3] = [Duration::ZERO, Duration::from_millis(100), Duration::from_millis(400)];

/// Asks the auth service whose token this is. A call that did not reach it (the auth replica
/// holding the connection died, or the connection is being made again) is tried again: the
/// next attempt connects afresh and, with several replicas, reaches one that is up. Validating
/// is safe to repeat; only when every attempt fails does the client get the 503.
async fn validate(state: &AppState, req: AuthenticateRequest) -> trellis_core::Result<Requester> {
    let mut waits = VALIDATION_RETRIES.iter();
    loop {
        match state.services.auth.authenticate(req.clone()).await {
            Err(e) if trellis_proto::status::is_unavailable(&e) => match waits.next() {
                Some(wait) => tokio::time::sleep(*wait).await,
                None => return Err(e),
            },
            answer => return answer,
        }
    }
}

/// For endpoints where authentication is optional (`room_summary`): no token is `None`; a
/// token that is not valid is still refused.
impl OptionalFromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Authed>, ApiError> {
        if access_token(parts).is_none() {
            return Ok(None);
        }
        <Authed as FromRequestParts<AppState>>::from_request_parts(parts, state).await.map(Some)
    }
}
