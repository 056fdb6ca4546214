//! Device-list changes as a reader sees them: whose device lists changed in a window of the
//! `device_lists` stream, who newly shares a room with a user, who no longer does. Read by
//! the sync workers (`device_lists` of `/sync`) and the auth role (`/keys/changes`); the auth
//! service writes `device_list_changes`, the rooms service writes `memberships`.

use trellis_core::Result;

/// Users among those whose device list changed in `(from, to]` that are the user themself
/// or share a joined room with them; a change meant for one user only (`only_for`) is
/// shown to that user alone.
const CHANGED: &str = "SELECT DISTINCT c.user_id FROM device_list_changes c \
     WHERE c.pos > $2 AND c.pos <= $3 AND (c.only_for = $1 OR c.only_for IS NULL AND (c.user_id = $1 OR EXISTS ( \
       SELECT 1 FROM memberships a JOIN memberships b ON b.room_id = a.room_id \
       WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id = c.user_id AND b.membership = 'join')))";

/// Users who now share a joined room with the user and whose membership there, or the user's
/// own, changed in the events window `(from, to]`. Two branches so each can use
/// `memberships_room_pos` instead of reading every member of every room.
const NEWLY_SHARED: &str = "SELECT b.user_id FROM memberships a JOIN memberships b ON b.room_id = a.room_id \
     WHERE a.user_id = $1 AND a.membership = 'join' AND b.membership = 'join' AND b.user_id <> $1 \
       AND b.pos > $2 AND b.pos <= $3 \
     UNION SELECT b.user_id FROM memberships a JOIN memberships b ON b.room_id = a.room_id \
     WHERE a.user_id = $1 AND a.membership = 'join' AND a.pos > $2 AND a.pos <= $3 \
       AND b.membership = 'join' AND b.user_id <> $1";

/// Users who left a room shared with the user (or whose room the user left) in the events
/// window `(from, to]` and share no joined room with the user any more.
const LEFT: &str = "SELECT c.user_id FROM ( \
       SELECT b.user_id FROM memberships a JOIN memberships b ON b.room_id = a.room_id \
       WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id <> $1 \
         AND b.membership IN ('leave', 'ban') AND b.pos > $2 AND b.pos <= $3 \
       UNION SELECT b.user_id FROM memberships a JOIN memberships b ON b.room_id = a.room_id \
       WHERE a.user_id = $1 AND a.membership IN ('leave', 'ban') AND a.pos > $2 AND a.pos <= $3 \
         AND b.membership = 'join' AND b.user_id <> $1) c \
     WHERE NOT EXISTS (SELECT 1 FROM memberships x JOIN memberships y ON y.room_id = x.room_id \
       WHERE x.user_id = $1 AND x.membership = 'join' AND y.user_id = c.user_id AND y.membership = 'join')";

async fn users(c: &deadpool_postgres::Client, sql: &str, user: &str, from: i64, to: i64) -> Result<Vec<String>> {
    if to <= from {
        return Ok(Vec::new());
    }
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, &[&user, &from, &to]).await?.iter().map(|r| r.get(0)).collect())
}

/// Whose device lists changed in `(from, to]` of the device-list stream, among the user and
/// the users sharing a room with them.
pub async fn changed(c: &deadpool_postgres::Client, user: &str, from: i64, to: i64) -> Result<Vec<String>> {
    users(c, CHANGED, user, from, to).await
}

/// Users who started sharing a room with the user in `(from, to]` of the events stream.
pub async fn newly_shared(c: &deadpool_postgres::Client, user: &str, from: i64, to: i64) -> Result<Vec<String>> {
    users(c, NEWLY_SHARED, user, from, to).await
}

/// Users who stopped sharing every room with the user in `(from, to]` of the events stream.
pub async fn left(c: &deadpool_postgres::Client, user: &str, from: i64, to: i64) -> Result<Vec<String>> {
    users(c, LEFT, user, from, to).await
}
