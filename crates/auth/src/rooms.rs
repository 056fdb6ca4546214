//! What the rooms service must hear from accounts and profiles: a deactivated account leaves
//! every room, and a new display name or avatar reaches the user's member events. The auth
//! service calls it after its own change is committed, so a failure here leaves the account
//! changed and is answered as the call's error (the client may retry).

use trellis_core::Result;
use trellis_proto::{
    auth::Profile,
    rooms::{LeaveAllRoomsRequest, ProfileChangedRequest},
};

use crate::service::Auth;

impl Auth {
    /// A deactivated account leaves its rooms.
    pub(crate) async fn leave_all_rooms(&self, user_id: &str) -> Result<()> {
        let Some(rooms) = &self.rooms else { return Ok(()) };
        rooms.leave_all_rooms(LeaveAllRoomsRequest { user_id: user_id.to_owned() }).await?;
        Ok(())
    }

    /// The user's member events take their new display name and avatar.
    pub(crate) async fn profile_changed(&self, profile: &Profile) -> Result<()> {
        let Some(rooms) = &self.rooms else { return Ok(()) };
        let changed = ProfileChangedRequest {
            user_id: profile.user_id.clone(),
            displayname: profile.displayname.clone(),
            avatar_url: profile.avatar_url.clone(),
        };
        rooms.profile_changed(changed).await?;
        Ok(())
    }
}
