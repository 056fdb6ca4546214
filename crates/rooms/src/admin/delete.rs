//! Deleting a room for the server's admins, in the background: every local member leaves
//! (moved first to a new room when asked), the room's aliases and directory entry go, the
//! room is blocked if asked, then purged ([`super::purge`]). Each deletion is a row of
//! `room_deletions` with its status (`scheduled`, `shutting_down`, `purging`, `complete`,
//! `failed`) and outcome; one interrupted by a stop is resumed when the service starts again.

use std::sync::Arc;

use ruma::{RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use trellis_core::{Error, ErrorCode, Result, ids::random_string, time::now_ms};
use trellis_proto::rooms::{
    AdminDeleteRoomRequest, AdminDeleteStatusRequest, AdminDeletion, AdminDeletionList, CreateRoomRequest,
    SendEventRequest,
};

use crate::Rooms;

const INSERT: &str = "INSERT INTO room_deletions (delete_id, room_id, requester, status, params, created_ts, updated_ts) \
     VALUES ($1, $2, $3, $4, $5, $6, $6)";
const SELECT: &str =
    "SELECT delete_id, room_id, requester, status, params, result, error, purged_rows FROM room_deletions";
const UNFINISHED: &str = "status IN ('scheduled', 'shutting_down', 'purging')";
const SET_STATUS: &str = "UPDATE room_deletions SET status = $2, updated_ts = $3 WHERE delete_id = $1";
const SET_RESULT: &str = "UPDATE room_deletions SET result = $2, updated_ts = $3 WHERE delete_id = $1";
const SET_FAILED: &str =
    "UPDATE room_deletions SET status = 'failed', error = $2, updated_ts = $3 WHERE delete_id = $1";
const SELECT_LOCAL_MEMBERS: &str = "SELECT user_id, membership FROM memberships WHERE room_id = $1 \
     AND membership IN ('join', 'invite', 'knock') AND right(user_id, length($2) + 1) = ':' || $2 ORDER BY user_id";
const SELECT_ALIASES: &str = "SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias";
const MOVE_ALIASES: &str = "UPDATE room_aliases SET room_id = $2 WHERE room_id = $1";
const DELETE_ALIASES: &str = "DELETE FROM room_aliases WHERE room_id = $1";
const UNLIST: &str = "UPDATE rooms SET is_public = FALSE WHERE room_id = $1";

const DEFAULT_ROOM_NAME: &str = "Content Violation Notification";
const DEFAULT_MESSAGE: &str = "The room you were in has been closed by the administrators of this server.";

/// What the deletion was asked to do, as `room_deletions.params` keeps it.
#[derive(Serialize, Deserialize, Default)]
struct Params {
    block: bool,
    purge: bool,
    force_purge: bool,
    new_room_user_id: Option<String>,
    room_name: Option<String>,
    message: Option<String>,
}

/// The shutdown's outcome, as `room_deletions.result` keeps it.
#[derive(Serialize, Deserialize, Default)]
struct Outcome {
    kicked_users: Vec<String>,
    failed_to_kick_users: Vec<String>,
    local_aliases: Vec<String>,
    new_room_id: Option<String>,
}

fn deletion(r: &tokio_postgres::Row) -> AdminDeletion {
    let outcome: Outcome =
        r.get::<_, Option<String>>("result").and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
    AdminDeletion {
        delete_id: r.get("delete_id"),
        room_id: r.get("room_id"),
        status: r.get("status"),
        kicked_users: outcome.kicked_users,
        failed_to_kick_users: outcome.failed_to_kick_users,
        local_aliases: outcome.local_aliases,
        new_room_id: outcome.new_room_id,
        error: r.get("error"),
        purged_rows: r.get("purged_rows"),
    }
}

/// Records a deletion and starts it in the background (waits for it with `wait`).
pub(crate) async fn start(rooms: &Arc<Rooms>, req: AdminDeleteRoomRequest) -> Result<AdminDeletion> {
    let room_id = super::parse_room(&req.room_id)?;
    if let Some(user) = req.new_room_user_id.as_deref() {
        let user = UserId::parse(user).map_err(|_| Error::invalid_param("new_room_user_id is not a user ID"))?;
        if user.server_name() != rooms.settings.server_name {
            return Err(Error::invalid_param("new_room_user_id must be a local user"));
        }
    }
    let params = Params {
        block: req.block,
        purge: req.purge,
        force_purge: req.force_purge,
        new_room_user_id: req.new_room_user_id,
        room_name: req.room_name,
        message: req.message,
    };
    let known = match rooms.known_room(room_id.as_str()).await {
        Ok(()) => true,
        Err(e) if e.code() == ErrorCode::NotFound => false,
        Err(e) => return Err(e),
    };
    let delete_id = random_string(16);
    let client = rooms.pool.get().await?;
    // A room this server has never seen can only be blocked ahead of time.
    if !known {
        if !req.block {
            return Err(Error::not_found("Room not found"));
        }
        rooms.set_block(&req.admin, room_id.as_str(), true).await?;
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&delete_id, &room_id.as_str(), &req.admin, &"complete", &serde_json::to_string(&params)?, &now_ms()];
        client.execute(INSERT, &args).await?;
        return status_of(rooms, &delete_id).await;
    }
    let running = format!("SELECT 1 FROM room_deletions WHERE room_id = $1 AND {UNFINISHED}");
    if client.query_opt(&running, &[&room_id.as_str()]).await?.is_some() {
        return Err(Error::new(ErrorCode::BadState, "A deletion of this room is already running"));
    }
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&delete_id, &room_id.as_str(), &req.admin, &"scheduled", &serde_json::to_string(&params)?, &now_ms()];
    client.execute(INSERT, &args).await?;
    drop(client);
    tracing::info!(admin = %req.admin, room_id = %room_id, delete_id, block = params.block, purge = params.purge, "room deletion scheduled");
    let task = tokio::spawn(run(rooms.clone(), delete_id.clone()));
    if req.wait {
        task.await.map_err(Error::internal)?;
        let done = status_of(rooms, &delete_id).await?;
        if done.status == "failed" {
            return Err(Error::new(ErrorCode::Unknown, done.error.unwrap_or_else(|| "the deletion failed".into())));
        }
        return Ok(done);
    }
    status_of(rooms, &delete_id).await
}

async fn status_of(rooms: &Rooms, delete_id: &str) -> Result<AdminDeletion> {
    let client = rooms.pool.get().await?;
    let row = client.query_opt(&format!("{SELECT} WHERE delete_id = $1"), &[&delete_id]).await?;
    Ok(deletion(&row.ok_or_else(|| Error::not_found("No deletion with this ID"))?))
}

impl Rooms {
    /// One deletion by ID, or a room's deletions newest first (`M_NOT_FOUND` when none).
    pub(crate) async fn admin_delete_status(&self, req: AdminDeleteStatusRequest) -> Result<AdminDeletionList> {
        if let Some(id) = req.delete_id.as_deref() {
            return Ok(AdminDeletionList { deletions: vec![status_of(self, id).await?] });
        }
        let room = req.room_id.as_deref().ok_or_else(|| Error::missing_param("delete_id or room_id"))?;
        super::parse_room(room)?;
        let client = self.pool.get().await?;
        let sql = format!("{SELECT} WHERE room_id = $1 ORDER BY created_ts DESC, delete_id");
        let deletions: Vec<AdminDeletion> = client.query(&sql, &[&room]).await?.iter().map(deletion).collect();
        if deletions.is_empty() {
            return Err(Error::not_found("No deletion found for this room"));
        }
        Ok(AdminDeletionList { deletions })
    }
}

/// Resumes the deletions a stop interrupted (each step may be done again).
pub(crate) async fn resume(rooms: Arc<Rooms>) {
    let ids: Result<Vec<String>> = async {
        let client = rooms.pool.get().await?;
        let sql = format!("SELECT delete_id FROM room_deletions WHERE {UNFINISHED} ORDER BY created_ts");
        Ok(client.query(&sql, &[]).await?.iter().map(|r| r.get(0)).collect())
    }
    .await;
    match ids {
        Ok(ids) => {
            for id in ids {
                tracing::info!(delete_id = %id, "resuming an interrupted room deletion");
                run(rooms.clone(), id).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the unfinished room deletions"),
    }
}

/// Runs one deletion to its end, recording a failure as the deletion's status.
async fn run(rooms: Arc<Rooms>, delete_id: String) {
    if let Err(e) = steps(&rooms, &delete_id).await {
        tracing::error!(delete_id, error = %e, "room deletion failed");
        let recorded = async {
            rooms.pool.get().await?.execute(SET_FAILED, &[&delete_id, &e.to_string(), &now_ms()]).await?;
            Ok::<_, Error>(())
        };
        if let Err(e) = recorded.await {
            tracing::error!(delete_id, error = %e, "cannot record the failure of a room deletion");
        }
    }
}

async fn set_status(rooms: &Rooms, delete_id: &str, status: &str) -> Result<()> {
    rooms.pool.get().await?.execute(SET_STATUS, &[&delete_id, &status, &now_ms()]).await?;
    Ok(())
}

async fn steps(rooms: &Arc<Rooms>, delete_id: &str) -> Result<()> {
    let row = {
        let client = rooms.pool.get().await?;
        client.query_one(&format!("{SELECT} WHERE delete_id = $1"), &[&delete_id]).await?
    };
    let room: String = row.get("room_id");
    let room_id = <&RoomId>::try_from(room.as_str()).map_err(Error::internal)?.to_owned();
    let admin: String = row.get("requester");
    let status: String = row.get("status");
    let params: Params = serde_json::from_str(row.get("params"))?;
    if status != "purging" {
        set_status(rooms, delete_id, "shutting_down").await?;
        let outcome = shutdown(rooms, &room_id, &admin, &params).await?;
        rooms
            .pool
            .get()
            .await?
            .execute(SET_RESULT, &[&delete_id, &serde_json::to_string(&outcome)?, &now_ms()])
            .await?;
    }
    if params.purge {
        if !params.force_purge {
            let client = rooms.pool.get().await?;
            let joined = "SELECT 1 FROM memberships WHERE room_id = $1 AND membership = 'join' \
                          AND right(user_id, length($2) + 1) = ':' || $2 LIMIT 1";
            if client.query_opt(joined, &[&room, &rooms.server_name()]).await?.is_some() {
                return Err(Error::new(
                    ErrorCode::BadState,
                    "local users are still joined to the room; use force_purge",
                ));
            }
        }
        set_status(rooms, delete_id, "purging").await?;
        // Nothing is written to the room while it is purged; its cached state goes after.
        let lock = rooms.room_lock(&room_id);
        let mut cached = lock.lock().await;
        let enabled = rooms.background.subscribe();
        let purged = super::purge::purge_room(&rooms.pool, &room, delete_id, enabled).await?;
        *cached = None;
        drop(cached);
        rooms.locks.remove(&room_id);
        tracing::info!(delete_id, room_id = %room, rows = purged, "room purged");
    }
    set_status(rooms, delete_id, "complete").await?;
    tracing::info!(delete_id, room_id = %room, admin, "room deletion complete");
    Ok(())
}

/// Shuts the room: blocked if asked, its local members out (into a new room if asked), its
/// aliases gone (or moved to the new room) and out of the directory.
async fn shutdown(rooms: &Arc<Rooms>, room_id: &RoomId, admin: &str, params: &Params) -> Result<Outcome> {
    let room = room_id.as_str();
    if params.block {
        rooms.set_block(admin, room, true).await?;
    }
    let mut outcome = Outcome::default();
    if let Some(owner) = params.new_room_user_id.as_deref() {
        let created = rooms
            .create_room(CreateRoomRequest {
                sender: owner.to_owned(),
                name: Some(params.room_name.clone().unwrap_or_else(|| DEFAULT_ROOM_NAME.into())),
                preset: "public_chat".into(),
                visibility: "private".into(),
                power_level_content_override_json: Some(json!({"users_default": -10}).to_string()),
                ..CreateRoomRequest::default()
            })
            .await?;
        let body = params.message.clone().unwrap_or_else(|| DEFAULT_MESSAGE.into());
        rooms
            .send_event(SendEventRequest {
                sender: owner.to_owned(),
                room_id: created.room_id.clone(),
                event_type: "m.room.message".into(),
                content_json: json!({"msgtype": "m.text", "body": body}).to_string(),
                ..SendEventRequest::default()
            })
            .await?;
        outcome.new_room_id = Some(created.room_id);
    }
    let members: Vec<(String, String)> = {
        let client = rooms.pool.get().await?;
        client
            .query(SELECT_LOCAL_MEMBERS, &[&room, &rooms.server_name()])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    for (user, membership) in members {
        let Ok(user_id) = UserId::parse(user.as_str()) else { continue };
        if let Some(new_room) = outcome.new_room_id.as_deref()
            && membership == "join"
            && Some(user.as_str()) != params.new_room_user_id.as_deref()
        {
            let new_room = <&RoomId>::try_from(new_room).map_err(Error::internal)?;
            let mut join = Map::new();
            join.insert("membership".into(), Value::String("join".into()));
            if let Err(e) = rooms.send_membership(&user_id, new_room, &user_id, join, None).await {
                tracing::warn!(user_id = %user, error = %e, "moving a member to the new room failed");
            }
        }
        let mut leave = Map::new();
        leave.insert("membership".into(), Value::String("leave".into()));
        match rooms.send_membership(&user_id, room_id, &user_id, leave, None).await {
            Ok(_) => outcome.kicked_users.push(user),
            Err(e) => {
                tracing::warn!(user_id = %user, error = %e, "a member could not be made to leave");
                outcome.failed_to_kick_users.push(user);
            }
        }
    }
    let client = rooms.pool.get().await?;
    outcome.local_aliases = client.query(SELECT_ALIASES, &[&room]).await?.iter().map(|r| r.get(0)).collect();
    match outcome.new_room_id.as_deref() {
        Some(new_room) => client.execute(MOVE_ALIASES, &[&room, &new_room]).await?,
        None => client.execute(DELETE_ALIASES, &[&room]).await?,
    };
    client.execute(UNLIST, &[&room]).await?;
    Ok(outcome)
}
