//! Server notices (Synapse's `POST /_synapse/admin/v1/send_server_notice`): an admin's
//! message to a user, sent by the configured system user in the user's notices room. The
//! auth service keeps the system user's account (made on first use), the rooms service
//! finds or makes the room and sends the event, the sync service tags a new room
//! `m.server_notice` for the user.

use axum::Router;
use ruma::{
    OwnedUserId,
    api::{auth_scheme::AccessToken, metadata, request, response},
};
use trellis_core::{Error, ErrorCode, config::Config};
use trellis_proto::{
    auth::{AdminPutUserRequest, AdminUserRequest},
    rooms::ServerNoticeRequest,
    sync::UpdateTagRequest,
};

use super::ServerAdmin;
use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

/// The tag a notices room carries for its user (Synapse's).
const NOTICE_TAG: &str = "m.server_notice";

/// `[server_notices]` as the gateway uses it.
#[derive(Debug, Clone)]
pub struct ServerNotices {
    pub system_user: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub room_name: String,
}

impl ServerNotices {
    /// The settings, when `server_notices.system_mxid_localpart` is set.
    pub fn from_config(config: &Config) -> Option<ServerNotices> {
        let c = &config.server_notices;
        let localpart = c.system_mxid_localpart.as_deref().filter(|l| !l.is_empty())?;
        Some(ServerNotices {
            system_user: format!("@{localpart}:{}", config.server_name),
            display_name: c.system_mxid_display_name.clone(),
            avatar_url: c.system_mxid_avatar_url.clone(),
            room_name: c.room_name.clone(),
        })
    }
}

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

/// Sends the notice; its event ID.
async fn send(s: &AppState, admin: String, notice: Notice, txn_id: Option<String>) -> ApiResult<String> {
    let Some(settings) = &s.settings.server_notices else {
        let off = Error::new(ErrorCode::Unknown, "Server notices are not enabled on this server");
        return Err(off.with_status(400).into());
    };
    let user_id = super::existing_user(s, &notice.user_id).await?;
    let system = AdminUserRequest { user_id: settings.system_user.clone() };
    match s.services.auth.admin_get_user(system).await {
        Ok(_) => {}
        Err(e) if e.code() == ErrorCode::NotFound => {
            // No password: nobody logs in as the system user.
            let make = AdminPutUserRequest {
                admin,
                user_id: settings.system_user.clone(),
                displayname: settings.display_name.clone(),
                avatar_url: settings.avatar_url.clone(),
                ..AdminPutUserRequest::default()
            };
            s.services.auth.admin_put_user(make).await?;
        }
        Err(e) => return Err(e.into()),
    }
    let ask = ServerNoticeRequest {
        system_user: settings.system_user.clone(),
        user_id: user_id.clone(),
        room_name: settings.room_name.clone(),
        event_type: notice.event_type.unwrap_or_else(|| "m.room.message".to_owned()),
        state_key: notice.state_key,
        content_json: serde_json::Value::Object(notice.content).to_string(),
        txn_id,
    };
    let sent = s.services.rooms.send_server_notice(ask).await?;
    if sent.created_room {
        let tag = UpdateTagRequest {
            requester: user_id.clone(),
            user_id,
            room_id: sent.room_id,
            tag: NOTICE_TAG.to_owned(),
            content_json: Some("{}".to_owned()),
        };
        s.services.sync.update_tag(tag).await?;
    }
    Ok(sent.event_id)
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
