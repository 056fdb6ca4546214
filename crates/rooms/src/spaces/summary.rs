//! A room's summary (the spec's `RoomSummary`: name, topic, alias, avatar, type, members,
//! join rule, visibility, encryption, version) from its current state, and who may see it
//! without being in it: the rules `/hierarchy` and `/room_summary` share.

use ruma::{RoomId, UserId};
use serde_json::Value;
use trellis_core::{Error, Result};
use trellis_proto::rooms::{RoomSummary, RoomSummaryRequest, RoomSummaryResponse};

use crate::Rooms;

const SUMMARY: &str = concat!(
    "SELECT r.room_id, r.room_version, \
       (SELECT count(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join'), \
       s.name, s.topic, s.alias, s.avatar, s.join_rules, s.hv, s.guests, s.room_type, s.encryption \
     FROM rooms r ",
    room_state_summary!(),
    "WHERE r.room_id = $1"
);
const SELECT_MEMBERSHIP: &str = "SELECT membership FROM memberships WHERE user_id = $1 AND room_id = $2";
const JOINED_ANY: &str =
    "SELECT EXISTS (SELECT 1 FROM memberships WHERE user_id = $1 AND room_id = ANY($2) AND membership = 'join')";

/// A room's summary, as stored now; `None` for a room this server does not know.
pub(crate) async fn load(client: &deadpool_postgres::Client, room_id: &str) -> Result<Option<RoomSummary>> {
    let stmt = client.prepare_cached(SUMMARY).await?;
    let Some(r) = client.query_opt(&stmt, &[&room_id]).await? else { return Ok(None) };
    let join_rules: Option<Value> = r.get::<_, Option<String>>(7).and_then(|c| serde_json::from_str(&c).ok());
    let join_rule = join_rules.as_ref().and_then(|c| c["join_rule"].as_str()).unwrap_or("invite").to_owned();
    let allowed_room_ids = if matches!(join_rule.as_str(), "restricted" | "knock_restricted") {
        join_rules
            .as_ref()
            .and_then(|c| c["allow"].as_array())
            .into_iter()
            .flatten()
            .filter(|a| a["type"] == "m.room_membership")
            .filter_map(|a| a["room_id"].as_str().filter(|id| RoomId::parse(id).is_ok()).map(str::to_owned))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Some(RoomSummary {
        room_id: r.get(0),
        room_version: r.get(1),
        num_joined_members: r.get::<_, i64>(2).max(0) as u64,
        name: r.get(3),
        topic: r.get(4),
        canonical_alias: r.get(5),
        avatar_url: r.get(6),
        join_rule,
        allowed_room_ids,
        world_readable: r.get::<_, Option<&str>>(8) == Some("world_readable"),
        guest_can_join: r.get::<_, Option<&str>>(9) == Some("can_join"),
        room_type: r.get(10),
        encryption: r.get(11),
    }))
}

/// The user's membership of a room, if any.
pub(crate) async fn membership(client: &deadpool_postgres::Client, user: &str, room: &str) -> Result<Option<String>> {
    let stmt = client.prepare_cached(SELECT_MEMBERSHIP).await?;
    Ok(client.query_opt(&stmt, &[&user, &room]).await?.map(|r| r.get(0)))
}

/// Whether `user` (or anyone, for `None`) may see a room they are not necessarily in
/// (spec: `GET /hierarchy`): a member or invitee, or a room one may join, knock on or read
/// without being in it, or a restricted room whose allowed rooms the user is in. A banned
/// user sees only a world-readable room.
pub(crate) async fn accessible(
    client: &deadpool_postgres::Client,
    user: Option<&str>,
    s: &RoomSummary,
) -> Result<bool> {
    let mine = match user {
        Some(u) => membership(client, u, &s.room_id).await?,
        None => None,
    };
    if s.world_readable || matches!(mine.as_deref(), Some("join" | "invite")) {
        return Ok(true);
    }
    if mine.as_deref() == Some("ban") {
        return Ok(false);
    }
    Ok(match s.join_rule.as_str() {
        "public" | "knock" | "knock_restricted" => true,
        "restricted" => match user {
            Some(u) => {
                let stmt = client.prepare_cached(JOINED_ANY).await?;
                client.query_one(&stmt, &[&u, &s.allowed_room_ids]).await?.get(0)
            }
            None => false,
        },
        _ => false,
    })
}

impl Rooms {
    /// # `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`
    #[tracing::instrument(skip_all, fields(room = %req.room))]
    pub(crate) async fn get_room_summary(&self, req: RoomSummaryRequest) -> Result<RoomSummaryResponse> {
        let not_found = || Error::not_found("Room not found or not accessible");
        if let Some(user) = &req.user_id {
            UserId::parse(user)?;
        }
        let room_id = match self.resolve_room(&req.room).await {
            Ok(id) => id,
            Err(e) if e.code() == trellis_core::ErrorCode::NotFound => return Err(not_found()),
            Err(e) => return Err(e),
        };
        let client = self.pool.get().await?;
        let summary = load(&client, room_id.as_str()).await?.ok_or_else(not_found)?;
        if !accessible(&client, req.user_id.as_deref(), &summary).await? {
            return Err(not_found());
        }
        let membership = match &req.user_id {
            Some(user) => Some(membership(&client, user, room_id.as_str()).await?.unwrap_or_else(|| "leave".into())),
            None => None,
        };
        Ok(RoomSummaryResponse { summary: Some(summary), membership })
    }
}
