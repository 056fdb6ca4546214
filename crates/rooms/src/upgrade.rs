//! Room upgrades (`POST /rooms/{roomId}/upgrade`): a new room of the requested version whose
//! create event names its predecessor, with the old room's important state and bans copied;
//! local aliases and the directory listing move over; the old room gets a tombstone and its
//! power levels are raised so ordinary members can no longer speak or invite there.

use ruma::{RoomId, RoomVersionId, UserId, events::StateEventType};
use serde_json::{Value, json};
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::rooms::{UpgradeRoomRequest, UpgradeRoomResponse};

use crate::{
    Rooms,
    create::member_content,
    state::{RoomState, rules_for},
    writer::{NewEvent, NewRoom},
};

/// State copied to the new room as it is (Synapse's list).
const COPIED_STATE: &[&str] = &[
    "m.room.join_rules",
    "m.room.name",
    "m.room.topic",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
    "m.room.canonical_alias",
];

const SELECT_PUBLIC: &str = "SELECT is_public FROM rooms WHERE room_id = $1";
const MOVE_ALIASES: &str = "UPDATE room_aliases SET room_id = $2 WHERE room_id = $1";
const UNPUBLISH: &str = "UPDATE rooms SET is_public = FALSE WHERE room_id = $1";

impl Rooms {
    #[tracing::instrument(skip_all, fields(sender = %req.sender, room_id = %req.room_id, version = %req.new_version))]
    pub(crate) async fn upgrade_room(&self, req: UpgradeRoomRequest) -> Result<UpgradeRoomResponse> {
        let sender = UserId::parse(&req.sender)?;
        let old_id = RoomId::parse(&req.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        let version = RoomVersionId::try_from(req.new_version.as_str()).map_err(|_| unsupported(&req.new_version))?;
        rules_for(&version).map_err(|_| unsupported(&req.new_version))?;
        let old = self.snapshot(&old_id).await.map_err(|e| match e.code() {
            ErrorCode::NotFound => Error::forbidden("You are not in this room"),
            _ => e,
        })?;
        if old.membership(sender.as_str()).as_deref() != Some("join") {
            return Err(Error::forbidden("You are not in this room"));
        }
        if !old.power_levels().user_can_send_state(&sender, StateEventType::RoomTombstone) {
            return Err(Error::forbidden("You do not have the power to upgrade this room"));
        }

        let new_id = RoomId::new_v1(&self.settings.server_name);
        let events = self.successor_events(&old, &sender, &version).await?;
        let is_public: bool = {
            let client = self.pool.get().await?;
            client.query_one(&client.prepare_cached(SELECT_PUBLIC).await?, &[&old_id.as_str()]).await?.get(0)
        };
        let new_room = NewRoom {
            state: RoomState::new(new_id.clone(), version)?,
            creator: sender.to_string(),
            is_public,
            alias: None,
        };
        self.append(&new_id, Some(new_room), events).await?;
        {
            let client = self.pool.get().await?;
            client.execute(&client.prepare_cached(MOVE_ALIASES).await?, &[&old_id.as_str(), &new_id.as_str()]).await?;
            client.execute(&client.prepare_cached(UNPUBLISH).await?, &[&old_id.as_str()]).await?;
        }

        let tombstone = json!({ "body": "This room has been replaced", "replacement_room": new_id.as_str() });
        self.append(&old_id, None, vec![NewEvent::state(&sender, "m.room.tombstone", "", tombstone)?]).await?;
        self.retire(&old, &sender).await;
        tracing::info!(old = %old_id, new = %new_id, "room upgraded");
        Ok(UpgradeRoomResponse { replacement_room: new_id.to_string() })
    }

    /// The new room's initial events, the upgrader's power raised while the state is copied.
    async fn successor_events(
        &self,
        old: &RoomState,
        sender: &UserId,
        version: &RoomVersionId,
    ) -> Result<Vec<NewEvent>> {
        let mut create = old.content(&StateEventType::RoomCreate, "").unwrap_or_else(|| json!({}));
        let c = create.as_object_mut().ok_or_else(|| Error::internal("create content is not an object"))?;
        c.remove("creator");
        c.insert("room_version".into(), json!(version.as_str()));
        c.insert("predecessor".into(), json!({ "room_id": old.room_id, "event_id": old.latest }));
        if !rules_for(version)?.authorization.use_room_create_sender {
            c.insert("creator".into(), json!(sender));
        }
        let mut events = vec![NewEvent::state(sender, "m.room.create", "", create)?];
        let profile = self.member_profile(sender).await?;
        events.push(NewEvent::state(
            sender,
            "m.room.member",
            sender.as_str(),
            member_content("join", &profile, false),
        )?);

        let power_levels = old.content(&StateEventType::RoomPowerLevels, "").unwrap_or_else(|| json!({}));
        let raised = raise_for_copy(&power_levels, old.power_levels().for_user(sender), sender);
        events.push(NewEvent::state(
            sender,
            "m.room.power_levels",
            "",
            raised.clone().unwrap_or(power_levels.clone()),
        )?);
        for kind in COPIED_STATE {
            if let Some(content) = old.content(&StateEventType::from(*kind), "") {
                events.push(NewEvent::state(sender, kind, "", content)?);
            }
        }
        for ((kind, key), pdu) in &old.state {
            if *kind == StateEventType::RoomMember && crate::state::membership_of(pdu).as_deref() == Some("ban") {
                events.push(NewEvent::state(sender, "m.room.member", key, json!({ "membership": "ban" }))?);
            }
        }
        if raised.is_some() {
            events.push(NewEvent::state(sender, "m.room.power_levels", "", power_levels)?);
        }
        Ok(events)
    }

    /// Makes the old room quiet: no canonical alias, and speaking and inviting need power
    /// (like Synapse). Best effort: the upgrade stands even if the sender may not do this.
    async fn retire(&self, old: &RoomState, sender: &UserId) {
        let mut events = Vec::new();
        if old.get(&StateEventType::RoomCanonicalAlias, "").is_some() {
            events.push(NewEvent::state(sender, "m.room.canonical_alias", "", json!({})));
        }
        if let Some(mut pl) = old.content(&StateEventType::RoomPowerLevels, "") {
            let users_default = pl.get("users_default").and_then(Value::as_i64).unwrap_or(0);
            let restricted = 50.max(users_default + 1);
            pl["events_default"] = json!(restricted);
            pl["invite"] = json!(restricted);
            events.push(NewEvent::state(sender, "m.room.power_levels", "", pl));
        }
        for event in events {
            let result = match event {
                Ok(e) => self.append(&old.room_id, None, vec![e]).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::info!(error = ?e, room_id = %old.room_id, "old room left partly unrestricted");
            }
        }
    }
}

/// The power levels with `sender` raised to what copying state needs (the highest of
/// `state_default`, `ban` and every event level), or `None` when they already suffice.
fn raise_for_copy(
    pl: &Value,
    current: ruma::events::room::power_levels::UserPowerLevel,
    sender: &UserId,
) -> Option<Value> {
    let level = |k: &str, default: i64| pl.get(k).and_then(Value::as_i64).unwrap_or(default);
    let events_max = pl
        .get("events")
        .and_then(Value::as_object)
        .map_or(0, |e| e.values().filter_map(Value::as_i64).max().unwrap_or(0));
    let needed = level("state_default", 50).max(level("ban", 50)).max(events_max);
    if current >= ruma::Int::new_saturating(needed) {
        return None;
    }
    let mut raised = pl.clone();
    raised["users"][sender.as_str()] = json!(needed);
    Some(raised)
}

fn unsupported(version: &str) -> Error {
    Error::new(ErrorCode::UnsupportedRoomVersion, format!("room version {version} is not supported by this server"))
}
