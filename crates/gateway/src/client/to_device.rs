//! Send-to-device messages: `PUT /sendToDevice/{eventType}/{txnId}`, delivered by `/sync`.

use axum::Router;
use ruma::api::client::to_device::send_event_to_device;
use trellis_proto::sync::SendToDeviceRequest;

use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(send_event_to_device_route)
}

/// # `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
async fn send_event_to_device_route(
    s: AppState,
    req: Ruma<send_event_to_device::v3::Request>,
) -> ApiResult<send_event_to_device::v3::Response> {
    let send = SendToDeviceRequest {
        user_id: req.user.user_id,
        device_id: req.user.device_id,
        event_type: req.body.event_type.to_string(),
        txn_id: req.body.txn_id.to_string(),
        messages_json: serde_json::to_string(&req.body.messages)?,
    };
    s.services.sync.send_to_device(send).await?;
    Ok(send_event_to_device::v3::Response::new())
}
