//! Making a local user a room admin (the admin API's `make_room_admin`): the local member
//! with the most power raises the user to that power, after inviting them (or letting them
//! join a public room) when they are not in the room yet.

use ruma::{OwnedUserId, UserId, events::StateEventType};
use serde_json::{Map, Value, json};
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::rooms::{AdminMakeRoomAdminRequest, Empty};

use crate::{
    Rooms,
    new_event::{NewEvent, object},
};

const SELECT_LOCAL_JOINED: &str = "SELECT user_id FROM memberships WHERE room_id = $1 AND membership = 'join' \
     AND right(user_id, length($2) + 1) = ':' || $2 ORDER BY user_id";

/// The power a room's creators have when the version gives them infinite power (v12): any
/// level they choose; this one is a room admin's.
const ADMIN_LEVEL: i64 = 100;

impl Rooms {
    #[tracing::instrument(skip_all, fields(room_id = %req.room_id, user_id = %req.user_id))]
    pub(crate) async fn admin_make_room_admin(&self, req: AdminMakeRoomAdminRequest) -> Result<Empty> {
        let room_id = self.resolve_room(&req.room_id).await?;
        let target = UserId::parse(&req.user_id).map_err(|_| Error::invalid_param("invalid user ID"))?;
        if target.server_name() != self.settings.server_name {
            return Err(Error::invalid_param("Only local users can be made room admins"));
        }
        self.known_room(room_id.as_str()).await?;
        let state = self.snapshot(&room_id).await?;
        let privileged = state.creators_privileged();
        let creators = state.creators();
        let mut levels = state
            .content(&StateEventType::RoomPowerLevels, "")
            .and_then(|c| c.as_object().cloned())
            .unwrap_or_default();
        let users = levels.get("users").and_then(Value::as_object).cloned().unwrap_or_default();
        let level_of = |user: &str| -> Option<i64> {
            if privileged && creators.iter().any(|c| c == user) {
                return Some(i64::MAX);
            }
            users.get(user).and_then(Value::as_i64).or_else(|| levels.get("users_default").and_then(Value::as_i64))
        };
        let local: Vec<String> = {
            let client = self.pool.get().await?;
            client
                .query(SELECT_LOCAL_JOINED, &[&room_id.as_str(), &self.server_name()])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        let needed = levels
            .get("events")
            .and_then(|e| e.get("m.room.power_levels"))
            .and_then(Value::as_i64)
            .or_else(|| levels.get("state_default").and_then(Value::as_i64))
            .unwrap_or(50);
        let best =
            local.iter().filter_map(|u| level_of(u).map(|l| (l, u))).max_by_key(|(l, u)| (*l, std::cmp::Reverse(*u)));
        let Some((best_level, admin)) = best.filter(|(l, _)| *l >= needed) else {
            return Err(Error::new(ErrorCode::InvalidParam, "No local member of the room may change its power levels"));
        };
        let admin: OwnedUserId = UserId::parse(admin.as_str())?;
        let target_level = if best_level == i64::MAX {
            users.values().filter_map(Value::as_i64).max().unwrap_or(ADMIN_LEVEL).max(ADMIN_LEVEL)
        } else {
            best_level
        };

        match state.membership(target.as_str()).as_deref() {
            Some("join") => {}
            _ => {
                let mut content = Map::new();
                if state.join_rule() == "public" {
                    content.insert("membership".into(), json!("join"));
                    self.send_membership(&target, &room_id, &target, content, None).await?;
                } else if state.membership(target.as_str()).as_deref() != Some("invite") {
                    content.insert("membership".into(), json!("invite"));
                    self.send_membership(&admin, &room_id, &target, content, None).await?;
                }
            }
        }
        if privileged && creators.contains(&target) {
            return Ok(Empty {});
        }
        let mut users = users;
        users.insert(target.to_string(), json!(target_level));
        levels.insert("users".into(), Value::Object(users));
        let event = NewEvent {
            sender: admin.clone(),
            kind: "m.room.power_levels".into(),
            state_key: Some(String::new()),
            content: object(Value::Object(levels))?,
            txn: None,
            redacts: None,
            origin_server_ts: None,
        };
        self.append(&room_id, None, vec![event]).await?;
        tracing::info!(room_id = %room_id, user_id = %target, by = %admin, level = target_level, "made room admin");
        Ok(Empty {})
    }
}
