//! OpenID: a signed-in user asks for a token (`/user/{userId}/openid/request_token`) that a
//! third party (a widget, Element Call) exchanges at the federation endpoint
//! `/openid/userinfo` for the user's ID. That endpoint is served here, on the client listener,
//! as Synapse does. And `GET /admin/whois/{userId}`: a user's devices and their last
//! connection.

use std::time::Duration;

use axum::{Router, extract::State, http::Uri, response::Response};
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
use crate::{AppState, error::ApiResult, extract::Ruma, response::Reply, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(request_openid_token_route)
        .ruma(get_user_info_route)
        .json_endpoint::<get_openid_userinfo::v1::Request, _, _>(get_openid_userinfo_route)
}

/// # `POST /_matrix/client/v3/user/{userId}/openid/request_token`
async fn request_openid_token_route(
    s: AppState,
    req: Ruma<request_openid_token::v3::Request>,
) -> ApiResult<request_openid_token::v3::Response> {
    let ask = OpenidTokenRequest { requester: req.user.user_id, user_id: req.body.user_id.to_string() };
    let token = s.services.auth.request_openid_token(ask).await?;
    let server: OwnedServerName = s.settings.server_name.as_str().try_into().map_err(Error::internal)?;
    let expires_in = Duration::from_secs(token.expires_in_secs.try_into().unwrap_or_default());
    Ok(request_openid_token::v3::Response::new(token.access_token, TokenType::Bearer, server, expires_in))
}

#[derive(Deserialize)]
struct UserinfoQuery {
    access_token: Option<String>,
}

/// # `GET /_matrix/federation/v1/openid/userinfo`
///
/// The token is a query parameter; without one the answer is 401 `M_MISSING_TOKEN` (ruma's
/// parser would make it a 400), as Synapse answers: the query is read here for that.
async fn get_openid_userinfo_route(State(s): State<AppState>, uri: Uri) -> ApiResult<Response> {
    let q: UserinfoQuery = query(&uri)?;
    let access_token = q.access_token.ok_or_else(|| Error::new(ErrorCode::MissingToken, "Access Token required"))?;
    let info = s.services.auth.openid_userinfo(OpenidUserinfoRequest { access_token }).await?;
    let sub = UserId::parse(&info.user_id).map_err(Error::internal)?;
    Ok(get_openid_userinfo::v1::Response::new(sub).into_answer())
}

/// # `GET /_matrix/client/v3/admin/whois/{userId}`
///
/// Each device is one session with one connection: its last recorded request.
async fn get_user_info_route(s: AppState, req: Ruma<whois::Request>) -> ApiResult<whois::Response> {
    let (requester, req) = (req.user.user_id, req.body);
    let found = s.services.auth.whois(WhoisRequest { requester, user_id: req.user_id.to_string() }).await?;
    Ok(whois_response(req.user_id, found))
}

/// A whois answer (also the admin API's `/_synapse/admin/v1/whois/{userId}`).
pub(crate) fn whois_response(user_id: ruma::OwnedUserId, found: trellis_proto::auth::WhoisResponse) -> whois::Response {
    let mut out = whois::Response::new();
    out.user_id = Some(user_id);
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
    out
}
