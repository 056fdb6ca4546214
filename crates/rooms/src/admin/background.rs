//! The rooms service's background work as the admin API's background updates show it:
//! the room deletions under way (the oldest first, with the rows purged so far), and a switch
//! admins pause and resume them with. Paused, a purge waits before its next batch (a
//! deletion's shutdown, short, is not held); the switch lives in this process, the one event
//! writer, and is on again after a restart.

use trellis_core::Result;
use trellis_proto::rooms::{BackgroundUpdate, BackgroundUpdates, SetBackgroundUpdatesRequest};

use crate::Rooms;

const RUNNING: &str = "SELECT room_id, purged_rows, created_ts FROM room_deletions \
     WHERE status IN ('scheduled', 'shutting_down', 'purging') ORDER BY created_ts";

impl Rooms {
    pub(crate) async fn admin_background_updates(&self) -> Result<BackgroundUpdates> {
        let client = self.pool.get().await?;
        let rows = client.query(&client.prepare_cached(RUNNING).await?, &[]).await?;
        let updates = rows
            .iter()
            .map(|r| BackgroundUpdate {
                name: format!("delete_room {}", r.get::<_, String>(0)),
                total_item_count: r.get(1),
                started_ts: r.get(2),
            })
            .collect();
        Ok(BackgroundUpdates { enabled: *self.background.borrow(), updates })
    }

    pub(crate) async fn admin_set_background_updates(
        &self,
        req: SetBackgroundUpdatesRequest,
    ) -> Result<BackgroundUpdates> {
        self.background.send_replace(req.enabled);
        let admin = if req.admin.is_empty() { "cli" } else { req.admin.as_str() };
        let action = if req.enabled { "resume_background_updates" } else { "pause_background_updates" };
        tracing::info!(target: "trellis::audit", admin, action, target = "", outcome = "ok", "admin action");
        self.admin_background_updates().await
    }
}
