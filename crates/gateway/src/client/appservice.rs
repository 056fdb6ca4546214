//! Application services checking their link to the homeserver:
//! `POST /_matrix/client/v1/appservice/{appserviceId}/ping` (spec 1.7), answered by the rooms
//! service, which calls the appservice back.

use std::time::Duration;

use axum::Router;
use ruma::api::client::appservice::request_ping;
use trellis_proto::rooms::PingAppserviceRequest;

use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(request_ping_route)
}

/// # `POST /_matrix/client/v1/appservice/{appserviceId}/ping`
async fn request_ping_route(
    s: AppState,
    req: Ruma<request_ping::v1::Request>,
) -> ApiResult<request_ping::v1::Response> {
    let ping = PingAppserviceRequest {
        requester_appservice_id: req.user.appservice_id.unwrap_or_default(),
        appservice_id: req.body.appservice_id,
        transaction_id: req.body.transaction_id.map(|t| t.to_string()),
    };
    let answer = s.services.rooms.ping_appservice(ping).await?;
    Ok(request_ping::v1::Response::new(Duration::from_millis(answer.duration_ms.max(0) as u64)))
}
