//! Leaving every room at once, for account deactivation: each room the user is joined to,
//! invited to or knocking on gets a leave event from the user (as Synapse does).

use ruma::{RoomId, UserId};
use serde_json::{Map, Value};
use trellis_core::Result;
use trellis_proto::rooms::{LeaveAllRoomsRequest, LeaveAllRoomsResponse};

use crate::Rooms;

const SELECT_ROOMS: &str = "SELECT room_id FROM memberships WHERE user_id = $1 \
                            AND membership IN ('join', 'invite', 'knock') ORDER BY room_id";

impl Rooms {
    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn leave_all_rooms(&self, req: LeaveAllRoomsRequest) -> Result<LeaveAllRoomsResponse> {
        let user = UserId::parse(&req.user_id)?;
        let rooms: Vec<String> = {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(SELECT_ROOMS).await?;
            client.query(&stmt, &[&req.user_id]).await?.iter().map(|row| row.get(0)).collect()
        };
        let mut left = Vec::with_capacity(rooms.len());
        for room in rooms {
            let Ok(room_id) = RoomId::parse(&room) else { continue };
            let mut content = Map::new();
            content.insert("membership".into(), Value::String("leave".into()));
            // One room refusing (e.g. it is gone) must not keep the user in the others.
            match self.send_membership(&user, &room_id, &user, content, None).await {
                Ok(_) => left.push(room),
                Err(e) => tracing::warn!(room_id = %room, error = %e, "leaving a room on deactivation failed"),
            }
        }
        tracing::info!(user_id = %req.user_id, rooms = left.len(), "user left every room");
        Ok(LeaveAllRoomsResponse { room_ids: left })
    }
}
