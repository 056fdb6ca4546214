//! Server notices (Synapse's `POST /_synapse/admin/v1/send_server_notice`): an admin's
//! message to a user, sent by the configured system user in the user's notices room. One
//! call: the rooms service does the whole of it (`trellis admin notice send` makes the same).

use axum::Router;
use ruma::{
    OwnedUserId,
    api::{auth_scheme::AccessToken, metadata, request, response},
};
use trellis_proto::rooms::ServerNoticeRequest;

use super::ServerAdmin;
use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(send_server_notice_route).ruma(send_server_notice_txn_route)
}

/// The body both forms take.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Notice {
    pub user_id: OwnedUserId,
    pub content: serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "type", default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub state_key: Option<String>,
}

pub mod send_notice {
    use super::*;

    metadata! { method: POST, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v1/send_server_notice" }

    #[request]
    pub struct Request {
        #[ruma_api(body)]
        pub notice: Notice,
    }

    #[response]
    pub struct Response {
        pub event_id: String,
    }
}

pub mod send_notice_txn {
    use super::*;

    metadata! {
        method: PUT, rate_limited: false, authentication: AccessToken,
        path: "/_synapse/admin/v1/send_server_notice/{txn_id}"
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub txn_id: String,
        #[ruma_api(body)]
        pub notice: Notice,
    }

    #[response]
    pub struct Response {
        pub event_id: String,
    }
}

/// Sends the notice through the rooms service (the whole operation); its event ID.
async fn send(s: &AppState, admin: String, notice: Notice, txn_id: Option<String>) -> ApiResult<String> {
    let ask = ServerNoticeRequest {
        admin,
        user_id: notice.user_id.to_string(),
        event_type: notice.event_type.unwrap_or_else(|| "m.room.message".to_owned()),
        state_key: notice.state_key,
        content_json: serde_json::Value::Object(notice.content).to_string(),
        txn_id,
    };
    Ok(s.services.rooms.send_server_notice(ask).await?.event_id)
}

/// # `POST /_synapse/admin/v1/send_server_notice`
async fn send_server_notice_route(
    s: AppState,
    req: Ruma<send_notice::Request, ServerAdmin>,
) -> ApiResult<send_notice::Response> {
    let event_id = send(&s, req.user.user_id, req.body.notice, None).await?;
    Ok(send_notice::Response { event_id })
}

/// # `PUT /_synapse/admin/v1/send_server_notice/{txnId}`: a repeat answers the same event.
async fn send_server_notice_txn_route(
    s: AppState,
    req: Ruma<send_notice_txn::Request, ServerAdmin>,
) -> ApiResult<send_notice_txn::Response> {
    let event_id = send(&s, req.user.user_id, req.body.notice, Some(req.body.txn_id)).await?;
    Ok(send_notice_txn::Response { event_id })
}
