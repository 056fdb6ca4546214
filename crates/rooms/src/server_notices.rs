//! Server notices, as Synapse sends them: each user has a private room with the system user
//! (named as configured), made on the first notice with the user invited and tagged
//! `m.server_notice` for them; the user may read and leave it but not write in it. A user who
//! left gets a new room with the next notice. The whole operation is here (the admin API and
//! `trellis admin notice send` make one call): the system user's account is made through the
//! auth service on first use, the tag through the sync service — the peers the process
//! gives this service with [`Rooms::enable_server_notices`].

use std::sync::Arc;

use serde_json::json;
use trellis_core::{Error, ErrorCode, Result, config::Config};
use trellis_proto::{
    auth::{AdminPutUserRequest, AdminUserRequest, AuthService},
    rooms::{CreateRoomRequest, SendEventRequest, ServerNoticeRequest, ServerNoticeResponse},
    sync::{SyncService, UpdateTagRequest},
};

use crate::Rooms;

/// The user's notices room: one where the system user is joined and the user is joined or
/// invited.
const NOTICES_ROOM: &str = "SELECT u.room_id FROM memberships u \
     JOIN memberships s ON s.room_id = u.room_id AND s.user_id = $2 AND s.membership = 'join' \
     WHERE u.user_id = $1 AND u.membership IN ('join', 'invite') ORDER BY u.pos DESC LIMIT 1";

/// The device the system user's sends are deduplicated by (it has no real device).
const NOTICES_DEVICE: &str = "server_notices";

/// The tag a notices room carries for its user (Synapse's).
const NOTICE_TAG: &str = "m.server_notice";

/// `[server_notices]`, with the services a notice needs besides this one.
pub struct ServerNotices {
    pub system_user: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub room_name: String,
    /// Keeps the system user's account.
    pub auth: Arc<dyn AuthService>,
    /// Keeps the user's room tags.
    pub sync: Arc<dyn SyncService>,
}

impl ServerNotices {
    /// The settings, when `server_notices.system_mxid_localpart` is set.
    pub fn from_config(
        config: &Config,
        auth: Arc<dyn AuthService>,
        sync: Arc<dyn SyncService>,
    ) -> Option<ServerNotices> {
        let c = &config.server_notices;
        let localpart = c.system_mxid_localpart.as_deref().filter(|l| !l.is_empty())?;
        Some(ServerNotices {
            system_user: format!("@{localpart}:{}", config.server_name),
            display_name: c.system_mxid_display_name.clone(),
            avatar_url: c.system_mxid_avatar_url.clone(),
            room_name: c.room_name.clone(),
            auth,
            sync,
        })
    }
}

impl Rooms {
    /// Turns server notices on (once; later calls change nothing).
    pub fn enable_server_notices(&self, notices: ServerNotices) {
        let _ = self.notices.set(notices);
    }

    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn send_server_notice(&self, req: ServerNoticeRequest) -> Result<ServerNoticeResponse> {
        let (admin, target) = (req.admin.clone(), req.user_id.clone());
        let outcome = self.notice(req).await;
        let admin = if admin.is_empty() { "cli" } else { admin.as_str() };
        match &outcome {
            Ok(sent) => tracing::info!(
                target: "trellis::audit", admin, action = "server_notice", target, outcome = "ok",
                room_id = %sent.room_id, event_id = %sent.event_id, "admin action"
            ),
            Err(e) => tracing::info!(
                target: "trellis::audit", admin, action = "server_notice", target, outcome = "refused",
                errcode = e.code().as_str(), "admin action"
            ),
        }
        outcome
    }

    async fn notice(&self, req: ServerNoticeRequest) -> Result<ServerNoticeResponse> {
        let Some(notices) = self.notices.get() else {
            let off = Error::new(ErrorCode::Unknown, "Server notices are not enabled on this server");
            return Err(off.with_status(400));
        };
        // A local account (`M_INVALID_PARAM` otherwise, `M_NOT_FOUND` for an unknown one).
        notices.auth.admin_get_user(AdminUserRequest { user_id: req.user_id.clone() }).await?;
        self.system_user(notices).await?;
        let existing: Option<String> = {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(NOTICES_ROOM).await?;
            client.query_opt(&stmt, &[&req.user_id, &notices.system_user]).await?.map(|r| r.get(0))
        };
        let (room_id, created_room) = match existing {
            Some(room_id) => (room_id, false),
            None => {
                let create = CreateRoomRequest {
                    sender: notices.system_user.clone(),
                    name: Some(notices.room_name.clone()),
                    preset: "private_chat".into(),
                    invite: vec![req.user_id.clone()],
                    // Below the default for events: the user reads, the system user writes.
                    power_level_content_override_json: Some(json!({"users_default": -10}).to_string()),
                    ..CreateRoomRequest::default()
                };
                (self.create_room(create).await?.room_id, true)
            }
        };
        if created_room {
            let tag = UpdateTagRequest {
                requester: req.user_id.clone(),
                user_id: req.user_id.clone(),
                room_id: room_id.clone(),
                tag: NOTICE_TAG.to_owned(),
                content_json: Some("{}".to_owned()),
            };
            notices.sync.update_tag(tag).await?;
        }
        let send = SendEventRequest {
            sender: notices.system_user.clone(),
            device_id: NOTICES_DEVICE.into(),
            room_id: room_id.clone(),
            event_type: req.event_type,
            state_key: req.state_key,
            content_json: req.content_json,
            txn_id: req.txn_id,
            origin_server_ts: None,
        };
        let event_id = self.send_event(send).await?.event_id;
        Ok(ServerNoticeResponse { room_id, event_id, created_room })
    }

    /// Makes the system user's account if there is none yet (no password: nobody logs in
    /// as it).
    async fn system_user(&self, notices: &ServerNotices) -> Result<()> {
        let ask = AdminUserRequest { user_id: notices.system_user.clone() };
        match notices.auth.admin_get_user(ask).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == ErrorCode::NotFound => {
                let make = AdminPutUserRequest {
                    user_id: notices.system_user.clone(),
                    displayname: notices.display_name.clone(),
                    avatar_url: notices.avatar_url.clone(),
                    ..AdminPutUserRequest::default()
                };
                notices.auth.admin_put_user(make).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}
