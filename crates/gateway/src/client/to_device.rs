//! Send-to-device messages: `PUT /sendToDevice/{eventType}/{txnId}`, delivered by `/sync`.

use axum::{Json, Router, extract::State};
use ruma::api::client::to_device::send_event_to_device;
use serde_json::{Value, json};
use trellis_proto::sync::SendToDeviceRequest;

use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, Ruma},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new().ruma::<send_event_to_device::v3::Request, _, _>(send_route)
}

/// # `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
async fn send_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<send_event_to_device::v3::Request>,
) -> ApiResult<Json<Value>> {
    let send = SendToDeviceRequest {
        user_id: auth.user_id,
        device_id: auth.device_id,
        event_type: req.event_type.to_string(),
        txn_id: req.txn_id.to_string(),
        messages_json: serde_json::to_string(&req.messages)?,
    };
    s.services.sync.send_to_device(send).await?;
    Ok(Json(json!({})))
}
