//! Presence.

use axum::{Json, Router, extract::State};
use ruma::api::client::presence::{get_presence, set_presence};
use serde_json::{Value, json};
use trellis_proto::sync::{GetPresenceRequest, SetPresenceRequest};

use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, Ruma},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<get_presence::v3::Request, _, _>(get_presence_route)
        .ruma::<set_presence::v3::Request, _, _>(set_presence_route)
}

/// # `GET /_matrix/client/v3/presence/{userId}/status`
async fn get_presence_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_presence::v3::Request>,
) -> ApiResult<Json<Value>> {
    let p = s
        .services
        .sync
        .get_presence(GetPresenceRequest { requester: auth.user_id, user_id: req.user_id.to_string() })
        .await?;
    let mut out = json!({ "presence": p.presence, "currently_active": p.currently_active });
    if let Some(ago) = p.last_active_ago {
        out["last_active_ago"] = json!(ago);
    }
    if let Some(msg) = p.status_msg {
        out["status_msg"] = json!(msg);
    }
    Ok(Json(out))
}

/// # `PUT /_matrix/client/v3/presence/{userId}/status`
async fn set_presence_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_presence::v3::Request>,
) -> ApiResult<Json<Value>> {
    s.services
        .sync
        .set_presence(SetPresenceRequest {
            requester: auth.user_id,
            user_id: req.user_id.to_string(),
            presence: req.presence.as_str().to_owned(),
            status_msg: req.status_msg,
            from_sync: false,
        })
        .await?;
    Ok(Json(json!({})))
}
