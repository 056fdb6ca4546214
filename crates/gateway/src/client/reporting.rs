//! Reporting content to the server's admins: an event, a room, a user.

use axum::{Router, extract::State};
use ruma::api::client::{
    reporting::report_user,
    room::{report_content, report_room},
};
use trellis_proto::rooms::{ReportEventRequest, ReportRoomRequest, ReportUserRequest};

use crate::{
    AppState,
    extract::{Authed, Ruma},
    response::RumaResult,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<report_content::v3::Request, _, _>(report_event_route)
        .ruma::<report_room::v3::Request, _, _>(report_room_route)
        .ruma::<report_user::v3::Request, _, _>(report_user_route)
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}`
async fn report_event_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<report_content::v3::Request>,
) -> RumaResult<report_content::v3::Response> {
    let report = ReportEventRequest {
        reporter: auth.user_id,
        room_id: req.room_id.to_string(),
        event_id: req.event_id.to_string(),
        reason: req.reason,
    };
    s.services.rooms.report_event(report).await?;
    Ok(report_content::v3::Response::new().into())
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/report`
async fn report_room_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<report_room::v3::Request>,
) -> RumaResult<report_room::v3::Response> {
    let report = ReportRoomRequest { reporter: auth.user_id, room_id: req.room_id.to_string(), reason: req.reason };
    s.services.rooms.report_room(report).await?;
    Ok(report_room::v3::Response::new().into())
}

/// # `POST /_matrix/client/v3/users/{userId}/report`
async fn report_user_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<report_user::v3::Request>,
) -> RumaResult<report_user::v3::Response> {
    let report = ReportUserRequest { reporter: auth.user_id, user_id: req.user_id.to_string(), reason: req.reason };
    s.services.rooms.report_user(report).await?;
    Ok(report_user::v3::Response::new().into())
}
