//! The published room directory: a room's visibility in it (`/directory/list/room/{roomId}`)
//! and the listing itself (`/publicRooms`), most-joined first, searchable by name, topic and
//! alias, paginated by offset tokens.

use ruma::{RoomId, UserId, events::StateEventType};
use serde_json::{Map, Value, json};
use trellis_core::{Error, Result};
use trellis_proto::rooms::{
    DirectoryVisibility, Empty, GetDirectoryVisibilityRequest, PublicRoomsRequest, PublicRoomsResponse,
    SetAppserviceListingRequest, SetDirectoryVisibilityRequest,
};

use crate::Rooms;

const SELECT_PUBLIC: &str = "SELECT is_public FROM rooms WHERE room_id = $1";
const UPDATE_PUBLIC: &str = "UPDATE rooms SET is_public = $2 WHERE room_id = $1";
const LIST_FOR_APPSERVICE: &str = "INSERT INTO appservice_room_lists (appservice_id, network_id, room_id) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const UNLIST_FOR_APPSERVICE: &str =
    "DELETE FROM appservice_room_lists WHERE appservice_id = $1 AND network_id = $2 AND room_id = $3";
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 500;

/// Published rooms with their summary, filtered by `$1` (an ILIKE pattern or NULL) and
/// room types (`$2` on: `$3` lists them, `''` for none), ordered and paged by `$4`/`$5`; the
/// main list, or with `$6` every list, or with `$7` one appservice network's list.
const LIST_PUBLIC: &str = concat!(
    "WITH listed AS ( \
       SELECT r.room_id, \
         (SELECT count(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join') AS joined, \
         s.* \
       FROM rooms r ",
    room_state_summary!(),
    "WHERE CASE WHEN $7::text IS NOT NULL THEN EXISTS (SELECT 1 FROM appservice_room_lists l \
         WHERE l.room_id = r.room_id AND l.appservice_id || '|' || l.network_id = $7) \
       WHEN $6 THEN r.is_public OR EXISTS (SELECT 1 FROM appservice_room_lists l WHERE l.room_id = r.room_id) \
       ELSE r.is_public END) \
     SELECT room_id, joined, name, topic, alias, avatar, join_rule, hv, guests, room_type, count(*) OVER () \
     FROM listed \
     WHERE ($1::text IS NULL OR name ILIKE $1 OR topic ILIKE $1 OR alias ILIKE $1) \
       AND (NOT $2 OR COALESCE(room_type, '') = ANY($3)) \
     ORDER BY joined DESC, room_id LIMIT $4 OFFSET $5"
);

impl Rooms {
    pub(crate) async fn get_directory_visibility(
        &self,
        req: GetDirectoryVisibilityRequest,
    ) -> Result<DirectoryVisibility> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_PUBLIC).await?;
        let row = client.query_opt(&stmt, &[&req.room_id]).await?.ok_or_else(|| Error::not_found("Room not found"))?;
        let visibility = if row.get::<_, bool>(0) { "public" } else { "private" };
        Ok(DirectoryVisibility { visibility: visibility.into() })
    }

    /// Publishes or unpublishes a room; its members who may change the canonical alias may
    /// (like Synapse).
    #[tracing::instrument(skip_all, fields(sender = %req.sender, room_id = %req.room_id))]
    pub(crate) async fn set_directory_visibility(&self, req: SetDirectoryVisibilityRequest) -> Result<Empty> {
        let public = match req.visibility.as_str() {
            "public" => true,
            "private" => false,
            other => return Err(Error::invalid_param(format!("unknown visibility {other:?}"))),
        };
        let sender = UserId::parse(&req.sender)?;
        let room_id = RoomId::parse(&req.room_id).map_err(|_| Error::not_found("Room not found"))?;
        let state = self.snapshot(&room_id).await?;
        if state.membership(sender.as_str()).as_deref() != Some("join")
            || !state.power_levels().user_can_send_state(&sender, StateEventType::RoomCanonicalAlias)
        {
            return Err(Error::forbidden("You may not change the room's directory visibility"));
        }
        let client = self.pool.get().await?;
        client.execute(&client.prepare_cached(UPDATE_PUBLIC).await?, &[&room_id.as_str(), &public]).await?;
        Ok(Empty {})
    }

    /// An appservice's network list: any room the server knows may be listed (as Synapse).
    #[tracing::instrument(skip_all, fields(appservice = %req.appservice_id, room_id = %req.room_id))]
    pub(crate) async fn set_appservice_listing(&self, req: SetAppserviceListingRequest) -> Result<Empty> {
        let client = self.pool.get().await?;
        let known = client.query_opt(&client.prepare_cached(SELECT_PUBLIC).await?, &[&req.room_id]).await?;
        if known.is_none() {
            return Err(Error::not_found("Room not found"));
        }
        let stmt = match req.listed {
            true => client.prepare_cached(LIST_FOR_APPSERVICE).await?,
            false => client.prepare_cached(UNLIST_FOR_APPSERVICE).await?,
        };
        client.execute(&stmt, &[&req.appservice_id, &req.network_id, &req.room_id]).await?;
        Ok(Empty {})
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn public_rooms(&self, req: PublicRoomsRequest) -> Result<PublicRoomsResponse> {
        if let Some(server) = req.server.as_deref().filter(|s| !s.is_empty())
            && server != self.server_name()
        {
            return Err(Error::not_found("Other servers' directories are not available"));
        }
        let limit = req.limit.filter(|l| *l > 0).unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        let offset = match req.since.as_deref().filter(|s| !s.is_empty()) {
            None => 0,
            Some(token) => parse_token(token)?,
        };
        let pattern = req
            .search_term
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| format!("%{}%", t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(LIST_PUBLIC).await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &pattern,
                    &req.filter_room_types,
                    &req.room_types,
                    &i64::from(limit),
                    &offset,
                    &req.include_all_networks,
                    &req.third_party_instance_id,
                ],
            )
            .await?;
        let total = rows.first().map_or(0, |r| r.get::<_, i64>(10)) as u64;
        let chunk_json = rows.iter().map(|r| chunk(r).to_string()).collect();
        let next = offset + rows.len() as i64;
        Ok(PublicRoomsResponse {
            chunk_json,
            next_batch: (next < total as i64).then(|| token(next)),
            prev_batch: (offset > 0).then(|| token((offset - i64::from(limit)).max(0))),
            total_room_count_estimate: total,
        })
    }
}

fn token(offset: i64) -> String {
    format!("p{offset}")
}

fn parse_token(token: &str) -> Result<i64> {
    token
        .strip_prefix('p')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| Error::invalid_param("invalid since token"))
}

/// One `PublicRoomsChunk` from a row of [`LIST_PUBLIC`].
fn chunk(r: &tokio_postgres::Row) -> Value {
    let mut c = Map::new();
    c.insert("room_id".into(), json!(r.get::<_, String>(0)));
    c.insert("num_joined_members".into(), json!(r.get::<_, i64>(1)));
    for (i, key) in [(2, "name"), (3, "topic"), (4, "canonical_alias"), (5, "avatar_url"), (9, "room_type")] {
        if let Some(v) = r.get::<_, Option<String>>(i) {
            c.insert(key.into(), json!(v));
        }
    }
    c.insert("join_rule".into(), json!(r.get::<_, Option<String>>(6).unwrap_or_else(|| "public".into())));
    c.insert("world_readable".into(), json!(r.get::<_, Option<&str>>(7) == Some("world_readable")));
    c.insert("guest_can_join".into(), json!(r.get::<_, Option<&str>>(8) == Some("can_join")));
    Value::Object(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        assert_eq!(parse_token(&token(40)).unwrap(), 40);
        for bad in ["40", "p-1", "px", "s5"] {
            assert!(parse_token(bad).is_err(), "{bad}");
        }
    }
}
