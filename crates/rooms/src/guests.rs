//! Guests in rooms (spec: "Guest access", server behaviour): a guest joins only a room whose
//! `m.room.guest_access` is `can_join`, and its member event says `kind: guest` as Synapse
//! marks it; when a room stops allowing guests, its guest members leave. Whether a user is a
//! guest is read from the auth service's `users` table.

use ruma::{RoomId, UserId, events::StateEventType};
use serde_json::{Map, Value, json};
use trellis_core::{Error, Result};

use crate::{Rooms, state::RoomState};

const IS_GUEST: &str = "SELECT is_guest FROM users WHERE user_id = $1";
const GUEST_MEMBERS: &str = "SELECT m.user_id FROM memberships m JOIN users u ON u.user_id = m.user_id \
     WHERE m.room_id = $1 AND m.membership IN ('join', 'invite') AND u.is_guest";

/// Whether the room lets guests join.
fn guests_may_join(state: &RoomState) -> bool {
    state.content_str(&StateEventType::RoomGuestAccess, "", "guest_access").as_deref() == Some("can_join")
}

impl Rooms {
    pub(crate) async fn is_guest(&self, user: &UserId) -> Result<bool> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(IS_GUEST).await?;
        Ok(client.query_opt(&stmt, &[&user.as_str()]).await?.is_some_and(|r| r.get(0)))
    }

    /// For `user` joining the room in `state`: a guest is refused unless the room allows
    /// guests (403 `M_FORBIDDEN`, as Synapse), and its member content marked as a guest's.
    pub(crate) async fn admit_guest(
        &self,
        state: &RoomState,
        user: &UserId,
        content: &mut Map<String, Value>,
    ) -> Result<()> {
        if !self.is_guest(user).await? {
            return Ok(());
        }
        if !guests_may_join(state) {
            return Err(Error::forbidden("Guest access not allowed"));
        }
        content.insert("kind".into(), json!("guest"));
        Ok(())
    }

    /// After an `m.room.guest_access` event: if the room no longer allows guests, each guest
    /// member (joined or invited) leaves, by their own member event as Synapse does it (no
    /// power levels involved). Failures are logged: the event that caused this stands.
    pub(crate) async fn guest_access_changed(&self, room_id: &RoomId) {
        if let Err(e) = self.remove_guests(room_id).await {
            tracing::warn!(room_id = %room_id, error = ?e, "removing guests after guest access was revoked failed");
        }
    }

    async fn remove_guests(&self, room_id: &RoomId) -> Result<()> {
        if guests_may_join(&self.snapshot(room_id).await?) {
            return Ok(());
        }
        let guests: Vec<String> = {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(GUEST_MEMBERS).await?;
            client.query(&stmt, &[&room_id.as_str()]).await?.iter().map(|r| r.get(0)).collect()
        };
        for guest in guests {
            let guest = UserId::parse(&guest)?;
            let mut content = Map::new();
            content.insert("membership".into(), json!("leave"));
            self.send_membership(&guest, room_id, &guest, content, None).await?;
            tracing::info!(room_id = %room_id, user_id = %guest, "guest removed: guest access revoked");
        }
        Ok(())
    }
}
