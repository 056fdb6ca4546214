//! The device-list stream: a change row per user whose devices or keys changed, positions
//! from the `device_lists` row of `e2ee_streams` bumped inside the writing transaction (so
//! readers never skip a change), wake-ups to the sync workers after commit, and
//! `/keys/changes`.

use deadpool_postgres::GenericClient;
use trellis_bus::Channel;
use trellis_core::{Error, Result, Stream, StreamPos, StreamToken};
use trellis_proto::keys::{KeyChangesRequest, KeyChangesResponse};

use crate::service::Auth;

const BUMP: &str = "UPDATE e2ee_streams SET pos = pos + 1 WHERE stream = 'device_lists' RETURNING pos";
const INSERT_CHANGE: &str = "INSERT INTO device_list_changes (pos, user_id, only_for) VALUES ($1, $2, $3)";
const JOINED_ROOMS: &str = "SELECT room_id FROM memberships WHERE user_id = $1 AND membership = 'join'";

/// Records that `user_id`'s device list changed; returns the change's position. Run it inside
/// the transaction that makes the change, then [`Auth::announce_device_list`] after commit.
pub async fn record(c: &impl GenericClient, user_id: &str) -> Result<StreamPos> {
    insert(c, user_id, None).await
}

/// Records a change of `user_id`'s keys that only `viewer` is told about: a user's own
/// user-signing key, or their signature on another user's master key (Synapse tells nobody
/// else either). Announce it with [`Auth::announce_private_change`].
pub async fn record_private(c: &impl GenericClient, user_id: &str, viewer: &str) -> Result<StreamPos> {
    insert(c, user_id, Some(viewer)).await
}

async fn insert(c: &impl GenericClient, user_id: &str, only_for: Option<&str>) -> Result<StreamPos> {
    let stmt = c.prepare_cached(BUMP).await?;
    let pos: StreamPos = c.query_one(&stmt, &[]).await?.get(0);
    let stmt = c.prepare_cached(INSERT_CHANGE).await?;
    c.execute(&stmt, &[&pos, &user_id, &only_for]).await?;
    Ok(pos)
}

impl Auth {
    /// Wakes the long-polls that may care: the user's own and those of every member of the
    /// rooms the user is joined to (through the rooms' channels). Best effort: PostgreSQL holds
    /// the truth and the next computation finds the change anyway.
    pub(crate) async fn announce_device_list(&self, user_id: &str, pos: StreamPos) {
        let Some(bus) = &self.bus else { return };
        let mut channels = vec![Channel::User(user_id.to_owned())];
        match self.joined_rooms(user_id).await {
            Ok(rooms) => channels.extend(rooms.into_iter().map(Channel::Room)),
            Err(e) => tracing::warn!(error = ?e, "reading rooms for a device-list wake-up failed"),
        }
        bus.publish_at(&channels, Stream::DeviceLists, pos).await;
    }

    /// Wakes only `viewer`'s long-polls, for a change recorded with [`record_private`].
    pub(crate) async fn announce_private_change(&self, viewer: &str, pos: StreamPos) {
        let Some(bus) = &self.bus else { return };
        bus.publish_at(&[Channel::User(viewer.to_owned())], Stream::DeviceLists, pos).await;
    }

    async fn joined_rooms(&self, user_id: &str) -> Result<Vec<String>> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(JOINED_ROOMS).await?;
        Ok(client.query(&stmt, &[&user_id]).await?.iter().map(|r| r.get(0)).collect())
    }

    /// `GET /keys/changes`: users sharing a room with the requester whose device lists changed
    /// between two sync tokens (or who started sharing one), and those who no longer share any.
    pub(crate) async fn do_key_changes(&self, req: KeyChangesRequest) -> Result<KeyChangesResponse> {
        let parse = |t: &str, name: &str| {
            t.parse::<StreamToken>().map_err(|_| Error::invalid_param(format!("invalid `{name}` token")))
        };
        let from = parse(&req.from, "from")?;
        let to = parse(&req.to, "to")?;
        let client = self.pool.get().await?;
        let dl = |t: &StreamToken| t.get(Stream::DeviceLists);
        let mut changed = trellis_storage::device_lists::changed(&client, &req.user_id, dl(&from), dl(&to)).await?;
        let joined = trellis_storage::device_lists::newly_shared(&client, &req.user_id, from.events, to.events).await?;
        changed.extend(joined);
        changed.sort();
        changed.dedup();
        let left = trellis_storage::device_lists::left(&client, &req.user_id, from.events, to.events).await?;
        Ok(KeyChangesResponse { changed, left })
    }
}
