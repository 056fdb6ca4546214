//! Profile changes reach every joined room as a new member event. The first rooms are
//! updated before the call returns; a user in many rooms has the rest updated in the
//! background, a few at a time, so one request never holds many room locks.

use std::sync::Arc;

use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::json;
use trellis_core::Result;
use trellis_proto::rooms::{JoinedRoomsRequest, ProfileChangedRequest, ProfileChangedResponse};

use crate::{Rooms, new_event::NewEvent};

/// Rooms updated before the request returns.
const INLINE_ROOMS: usize = 20;

impl Rooms {
    #[tracing::instrument(skip_all, fields(user = %req.user_id))]
    pub(crate) async fn profile_changed(
        self: &Arc<Self>,
        req: ProfileChangedRequest,
    ) -> Result<ProfileChangedResponse> {
        let user = UserId::parse(&req.user_id)?;
        let rooms: Vec<OwnedRoomId> = self
            .joined_rooms(JoinedRoomsRequest { user_id: req.user_id.clone() })
            .await?
            .room_ids
            .iter()
            .filter_map(|r| RoomId::parse(r).ok())
            .collect();
        let (now, later) = rooms.split_at(rooms.len().min(INLINE_ROOMS));
        let mut updated = 0;
        for room in now {
            if self.rewrite_member(room, &user, &req).await {
                updated += 1;
            }
        }
        if !later.is_empty() {
            let this = self.clone();
            let later = later.to_vec();
            let total = later.len();
            tokio::spawn(async move {
                for room in &later {
                    this.rewrite_member(room, &user, &req).await;
                }
                tracing::info!(rooms = total, "background profile propagation done");
            });
        }
        Ok(ProfileChangedResponse { rooms_updated: updated })
    }

    /// Sends a join event carrying the new profile; failures are logged, not fatal.
    async fn rewrite_member(&self, room: &RoomId, user: &UserId, req: &ProfileChangedRequest) -> bool {
        let mut content = json!({ "membership": "join" });
        if let Some(d) = &req.displayname {
            content["displayname"] = json!(d);
        }
        if let Some(a) = &req.avatar_url {
            content["avatar_url"] = json!(a);
        }
        let result = async {
            self.append(room, None, vec![NewEvent::state(user, "m.room.member", user.as_str(), content)?]).await
        }
        .await;
        match result {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(room_id = %room, error = ?e, "profile update of a member event failed");
                false
            }
        }
    }
}
