//! Room upgrades (`POST /rooms/{roomId}/upgrade`) between any two supported versions: a new
//! room whose create event names its predecessor (and, before v12, the old room's tombstone),
//! with the old room's important state and bans copied; local aliases and the directory
//! listing move over; the old room gets the tombstone and its power levels are raised so
//! ordinary members can no longer speak or invite there. The tombstone is built first under
//! the old room's lock and stored once the new room exists, so each can name the other.

use ruma::{OwnedUserId, RoomId, RoomVersionId, UserId, events::StateEventType};
use serde_json::{Map, Value, json};
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::rooms::{UpgradeRoomRequest, UpgradeRoomResponse};

use crate::{
    Rooms,
    create::member_content,
    new_event::{NewEvent, object},
    power_copy::{fixed_up, raise_for_copy, restricted},
    state::{RoomState, membership_of, rules_for},
    writer::NewRoom,
};

/// State copied to the new room as it is (Synapse's list, with the canonical alias that
/// moves with the aliases).
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
        let rules = rules_for(&version).map_err(|_| unsupported(&req.new_version))?;
        let privileged = rules.authorization.explicitly_privilege_room_creators;
        let additional_creators = req
            .additional_creators
            .iter()
            .map(|u| trellis_core::ids::parse_user_id(u))
            .collect::<Result<Vec<OwnedUserId>>>()?;
        let additional_creators = if privileged { additional_creators } else { Vec::new() };

        let mut old = self.open_batch(&old_id, None).await.map_err(|e| match e.code() {
            ErrorCode::NotFound => Error::not_found(format!("Unknown room {old_id}")),
            _ => e,
        })?;
        let refusal = if old.room.membership(sender.as_str()).as_deref() != Some("join") {
            Some(Error::forbidden("You are not in this room"))
        } else if !old.room.power_levels().user_can_send_state(&sender, StateEventType::RoomTombstone) {
            Some(Error::forbidden("You do not have the power to upgrade this room"))
        } else {
            None
        };
        if let Some(e) = refusal {
            old.release();
            return Err(e);
        }
        let is_public: bool = {
            let client = self.pool.get().await?;
            client.query_one(&client.prepare_cached(SELECT_PUBLIC).await?, &[&old_id.as_str()]).await?.get(0)
        };

        // From v12 the new room is named after its create event, which therefore cannot name
        // the tombstone; before, the room ID comes first and the create event cites the
        // tombstone.
        let mut create = successor_create(&old.room, &sender, &version, &additional_creators)?;
        let mut built = None;
        let new_id = if rules.authorization.room_create_event_id_as_room_id {
            let (id, b) = self.build_create(&version, &sender, object(Value::Object(create.clone()))?, None)?;
            built = Some(b);
            id
        } else {
            RoomId::new_v1(&self.settings.server_name)
        };
        let tombstone = json!({ "body": "This room has been replaced", "replacement_room": new_id.as_str() });
        let tombstone = self.add(&mut old, NewEvent::state(&sender, "m.room.tombstone", "", tombstone)?)?;
        let create = match built {
            Some(b) => b,
            None => {
                create["predecessor"]["event_id"] = json!(tombstone.event_id);
                self.build_create(&version, &sender, object(Value::Object(create))?, Some(new_id.clone()))?.1
            }
        };
        let state = RoomState::new(new_id.clone(), version)?;
        let events = self.successor_events(&old.room, &state, &sender, &additional_creators).await?;
        let new_room = NewRoom { state, create, creator: sender.to_string(), is_public, alias: None };
        self.append(&new_id, Some(new_room), events).await?;
        let old_state = old.room.clone();
        self.commit(old).await?;
        {
            let client = self.pool.get().await?;
            client.execute(&client.prepare_cached(MOVE_ALIASES).await?, &[&old_id.as_str(), &new_id.as_str()]).await?;
            client.execute(&client.prepare_cached(UNPUBLISH).await?, &[&old_id.as_str()]).await?;
        }
        self.retire(&old_state, &sender).await;
        tracing::info!(old = %old_id, new = %new_id, "room upgraded");
        Ok(UpgradeRoomResponse { replacement_room: new_id.to_string() })
    }

    /// The new room's events after its create event: the upgrader's join, power levels (the
    /// upgrader raised while the state is copied when the version ranks creators by power
    /// level), the copied state and bans, then the final power levels.
    async fn successor_events(
        &self,
        old: &RoomState,
        new: &RoomState,
        sender: &UserId,
        additional_creators: &[OwnedUserId],
    ) -> Result<Vec<NewEvent>> {
        let profile = self.member_profile(sender).await?;
        let mut events =
            vec![NewEvent::state(sender, "m.room.member", sender.as_str(), member_content("join", &profile, false))?];

        let old_pl = old.content(&StateEventType::RoomPowerLevels, "").unwrap_or_else(|| json!({}));
        let mut power_levels = fixed_up(&old_pl);
        let top = crate::power_copy::top_level(&power_levels);
        let users = power_levels.as_object_mut().expect("fixed_up returns an object").entry("users");
        let users = users.or_insert_with(|| json!({}));
        if new.creators_privileged() {
            // Creators have infinite power and may not be listed.
            if let Some(users) = users.as_object_mut() {
                users.remove(sender.as_str());
                for c in additional_creators {
                    users.remove(c.as_str());
                }
            }
        } else if old.creators_privileged() && old.creators().iter().any(|c| c == sender) {
            // A creator of a v12 room, unlisted there, keeps the top power in the new room.
            users[sender.as_str()] = json!(top);
        }
        let raised = (!new.creators_privileged()).then(|| raise_for_copy(&power_levels, sender)).flatten();
        events.push(NewEvent::state(
            sender,
            "m.room.power_levels",
            "",
            raised.clone().unwrap_or(power_levels.clone()),
        )?);
        for kind in COPIED_STATE {
            // The new room is made as Synapse makes it: from the private_chat preset, which the
            // copied state overrides; without a guest_access of its own, guests may join.
            let preset = (*kind == "m.room.guest_access").then(|| json!({ "guest_access": "can_join" }));
            if let Some(content) = old.content(&StateEventType::from(*kind), "").or(preset) {
                events.push(NewEvent::state(sender, kind, "", content)?);
            }
        }
        // A space keeps its children.
        if old.content_str(&StateEventType::RoomCreate, "", "type").as_deref() == Some("m.space") {
            for ((kind, key), pdu) in &old.state {
                let content = serde_json::from_str::<Map<String, Value>>(pdu.content_str()).unwrap_or_default();
                if kind.to_string() == "m.space.child" && !content.is_empty() {
                    events.push(NewEvent::state(sender, "m.space.child", key, Value::Object(content))?);
                }
            }
        }
        for ((kind, key), pdu) in &old.state {
            if *kind == StateEventType::RoomMember && membership_of(pdu).as_deref() == Some("ban") {
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
        if let Some(pl) = old.content(&StateEventType::RoomPowerLevels, "").and_then(|pl| restricted(&pl)) {
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

/// The new room's create content: the version, the predecessor, what carries over from the
/// old create event (`m.federate`, `type`), the creator field of versions that have one and
/// the additional creators of versions that privilege creators.
fn successor_create(
    old: &RoomState,
    sender: &UserId,
    version: &RoomVersionId,
    additional_creators: &[OwnedUserId],
) -> Result<Map<String, Value>> {
    let rules = rules_for(version)?;
    let old_create = old.content(&StateEventType::RoomCreate, "").unwrap_or_else(|| json!({}));
    let mut create = Map::new();
    create.insert("room_version".into(), json!(version.as_str()));
    create.insert("predecessor".into(), json!({ "room_id": old.room_id }));
    for kept in ["m.federate", "type"] {
        if let Some(v) = old_create.get(kept) {
            create.insert(kept.into(), v.clone());
        }
    }
    if !rules.authorization.use_room_create_sender {
        create.insert("creator".into(), json!(sender));
    }
    if !additional_creators.is_empty() {
        create.insert("additional_creators".into(), json!(additional_creators));
    }
    Ok(create)
}

fn unsupported(version: &str) -> Error {
    Error::new(ErrorCode::UnsupportedRoomVersion, format!("room version {version} is not supported by this server"))
}
