//! Typing notifications, read receipts and read markers.

use std::time::Duration;

use axum::Router;
use ruma::api::client::{
    read_marker::set_read_marker,
    receipt::create_receipt,
    typing::create_typing_event::{self, v3::Typing},
};
use serde_json::{Map, Value};
use trellis_proto::sync::{PostReceiptRequest, ReadMarkersRequest, SetTypingRequest};

use crate::{
    AppState,
    adjust::{Adjusted, Adjustment},
    error::ApiResult,
    extract::Ruma,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(create_typing_event_route).ruma(create_receipt_route).ruma(set_read_marker_route)
}

/// How long typing lasts when the client gives no timeout.
const DEFAULT_TYPING_TIMEOUT_MS: u64 = 30_000;

/// A typing notice without `timeout` lasts the default: the spec makes it optional, and
/// clients leave it out, but ruma's type requires it with `"typing": true`.
struct DefaultTimeout;

impl Adjustment for DefaultTimeout {
    type Kept = ();

    fn adjust(body: &mut Map<String, Value>) -> serde_json::Result<()> {
        if body.get("timeout").is_none_or(Value::is_null) {
            body.insert("timeout".to_owned(), DEFAULT_TYPING_TIMEOUT_MS.into());
        }
        Ok(())
    }
}

/// # `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`
async fn create_typing_event_route(
    s: AppState,
    req: Ruma<Adjusted<create_typing_event::v3::Request, DefaultTimeout>>,
) -> ApiResult<create_typing_event::v3::Response> {
    let body = req.body.request;
    let (typing, timeout) = match body.state {
        Typing::Yes(info) => (true, info.timeout),
        _ => (false, Duration::from_millis(DEFAULT_TYPING_TIMEOUT_MS)),
    };
    if req.user.shadow_banned && body.user_id.as_str() == req.user.user_id {
        // Shadow-banned: nobody sees the user typing.
        return Ok(create_typing_event::v3::Response::new());
    }
    s.services
        .sync
        .set_typing(SetTypingRequest {
            requester: req.user.user_id,
            user_id: body.user_id.to_string(),
            room_id: body.room_id.to_string(),
            typing,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })
        .await?;
    Ok(create_typing_event::v3::Response::new())
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
async fn create_receipt_route(
    s: AppState,
    req: Ruma<create_receipt::v3::Request>,
) -> ApiResult<create_receipt::v3::Response> {
    let body = req.body;
    s.services
        .sync
        .post_receipt(PostReceiptRequest {
            user_id: req.user.user_id,
            room_id: body.room_id.to_string(),
            // ruma's spelling of both is the spec's: `m.read`, `m.read.private`, ...; no
            // thread for an unthreaded receipt, `main` or the root's event ID otherwise.
            receipt_type: body.receipt_type.to_string(),
            event_id: body.event_id.to_string(),
            thread_id: body.thread.as_str().map(str::to_owned),
        })
        .await?;
    Ok(create_receipt::v3::Response::new())
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/read_markers`
async fn set_read_marker_route(
    s: AppState,
    req: Ruma<set_read_marker::v3::Request>,
) -> ApiResult<set_read_marker::v3::Response> {
    let body = req.body;
    s.services
        .sync
        .set_read_markers(ReadMarkersRequest {
            user_id: req.user.user_id,
            room_id: body.room_id.to_string(),
            fully_read: body.fully_read.map(|e| e.to_string()),
            read: body.read_receipt.map(|e| e.to_string()),
            read_private: body.private_read_receipt.map(|e| e.to_string()),
        })
        .await?;
    Ok(set_read_marker::v3::Response::new())
}
