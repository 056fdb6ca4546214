//! OpenID: a signed-in user asks for a token (`/user/{userId}/openid/request_token`) that a
//! third party (a widget, Element Call) exchanges at the federation endpoint
//! `/openid/userinfo` for the user's ID. That endpoint is served here, on the client listener,
//! as Synapse does. And `GET /admin/whois/{userId}`: a user's devices and their last
//! connection.

use std::time::Duration;

use axum::{Router, extract::State, http::Uri};
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName, UInt, UserId,
    api::{
        client::{
            account::request_openid_token,
            admin::get_user_info::v3::{self as whois, ConnectionInfo, DeviceInfo, SessionInfo},
        },
        federation::openid::get_openid_userinfo,
    },
    authentication::TokenType,
};
use serde::Deserialize;
use trellis_core::{Error, ErrorCode};
use trellis_proto::auth::{OpenidTokenRequest, OpenidUserinfoRequest, WhoisRequest};

use super::query;
use crate::{
    AppState,
    extract::{Authed, Ruma},
    response::RumaResult,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<request_openid_token::v3::Request, _, _>(request_token_route)
        .ruma::<get_openid_userinfo::v1::Request, _, _>(userinfo_route)
        .ruma::<whois::Request, _, _>(whois_route)
}

/// # `POST /_matrix/client/v3/user/{userId}/openid/request_token`
async fn request_token_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<request_openid_token::v3::Request>,
) -> RumaResult<request_openid_token::v3::Response> {
    let token = s
        .services
        .auth
        .request_openid_token(OpenidTokenRequest { requester: auth.user_id, user_id: req.user_id.to_string() })
        .await?;
    let server: OwnedServerName = s.settings.server_name.as_str().try_into().map_err(Error::internal)?;
    let expires_in = Duration::from_secs(token.expires_in_secs.try_into().unwrap_or_default());
    Ok(request_openid_token::v3::Response::new(token.access_token, TokenType::Bearer, server, expires_in).into())
}

#[derive(Deserialize)]
struct UserinfoQuery {
    access_token: Option<String>,
}

/// # `GET /_matrix/federation/v1/openid/userinfo`
///
/// The token is a query parameter; without one the answer is 401 `M_MISSING_TOKEN` (ruma's
/// parser would make it a 400), as Synapse answers.
async fn userinfo_route(State(s): State<AppState>, uri: Uri) -> RumaResult<get_openid_userinfo::v1::Response> {
    let q: UserinfoQuery = query(&uri)?;
    let access_token = q.access_token.ok_or_else(|| Error::new(ErrorCode::MissingToken, "Access Token required"))?;
    let info = s.services.auth.openid_userinfo(OpenidUserinfoRequest { access_token }).await?;
    let sub = UserId::parse(&info.user_id).map_err(Error::internal)?;
    Ok(get_openid_userinfo::v1::Response::new(sub).into())
}

/// # `GET /_matrix/client/v3/admin/whois/{userId}`
///
/// Each device is one session with one connection: its last recorded request.
async fn whois_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<whois::Request>,
) -> RumaResult<whois::Response> {
    let found =
        s.services.auth.whois(WhoisRequest { requester: auth.user_id, user_id: req.user_id.to_string() }).await?;
    let mut out = whois::Response::new();
    out.user_id = Some(req.user_id);
    for device in found.devices {
        let mut connection = ConnectionInfo::new();
        if let Some(last) = device.last {
            connection.ip = last.ip;
            connection.user_agent = last.user_agent;
            connection.last_seen =
                last.last_seen_ts.and_then(|ts| UInt::try_from(ts).ok()).map(MilliSecondsSinceUnixEpoch);
        }
        let mut session = SessionInfo::new();
        session.connections.push(connection);
        let mut info = DeviceInfo::new();
        info.sessions.push(session);
        out.devices.insert(device.device_id, info);
    }
    Ok(out.into())
}
