//! Presence.

use std::time::Duration;

use axum::Router;
use ruma::{
    api::client::presence::{get_presence, set_presence},
    presence::PresenceState,
};
use trellis_proto::sync::{GetPresenceRequest, SetPresenceRequest};

use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(get_presence_route).ruma(set_presence_route)
}

/// # `GET /_matrix/client/v3/presence/{userId}/status`
async fn get_presence_route(
    s: AppState,
    req: Ruma<get_presence::v3::Request>,
) -> ApiResult<get_presence::v3::Response> {
    let ask = GetPresenceRequest { requester: req.user.user_id, user_id: req.body.user_id.to_string() };
    let p = s.services.sync.get_presence(ask).await?;
    let mut out = get_presence::v3::Response::new(PresenceState::from(p.presence.as_str()));
    out.currently_active = Some(p.currently_active);
    out.last_active_ago = p.last_active_ago.map(Duration::from_millis);
    out.status_msg = p.status_msg;
    Ok(out)
}

/// # `PUT /_matrix/client/v3/presence/{userId}/status`
async fn set_presence_route(
    s: AppState,
    req: Ruma<set_presence::v3::Request>,
) -> ApiResult<set_presence::v3::Response> {
    let body = req.body;
    s.services
        .sync
        .set_presence(SetPresenceRequest {
            requester: req.user.user_id,
            user_id: body.user_id.to_string(),
            presence: body.presence.as_str().to_owned(),
            status_msg: body.status_msg,
            from_sync: false,
        })
        .await?;
    Ok(set_presence::v3::Response::new())
}
