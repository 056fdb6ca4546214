//! Typing notifications, read receipts and read markers.

use axum::{
    Json, Router,
    extract::{RawPathParams, State},
    routing::put,
};
use ruma::{
    api::{
        Metadata,
        client::{
            read_marker::set_read_marker,
            receipt::create_receipt::{self, v3::ReceiptType},
            typing::create_typing_event,
        },
        path_builder::PathBuilder,
    },
    events::receipt::ReceiptThread,
};
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_proto::sync::{PostReceiptRequest, ReadMarkersRequest, SetTypingRequest};

use super::param;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, JsonObject, Ruma, from_object},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    // The typing body is parsed here: `timeout` is optional in the spec, not in ruma's type.
    for path in create_typing_event::v3::Request::PATH_BUILDER.all_paths() {
        router = router.route(path, put(typing_route));
    }
    router
        .ruma::<create_receipt::v3::Request, _, _>(receipt_route)
        .ruma::<set_read_marker::v3::Request, _, _>(read_markers_route)
}

#[derive(Deserialize)]
struct TypingBody {
    typing: bool,
    timeout: Option<u64>,
}

/// How long typing lasts when the client gives no timeout.
const DEFAULT_TYPING_TIMEOUT_MS: u64 = 30_000;

/// # `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`
async fn typing_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let body: TypingBody = from_object(body)?;
    s.services
        .sync
        .set_typing(SetTypingRequest {
            requester: auth.user_id,
            user_id: param(&params, "user_id")?,
            room_id: param(&params, "room_id")?,
            typing: body.typing,
            timeout_ms: body.timeout.unwrap_or(DEFAULT_TYPING_TIMEOUT_MS),
        })
        .await?;
    Ok(Json(json!({})))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
async fn receipt_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<create_receipt::v3::Request>,
) -> ApiResult<Json<Value>> {
    let receipt_type = match &req.receipt_type {
        ReceiptType::Read => "m.read".to_owned(),
        ReceiptType::ReadPrivate => "m.read.private".to_owned(),
        ReceiptType::FullyRead => "m.fully_read".to_owned(),
        other => other.to_string(),
    };
    let thread_id = match req.thread {
        ReceiptThread::Unthreaded => None,
        ReceiptThread::Main => Some("main".to_owned()),
        ReceiptThread::Thread(root) => Some(root.to_string()),
        other => Some(other.as_str().unwrap_or_default().to_owned()),
    };
    s.services
        .sync
        .post_receipt(PostReceiptRequest {
            user_id: auth.user_id,
            room_id: req.room_id.to_string(),
            receipt_type,
            event_id: req.event_id.to_string(),
            thread_id,
        })
        .await?;
    Ok(Json(json!({})))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/read_markers`
async fn read_markers_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_read_marker::v3::Request>,
) -> ApiResult<Json<Value>> {
    s.services
        .sync
        .set_read_markers(ReadMarkersRequest {
            user_id: auth.user_id,
            room_id: req.room_id.to_string(),
            fully_read: req.fully_read.map(|e| e.to_string()),
            read: req.read_receipt.map(|e| e.to_string()),
            read_private: req.private_read_receipt.map(|e| e.to_string()),
        })
        .await?;
    Ok(Json(json!({})))
}
