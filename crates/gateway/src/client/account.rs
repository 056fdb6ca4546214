//! Accounts and sessions: register (with user-interactive auth, and the r0-era one-shot
//! form), username availability, login, logout, whoami.

use axum::{Json, Router, extract::State, http::Uri};
use ruma::api::client::{
    account::{get_username_availability, register, whoami},
    session::{get_login_types, login, logout, logout_all},
    uiaa::UserIdentifier,
};
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_core::{Error, ratelimit::Action};
use trellis_proto::{
    auth::{CheckUsernameRequest, LoginRequest, LogoutRequest, RegisterRequest},
    sync::delete_device_pushers_request::Which,
};

use super::{
    devices::{delete_pushers, these},
    query,
};
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::{Authed, ClientIp, JsonObject, Origin, Ruma, from_object},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<register::v3::Request, _, _>(register_route)
        .ruma::<get_username_availability::v3::Request, _, _>(available_route)
        .ruma::<get_login_types::v3::Request, _, _>(login_types_route)
        .ruma::<login::v3::Request, _, _>(login_route)
        .ruma::<logout::v3::Request, _, _>(logout_route)
        .ruma::<logout_all::v3::Request, _, _>(logout_all_route)
        .ruma::<whoami::v3::Request, _, _>(whoami_route)
}

#[derive(Deserialize, Default)]
struct RegisterQuery {
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
struct RegisterBody {
    username: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
    auth: Option<Value>,
    /// Upgrading a guest account: the guest's access token.
    guest_access_token: Option<String>,
    /// The r0-era one-shot form: `{"user": ..., "password": ..., "type": "m.login.password"}`.
    user: Option<String>,
    #[serde(rename = "type")]
    login_type: Option<String>,
}

/// # `POST /_matrix/client/v3/register`
///
/// Counts against the registration rate limit only when it creates an account: the stages
/// of user-interactive auth before that, and replays of a completed session, are free (as
/// Synapse), so a script registering a few users never sees 429.
async fn register_route(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    origin: Origin,
    uri: Uri,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    s.limit_check_only(Action::Register, &ip).await?;
    let q: RegisterQuery = query(&uri)?;
    let guest = match q.kind.as_deref() {
        None | Some("user") => false,
        Some("guest") => true,
        Some(_) => return Err(ApiError(Error::invalid_param("kind must be user or guest"))),
    };
    let body: RegisterBody = from_object(body)?;
    let auth = match (body.auth, body.login_type.as_deref()) {
        (Some(auth), _) => auth.to_string(),
        // The oldest tutorial registers in one step, before user-interactive auth existed.
        (None, Some("m.login.password" | "m.login.dummy")) => json!({ "type": "m.login.dummy" }).to_string(),
        (None, _) => String::new(),
    };
    let resp = s
        .services
        .auth
        .register(RegisterRequest {
            username: body.username.or(body.user),
            password: body.password,
            device_id: body.device_id,
            initial_device_display_name: body.initial_device_display_name,
            inhibit_login: body.inhibit_login,
            guest,
            auth_json: auth,
            guest_access_token: body.guest_access_token,
            ip: origin.ip,
            user_agent: origin.user_agent,
        })
        .await?;
    if resp.created {
        // The account exists now: this counts, whatever the limiter says.
        let _ = s.limit(Action::Register, &ip).await;
    }
    let mut out = json!({ "user_id": resp.user_id, "home_server": s.settings.server_name });
    if let Some(token) = resp.access_token {
        out["access_token"] = json!(token);
    }
    if let Some(device) = resp.device_id {
        out["device_id"] = json!(device);
    }
    Ok(Json(out))
}

/// # `GET /_matrix/client/v3/register/available`
async fn available_route(
    State(s): State<AppState>,
    Ruma(req): Ruma<get_username_availability::v3::Request>,
) -> ApiResult<Json<Value>> {
    let resp = s.services.auth.check_username(CheckUsernameRequest { username: req.username }).await?;
    Ok(Json(json!({ "available": resp.available })))
}

/// # `GET /_matrix/client/v3/login`
async fn login_types_route() -> Json<Value> {
    Json(json!({ "flows": [{ "type": "m.login.password" }] }))
}

/// # `POST /_matrix/client/v3/login`
#[allow(deprecated)] // the `user` field is deprecated, and still sent by older clients
async fn login_route(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    origin: Origin,
    Ruma(req): Ruma<login::v3::Request>,
) -> ApiResult<Json<Value>> {
    s.limit(Action::Login, &ip).await?;
    let login::v3::LoginInfo::Password(password) = req.login_info else {
        return Err(ApiError(Error::new(trellis_core::ErrorCode::Unknown, "Unknown login type").with_status(400)));
    };
    let user = match (password.identifier, password.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user,
        (None, Some(user)) => user,
        (Some(_), _) => {
            return Err(ApiError(
                Error::new(trellis_core::ErrorCode::Unknown, "Unsupported identifier type").with_status(400),
            ));
        }
        (None, None) => return Err(ApiError(Error::missing_param("identifier is required"))),
    };
    let resp = s
        .services
        .auth
        .login(LoginRequest {
            user,
            password: password.password,
            device_id: req.device_id.map(|d| d.to_string()),
            initial_device_display_name: req.initial_device_display_name,
            ip: origin.ip,
            user_agent: origin.user_agent,
        })
        .await?;
    Ok(Json(json!({
        "user_id": resp.user_id,
        "access_token": resp.access_token,
        "device_id": resp.device_id,
        "home_server": s.settings.server_name,
    })))
}

/// # `POST /_matrix/client/v3/logout`
async fn logout_route(State(s): State<AppState>, auth: Authed) -> ApiResult<Json<Value>> {
    s.services.auth.logout(LogoutRequest { access_token: auth.access_token.clone(), all_devices: false }).await?;
    forget_tokens(&s, &auth, false);
    delete_pushers(&s, &auth.user_id, these(vec![auth.device_id])).await?;
    Ok(Json(json!({})))
}

/// # `POST /_matrix/client/v3/logout/all`
async fn logout_all_route(State(s): State<AppState>, auth: Authed) -> ApiResult<Json<Value>> {
    s.services.auth.logout(LogoutRequest { access_token: auth.access_token.clone(), all_devices: true }).await?;
    forget_tokens(&s, &auth, true);
    delete_pushers(&s, &auth.user_id, Which::All(true)).await?;
    Ok(Json(json!({})))
}

/// Drops this gateway's cached validations of the tokens a logout ended (after it committed).
fn forget_tokens(s: &AppState, auth: &Authed, all_devices: bool) {
    let Some(cache) = &s.tokens else { return };
    cache.forget(|a| a.user_id == auth.user_id && (all_devices || a.device_id == auth.device_id));
}

/// # `GET /_matrix/client/v3/account/whoami`
async fn whoami_route(auth: Authed) -> Json<Value> {
    Json(json!({ "user_id": auth.user_id, "device_id": auth.device_id, "is_guest": auth.is_guest }))
}
