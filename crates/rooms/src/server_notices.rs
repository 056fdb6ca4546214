//! Server notices, as Synapse sends them: each user has a private room with the system user
//! (named as configured), made on the first notice with the user invited; the user may read
//! and leave it but not write in it. A user who left gets a new room with the next notice.

use serde_json::json;
use trellis_core::Result;
use trellis_proto::rooms::{CreateRoomRequest, SendEventRequest, ServerNoticeRequest, ServerNoticeResponse};

use crate::Rooms;

/// The user's notices room: one where the system user is joined and the user is joined or
/// invited.
const NOTICES_ROOM: &str = "SELECT u.room_id FROM memberships u \
     JOIN memberships s ON s.room_id = u.room_id AND s.user_id = $2 AND s.membership = 'join' \
     WHERE u.user_id = $1 AND u.membership IN ('join', 'invite') ORDER BY u.pos DESC LIMIT 1";

/// The device the system user's sends are deduplicated by (it has no real device).
const NOTICES_DEVICE: &str = "server_notices";

impl Rooms {
    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn send_server_notice(&self, req: ServerNoticeRequest) -> Result<ServerNoticeResponse> {
        let existing: Option<String> = {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(NOTICES_ROOM).await?;
            client.query_opt(&stmt, &[&req.user_id, &req.system_user]).await?.map(|r| r.get(0))
        };
        let (room_id, created_room) = match existing {
            Some(room_id) => (room_id, false),
            None => {
                let create = CreateRoomRequest {
                    sender: req.system_user.clone(),
                    name: Some(req.room_name.clone()),
                    preset: "private_chat".into(),
                    invite: vec![req.user_id.clone()],
                    // Below the default for events: the user reads, the system user writes.
                    power_level_content_override_json: Some(json!({"users_default": -10}).to_string()),
                    ..CreateRoomRequest::default()
                };
                (self.create_room(create).await?.room_id, true)
            }
        };
        let send = SendEventRequest {
            sender: req.system_user,
            device_id: NOTICES_DEVICE.into(),
            room_id: room_id.clone(),
            event_type: req.event_type,
            state_key: req.state_key,
            content_json: req.content_json,
            txn_id: req.txn_id,
            origin_server_ts: None,
        };
        let event_id = self.send_event(send).await?.event_id;
        tracing::info!(target: "trellis::audit", user_id = %req.user_id, room_id = %room_id, event_id, "server notice sent");
        Ok(ServerNoticeResponse { room_id, event_id, created_room })
    }
}
