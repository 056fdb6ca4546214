//! Typing notifications, read receipts and read markers.

use std::time::Duration;

use axum::Router;
use ruma::{
    api::client::{
        read_marker::set_read_marker,
        receipt::create_receipt::{self, v3::ReceiptType},
        typing::create_typing_event::{self, v3::Typing},
    },
    events::receipt::ReceiptThread,
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
    let receipt_type = match &body.receipt_type {
        ReceiptType::Read => "m.read".to_owned(),
        ReceiptType::ReadPrivate => "m.read.private".to_owned(),
        ReceiptType::FullyRead => "m.fully_read".to_owned(),
        other => other.to_string(),
    };
    let thread_id = match body.thread {
        ReceiptThread::Unthreaded => None,
        ReceiptThread::Main => Some("main".to_owned()),
        ReceiptThread::Thread(root) => Some(root.to_string()),
        other => Some(other.as_str().unwrap_or_default().to_owned()),
    };
    s.services
        .sync
        .post_receipt(PostReceiptRequest {
            user_id: req.user.user_id,
            room_id: body.room_id.to_string(),
            receipt_type,
            event_id: body.event_id.to_string(),
            thread_id,
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
