//! Accounts and sessions: register (with user-interactive auth, and the r0-era one-shot
//! form), username availability, login, logout, whoami.

use axum::Router;
use ruma::{
    OwnedDeviceId, OwnedUserId,
    api::client::{
        account::{
            get_username_availability,
            register::{self, RegistrationKind},
            whoami,
        },
        session::{
            get_login_types::{
                self,
                v3::{LoginType, TokenLoginType},
            },
            login, logout, logout_all,
        },
        uiaa::UserIdentifier,
    },
};
use serde::Serialize;
use trellis_core::{Error, ErrorCode, ratelimit::Action};
use trellis_proto::{
    auth::{CheckUsernameRequest, LoginRequest, LogoutRequest, RegisterRequest},
    sync::delete_device_pushers_request::Which,
};

use super::{
    devices::{devices_removed, these},
    stored_id,
};
use crate::{
    AppState,
    adjust::{Adjusted, LoginTypeNamed, Uia},
    error::{ApiError, ApiResult},
    extract::Ruma,
    response::Rendered,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(register_route)
        .ruma(get_username_availability_route)
        .ruma(get_login_types_route)
        .ruma(login_route)
        .ruma(logout_route)
        .ruma(logout_all_route)
        .ruma(whoami_route)
}

/// # `POST /_matrix/client/v3/register`
///
/// Counts against the registration rate limit only when it creates an account: the stages
/// of user-interactive auth before that, and replays of a completed session, are free (as
/// Synapse), so a script registering a few users never sees 429.
async fn register_route(
    s: AppState,
    req: Ruma<Uia<register::v3::Request>>,
) -> ApiResult<Rendered<register::v3::Response>> {
    let ip = req.origin.ip_or_unknown();
    s.limit_check_only(Action::Register, &ip).await?;
    let guest = match req.body.request.kind {
        RegistrationKind::User => false,
        RegistrationKind::Guest => true,
        _ => return Err(ApiError(Error::invalid_param("kind must be user or guest"))),
    };
    // The oldest tutorial registers in one step, before user-interactive auth existed:
    // `{"user": ..., "password": ..., "type": "m.login.password"}` (see the README).
    let one_shot_type = req.body.request.login_type.as_ref().map(|t| t.as_str().to_owned());
    let auth = match (req.body.auth_json(), one_shot_type.as_deref()) {
        (auth, _) if !auth.is_empty() => auth,
        (_, Some("m.login.password" | "m.login.dummy")) => r#"{"type":"m.login.dummy"}"#.to_owned(),
        (none, _) => none,
    };
    let one_shot_user = || req.json_object().ok()?.remove("user")?.as_str().map(str::to_owned);
    let body = &req.body.request;
    let resp = s
        .services
        .auth
        .register(RegisterRequest {
            username: body.username.clone().or_else(one_shot_user),
            password: body.password.clone(),
            device_id: body.device_id.as_ref().map(|d| d.to_string()),
            initial_device_display_name: body.initial_device_display_name.clone(),
            inhibit_login: body.inhibit_login,
            guest,
            auth_json: auth,
            guest_access_token: body.guest_access_token.clone(),
            refresh_token: body.refresh_token,
            appservice_token: match one_shot_type.as_deref() {
                Some("m.login.application_service") => {
                    Some(req.user.clone().ok_or_else(|| Error::new(ErrorCode::MissingToken, "Missing access token"))?)
                }
                _ => None,
            },
            ip: req.origin.ip.clone(),
            user_agent: req.origin.user_agent.clone(),
        })
        .await?;
    // The account exists now: this counts, whatever the limiter says; an appservice's
    // puppets do not count against the address (as Synapse).
    if resp.created && one_shot_type.as_deref() != Some("m.login.application_service") {
        let _ = s.limit(Action::Register, &ip).await;
    }
    // Synapse's shape: without a login (`inhibit_login`) it leaves `device_id` out, where
    // ruma's type sends `null`; and it still sends `home_server`, which r0-era clients read.
    #[derive(Serialize)]
    struct Registered {
        user_id: OwnedUserId,
        home_server: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        access_token: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        device_id: Option<OwnedDeviceId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        refresh_token: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_in_ms: Option<i64>,
    }
    Rendered::shaped(&Registered {
        user_id: stored_id(resp.user_id)?,
        home_server: s.settings.server_name.clone(),
        access_token: resp.access_token,
        device_id: resp.device_id.map(Into::into),
        refresh_token: resp.refresh_token,
        expires_in_ms: resp.expires_in_ms,
    })
}

/// # `GET /_matrix/client/v3/register/available`
async fn get_username_availability_route(
    s: AppState,
    req: Ruma<get_username_availability::v3::Request>,
) -> ApiResult<get_username_availability::v3::Response> {
    let username = req.body.username;
    let resp = s.services.auth.check_username(CheckUsernameRequest { username }).await?;
    Ok(get_username_availability::v3::Response::new(resp.available))
}

/// # `GET /_matrix/client/v3/login`
///
/// `m.login.token` with `get_login_token: true` when `POST /login/get_token` is offered
/// (spec 1.7: how a client that is not signed in learns of it); `m.login.sso` with the
/// identity providers, and `m.login.token` for their login tokens, when any is configured. No `m.login.password` when
/// the OAuth 2.0 API replaces it (`oauth.enabled` with `oauth.password_login = false`).
async fn get_login_types_route(
    s: AppState,
    _: Ruma<get_login_types::v3::Request>,
) -> ApiResult<Rendered<get_login_types::v3::Response>> {
    let mut types = Vec::new();
    if !s.settings.oauth_enabled || s.settings.oauth_password_login {
        types.push(LoginType::Password(Default::default()));
    }
    types.push(LoginType::ApplicationService(Default::default()));
    let sso = !s.settings.sso_providers.is_empty();
    if sso {
        types.push(LoginType::Sso(crate::sso::login_type(&s.settings.sso_providers)));
    }
    if s.settings.cas_enabled {
        types.push(crate::sso_cas::login_type()?);
    }
    if s.settings.login_token_enabled || sso {
        let mut token = TokenLoginType::new();
        token.get_login_token = s.settings.login_token_enabled;
        types.push(LoginType::Token(token));
    }
    crate::sso::without_nulls(get_login_types::v3::Response::new(types))
}

/// # `POST /_matrix/client/v3/login`
#[allow(deprecated)] // the `user` field and `home_server` are deprecated, and still used by older clients
async fn login_route(
    s: AppState,
    req: Ruma<Adjusted<login::v3::Request, LoginTypeNamed>>,
) -> ApiResult<login::v3::Response> {
    s.limit(Action::Login, &req.origin.ip_or_unknown()).await?;
    let (origin, token) = (req.origin, req.user);
    let req = req.body.request;
    let mut login = LoginRequest {
        device_id: req.device_id.map(|d| d.to_string()),
        initial_device_display_name: req.initial_device_display_name,
        ip: origin.ip,
        user_agent: origin.user_agent,
        refresh_token: req.refresh_token,
        ..LoginRequest::default()
    };
    match req.login_info {
        login::v3::LoginInfo::Password(password) => {
            match (password.identifier, password.medium, password.address) {
                // An email (`m.id.thirdparty`), or the r0.3 `medium` and `address`.
                (Some(UserIdentifier::Email(email)), _, _) => {
                    (login.medium, login.address) = (Some("email".to_owned()), Some(email.address));
                }
                (None, Some(medium), Some(address)) if password.user.is_none() => {
                    (login.medium, login.address) = (Some(medium.to_string()), Some(address));
                }
                (identifier, _, _) => login.user = named_user(identifier, password.user)?,
            }
            login.password = password.password;
        }
        login::v3::LoginInfo::Token(token) => login.login_token = Some(token.token),
        login::v3::LoginInfo::ApplicationService(appservice) => {
            login.user = named_user(appservice.identifier, appservice.user)?;
            login.appservice_token =
                Some(token.ok_or_else(|| Error::new(ErrorCode::MissingToken, "Missing access token"))?);
        }
        _ => return Err(ApiError(Error::new(ErrorCode::Unknown, "Unknown login type").with_status(400))),
    }
    let resp = s.services.auth.login(login).await?;
    let mut out = login::v3::Response::new(stored_id(resp.user_id)?, resp.access_token, resp.device_id.into());
    out.home_server = Some(stored_id(s.settings.server_name.clone())?);
    out.refresh_token = resp.refresh_token;
    out.expires_in = resp.expires_in_ms.map(super::session::ms);
    Ok(out)
}

/// The user a login names: `identifier` of type `m.id.user`, or the deprecated `user`.
fn named_user(identifier: Option<UserIdentifier>, user: Option<String>) -> Result<String, ApiError> {
    match (identifier, user) {
        (Some(UserIdentifier::Matrix(id)), _) => Ok(id.user),
        (None, Some(user)) => Ok(user),
        (Some(_), _) => Err(ApiError(Error::new(ErrorCode::Unknown, "Unsupported identifier type").with_status(400))),
        (None, None) => Err(ApiError(Error::missing_param("identifier is required"))),
    }
}

/// # `POST /_matrix/client/v3/logout`
async fn logout_route(s: AppState, req: Ruma<logout::v3::Request>) -> ApiResult<logout::v3::Response> {
    let auth = req.user;
    s.services.auth.logout(LogoutRequest { access_token: auth.access_token, all_devices: false }).await?;
    devices_removed(&s, &auth.user_id, these(vec![auth.device_id])).await?;
    Ok(logout::v3::Response::new())
}

/// # `POST /_matrix/client/v3/logout/all`
async fn logout_all_route(s: AppState, req: Ruma<logout_all::v3::Request>) -> ApiResult<logout_all::v3::Response> {
    let auth = req.user;
    s.services.auth.logout(LogoutRequest { access_token: auth.access_token, all_devices: true }).await?;
    devices_removed(&s, &auth.user_id, Which::All(true)).await?;
    Ok(logout_all::v3::Response::new())
}

/// # `GET /_matrix/client/v3/account/whoami`
///
/// Synapse always sends `is_guest` (clients and our tests read `false` as a key); ruma's type
/// leaves a `false` out.
async fn whoami_route(_: AppState, req: Ruma<whoami::v3::Request>) -> ApiResult<Rendered<whoami::v3::Response>> {
    #[derive(Serialize)]
    struct WhoAmI<'a> {
        user_id: &'a str,
        device_id: &'a str,
        is_guest: bool,
    }
    let auth = &req.user;
    Rendered::shaped(&WhoAmI { user_id: &auth.user_id, device_id: &auth.device_id, is_guest: auth.is_guest })
}
