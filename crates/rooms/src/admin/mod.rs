//! The rooms of this server as its admins see them (the admin API's rooms and
//! `trellis admin room`): listed and searched, in detail, their members, state and history
//! whatever the history visibility, blocked, a local user raised to room admin; deletion
//! and purge in [`delete`] (paused and resumed in [`background`]), event reports in
//! [`reports`].

mod background;
pub(crate) mod delete;
mod power;
mod purge;
mod reports;

use ruma::RoomId;
use trellis_core::{Error, Result, time::now_ms};
use trellis_proto::rooms::{
    AdminBlockStatus, AdminListRoomsRequest, AdminListRoomsResponse, AdminRoom, AdminRoomMembersResponse,
    AdminRoomRequest, AdminSetBlockRequest, EventList, GetMessagesRequest, GetMessagesResponse,
};
use trellis_storage::{Pool, events::Format};

use crate::Rooms;

/// The most rooms one page lists.
const MAX_LIMIT: i64 = 1000;

/// A room's admin fields: `r` the `rooms` row, `s` its state summary, `$1` the server name.
macro_rules! admin_room_select {
    () => {
        concat!(
            "SELECT r.room_id, s.name, s.topic, s.avatar, s.alias, r.room_version, r.creator, s.encryption, \
               r.is_public, s.join_rule, s.guests, s.hv, s.room_type, \
               (SELECT count(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join') AS joined, \
               (SELECT count(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join' \
                  AND right(m.user_id, length($1) + 1) = ':' || $1) AS joined_local, \
               (SELECT count(*) FROM current_state c WHERE c.room_id = r.room_id) AS state_events, \
               COALESCE((SELECT trellis_jsonb(e.content)->>'m.federate' FROM current_state c \
                  JOIN events e ON e.event_id = c.event_id \
                  WHERE c.room_id = r.room_id AND c.type = 'm.room.create' AND c.state_key = ''), 'true') \
                  <> 'false' AS federatable, \
               EXISTS (SELECT 1 FROM blocked_rooms b WHERE b.room_id = r.room_id) AS blocked \
             FROM rooms r ",
            room_state_summary!()
        )
    };
}

const SEARCH: &str = " WHERE ($2::text IS NULL OR strpos(lower(COALESCE(s.name, '')), lower($2)) > 0 \
     OR strpos(lower(COALESCE(s.alias, '')), lower($2)) > 0 OR strpos(lower(r.room_id), lower($2)) > 0)";
const SELECT_DEVICES: &str = "SELECT count(*) FROM devices d JOIN memberships m ON m.user_id = d.user_id \
     WHERE m.room_id = $1 AND m.membership = 'join'";
const SELECT_MEMBERS: &str =
    "SELECT user_id FROM memberships WHERE room_id = $1 AND membership = 'join' ORDER BY user_id";
const SELECT_ROOM: &str = "SELECT 1 FROM rooms WHERE room_id = $1";
const SELECT_BLOCK: &str = "SELECT user_id FROM blocked_rooms WHERE room_id = $1";
const INSERT_BLOCK: &str = "INSERT INTO blocked_rooms (room_id, user_id, blocked_ts) VALUES ($1, $2, $3) \
     ON CONFLICT (room_id) DO NOTHING";
const DELETE_BLOCK: &str = "DELETE FROM blocked_rooms WHERE room_id = $1";

/// The SQL ordering for Synapse's `order_by` (its default direction first: names A to Z,
/// counts largest first), `M_INVALID_PARAM` for an unknown one.
fn ordering(order_by: Option<&str>, backwards: bool) -> Result<String> {
    let (column, descending) = match order_by.unwrap_or("name") {
        "name" | "alphabetical" => ("s.name", false),
        "canonical_alias" => ("s.alias", false),
        "joined_members" | "size" => ("joined", true),
        "joined_local_members" => ("joined_local", true),
        "version" => ("r.room_version", true),
        "creator" => ("r.creator", false),
        "encryption" => ("s.encryption", false),
        "federatable" => ("federatable", true),
        "public" => ("r.is_public", true),
        "join_rules" => ("s.join_rule", false),
        "guest_access" => ("s.guests", false),
        "history_visibility" => ("s.hv", false),
        "state_events" => ("state_events", true),
        other => return Err(Error::invalid_param(format!("Unknown value for order_by: {other}"))),
    };
    let dir = if descending != backwards { "DESC" } else { "ASC" };
    Ok(format!(" ORDER BY {column} {dir} NULLS LAST, r.room_id {dir}"))
}

fn room(r: &tokio_postgres::Row) -> AdminRoom {
    AdminRoom {
        room_id: r.get("room_id"),
        name: r.get("name"),
        topic: r.get("topic"),
        avatar: r.get("avatar"),
        canonical_alias: r.get("alias"),
        joined_members: r.get("joined"),
        joined_local_members: r.get("joined_local"),
        joined_local_devices: 0,
        version: r.get("room_version"),
        creator: Some(r.get("creator")),
        encryption: r.get("encryption"),
        federatable: r.get("federatable"),
        public: r.get("is_public"),
        join_rules: r.get("join_rule"),
        guest_access: r.get("guests"),
        history_visibility: r.get("hv"),
        state_events: r.get("state_events"),
        room_type: r.get("room_type"),
        blocked: r.get("blocked"),
    }
}

/// A page of rooms, searched and ordered as asked; readable without the event writer, so
/// the CLI lists rooms straight from the database.
pub async fn list_rooms(pool: &Pool, server_name: &str, req: AdminListRoomsRequest) -> Result<AdminListRoomsResponse> {
    if req.from < 0 || req.limit < 0 {
        return Err(Error::invalid_param("from and limit must not be negative"));
    }
    let order = ordering(req.order_by.as_deref(), req.backwards)?;
    let search = req.search_term.filter(|s| !s.is_empty());
    let client = pool.get().await?;
    let count = format!("SELECT count(*) FROM rooms r {}{SEARCH}", room_state_summary!());
    let count = count.replace("$2", "$1");
    let total: i64 = client.query_one(&count, &[&search]).await?.get(0);
    let page = format!("{}{SEARCH}{order} LIMIT $3 OFFSET $4", admin_room_select!());
    let limit = req.limit.min(MAX_LIMIT);
    let rows = client.query(&page, &[&server_name, &search, &limit, &req.from]).await?;
    Ok(AdminListRoomsResponse { rooms: rows.iter().map(room).collect(), total })
}

fn parse_room(room_id: &str) -> Result<&RoomId> {
    <&RoomId>::try_from(room_id).map_err(|_| Error::invalid_param(format!("{room_id} is not a room ID")))
}

impl Rooms {
    pub(crate) async fn admin_list_rooms(&self, req: AdminListRoomsRequest) -> Result<AdminListRoomsResponse> {
        list_rooms(&self.pool, self.server_name(), req).await
    }

    /// `M_NOT_FOUND` unless this server knows the room.
    pub(crate) async fn known_room(&self, room_id: &str) -> Result<()> {
        parse_room(room_id)?;
        let client = self.pool.get().await?;
        match client.query_opt(&client.prepare_cached(SELECT_ROOM).await?, &[&room_id]).await? {
            Some(_) => Ok(()),
            None => Err(Error::not_found("Room not found")),
        }
    }

    pub(crate) async fn admin_room_details(&self, req: AdminRoomRequest) -> Result<AdminRoom> {
        parse_room(&req.room_id)?;
        let client = self.pool.get().await?;
        let sql = format!("{} WHERE r.room_id = $2", admin_room_select!());
        let row = client.query_opt(&sql, &[&self.server_name(), &req.room_id]).await?;
        let mut details = room(&row.ok_or_else(|| Error::not_found("Room not found"))?);
        details.joined_local_devices = client.query_one(SELECT_DEVICES, &[&req.room_id]).await?.get(0);
        Ok(details)
    }

    pub(crate) async fn admin_room_members(&self, req: AdminRoomRequest) -> Result<AdminRoomMembersResponse> {
        self.known_room(&req.room_id).await?;
        let client = self.pool.get().await?;
        let members = client.query(SELECT_MEMBERS, &[&req.room_id]).await?.iter().map(|r| r.get(0)).collect();
        Ok(AdminRoomMembersResponse { members })
    }

    pub(crate) async fn admin_room_state(&self, req: AdminRoomRequest) -> Result<EventList> {
        self.known_room(&req.room_id).await?;
        let client = self.pool.get().await?;
        let rows = crate::read::state_at(&client, &req.room_id, None, None).await?;
        let now = now_ms();
        Ok(EventList { events_json: rows.iter().map(|r| r.render(None, Format::Client, now)).collect() })
    }

    pub(crate) async fn admin_room_messages(&self, req: GetMessagesRequest) -> Result<GetMessagesResponse> {
        self.known_room(&req.room_id).await?;
        self.messages(req, true).await
    }

    pub(crate) async fn admin_get_block(&self, req: AdminRoomRequest) -> Result<AdminBlockStatus> {
        parse_room(&req.room_id)?;
        let user_id = self.blocked_by(&req.room_id).await?;
        Ok(AdminBlockStatus { block: user_id.is_some(), user_id })
    }

    /// Who blocked the room, if it is blocked.
    pub(crate) async fn blocked_by(&self, room_id: &str) -> Result<Option<String>> {
        let client = self.pool.get().await?;
        Ok(client.query_opt(&client.prepare_cached(SELECT_BLOCK).await?, &[&room_id]).await?.map(|r| r.get(0)))
    }

    /// `M_FORBIDDEN` for a room an admin blocked (no joins, invites or knocks).
    pub(crate) async fn ensure_not_blocked(&self, room_id: &RoomId) -> Result<()> {
        match self.blocked_by(room_id.as_str()).await? {
            Some(_) => Err(Error::forbidden("This room has been blocked on this server")),
            None => Ok(()),
        }
    }

    /// Blocks or unblocks a room, known or not (a room may be blocked before it is seen).
    pub(crate) async fn admin_set_block(&self, req: AdminSetBlockRequest) -> Result<AdminBlockStatus> {
        parse_room(&req.room_id)?;
        self.set_block(&req.admin, &req.room_id, req.block).await?;
        tracing::info!(admin = %req.admin, room_id = %req.room_id, block = req.block, "room block changed");
        Ok(AdminBlockStatus { block: req.block, user_id: req.block.then_some(req.admin) })
    }

    pub(crate) async fn set_block(&self, admin: &str, room_id: &str, block: bool) -> Result<()> {
        let client = self.pool.get().await?;
        if block {
            client.execute(INSERT_BLOCK, &[&room_id, &admin, &now_ms()]).await?;
        } else {
            client.execute(DELETE_BLOCK, &[&room_id]).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn orderings_follow_synapse_and_refuse_unknown_names() {
        assert_eq!(super::ordering(None, false).unwrap(), " ORDER BY s.name ASC NULLS LAST, r.room_id ASC");
        assert!(super::ordering(Some("joined_members"), false).unwrap().contains("joined DESC"));
        assert!(super::ordering(Some("size"), true).unwrap().contains("joined ASC"));
        assert!(super::ordering(Some("nope"), false).is_err());
    }
}
