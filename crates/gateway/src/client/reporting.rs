//! Reporting content to the server's admins: an event, a room, a user.

use axum::Router;
use ruma::api::client::{
    reporting::report_user,
    room::{report_content, report_room},
};
use trellis_proto::rooms::{ReportEventRequest, ReportRoomRequest, ReportUserRequest};

use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(report_content_route).ruma(report_room_route).ruma(report_user_route)
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}`
async fn report_content_route(
    s: AppState,
    req: Ruma<report_content::v3::Request>,
) -> ApiResult<report_content::v3::Response> {
    let (reporter, req) = (req.user.user_id, req.body);
    let report = ReportEventRequest {
        reporter,
        room_id: req.room_id.to_string(),
        event_id: req.event_id.to_string(),
        reason: req.reason,
    };
    s.services.rooms.report_event(report).await?;
    Ok(report_content::v3::Response::new())
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/report`
async fn report_room_route(s: AppState, req: Ruma<report_room::v3::Request>) -> ApiResult<report_room::v3::Response> {
    let (reporter, req) = (req.user.user_id, req.body);
    let report = ReportRoomRequest { reporter, room_id: req.room_id.to_string(), reason: req.reason };
    s.services.rooms.report_room(report).await?;
    Ok(report_room::v3::Response::new())
}

/// # `POST /_matrix/client/v3/users/{userId}/report`
async fn report_user_route(s: AppState, req: Ruma<report_user::v3::Request>) -> ApiResult<report_user::v3::Response> {
    let (reporter, req) = (req.user.user_id, req.body);
    let report = ReportUserRequest { reporter, user_id: req.user_id.to_string(), reason: req.reason };
    s.services.rooms.report_user(report).await?;
    Ok(report_user::v3::Response::new())
}
