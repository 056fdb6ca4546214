//! A room's current state held in memory while the room is written to: the state map the
//! authorization rules read, the forward extremity and depth the next event builds on.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    OwnedRoomId, OwnedUserId, RoomVersionId,
    events::{
        StateEventType,
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
    },
    room_version_rules::RoomVersionRules,
};
use trellis_core::{Error, Result};

use crate::pdu::{EventRef, Pdu};

pub type StateKey = (StateEventType, String);

#[derive(Clone)]
pub struct RoomState {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub rules: RoomVersionRules,
    pub state: HashMap<StateKey, Arc<Pdu>>,
    /// The forward extremity the next event cites.
    pub latest: Option<EventRef>,
    pub depth: i64,
}

const SELECT_ROOM: &str = "SELECT r.room_version, r.latest_event_id, r.depth, e.pdu FROM rooms r \
     LEFT JOIN events e ON e.event_id = r.latest_event_id WHERE r.room_id = $1";
const SELECT_STATE: &str = "SELECT e.event_id, e.pdu FROM current_state c JOIN events e ON e.event_id = c.event_id \
     WHERE c.room_id = $1";

impl RoomState {
    /// A room about to be created.
    pub fn new(room_id: OwnedRoomId, version: RoomVersionId) -> Result<RoomState> {
        let rules = rules_for(&version)?;
        Ok(RoomState { room_id, version, rules, state: HashMap::new(), latest: None, depth: 0 })
    }

    /// Loads a room's current state; `None` if the room does not exist.
    pub async fn load(client: &deadpool_postgres::Client, room_id: &str) -> Result<Option<RoomState>> {
        let Some(row) = client.query_opt(SELECT_ROOM, &[&room_id]).await? else { return Ok(None) };
        let version = RoomVersionId::try_from(row.get::<_, String>(0))
            .map_err(|_| Error::internal("stored room version is invalid"))?;
        let mut room = RoomState::new(ruma::RoomId::parse(room_id)?, version)?;
        if let (Some(id), Some(pdu)) = (row.get::<_, Option<&str>>(1), row.get::<_, Option<&str>>(3)) {
            room.latest = Some(Pdu::from_stored(id, pdu, &room.rules)?.reference());
        }
        room.depth = row.get(2);
        let stmt = client.prepare_cached(SELECT_STATE).await?;
        for row in client.query(&stmt, &[&room_id]).await? {
            let pdu = Pdu::from_stored(row.get(0), row.get(1), &room.rules)?;
            room.insert(Arc::new(pdu));
        }
        Ok(Some(room))
    }

    pub fn get(&self, kind: &StateEventType, state_key: &str) -> Option<&Arc<Pdu>> {
        self.state.get(&(kind.clone(), state_key.to_owned()))
    }

    /// Applies a new state event (no-op for message events).
    pub fn insert(&mut self, pdu: Arc<Pdu>) {
        if let Some(key) = &pdu.state_key {
            self.state.insert((pdu.kind.to_string().into(), key.clone()), pdu);
        }
    }

    /// Strips a redacted event if it is part of the current state (the auth rules then see
    /// what every other reader sees).
    pub fn redact(&mut self, event_id: &ruma::EventId) -> Result<()> {
        let found = self.state.iter().find(|(_, p)| p.event_id == event_id).map(|(k, p)| (k.clone(), p.clone()));
        if let Some((key, pdu)) = found {
            self.state.insert(key, Arc::new(pdu.redacted(&self.rules.redaction)?));
        }
        Ok(())
    }

    /// The `membership` of `user_id` in the current state, if any.
    pub fn membership(&self, user_id: &str) -> Option<String> {
        let pdu = self.get(&StateEventType::RoomMember, user_id)?;
        membership_of(pdu)
    }

    /// The room's creators as the version defines them (ruma's reading of the create event):
    /// its `creator` (v1–v10), its sender (v11), or its sender and `additional_creators` (v12).
    pub fn creators(&self) -> Vec<OwnedUserId> {
        let Some(create) = self.get(&StateEventType::RoomCreate, "") else { return Vec::new() };
        let mut creators: Vec<OwnedUserId> = ruma::state_res::events::RoomCreateEvent::new(create.clone())
            .creators(&self.rules.authorization)
            .map(|set| set.into_iter().collect())
            .unwrap_or_else(|_| vec![create.sender.clone()]);
        creators.sort();
        creators
    }

    /// Whether the version gives creators infinite power (v12): they are then never listed in
    /// the power levels.
    pub fn creators_privileged(&self) -> bool {
        self.rules.authorization.explicitly_privilege_room_creators
    }

    /// The power levels in force (the spec's defaults when the room has none).
    pub fn power_levels(&self) -> RoomPowerLevels {
        let content = self
            .get(&StateEventType::RoomPowerLevels, "")
            .and_then(|p| serde_json::from_str::<RoomPowerLevelsEventContent>(p.content_str()).ok());
        RoomPowerLevels::new(RoomPowerLevelsSource::from(content), &self.rules.authorization, self.creators())
    }

    /// The room's join rule (`invite` when unset, as the authorization rules assume).
    pub fn join_rule(&self) -> String {
        self.content_str(&StateEventType::RoomJoinRules, "", "join_rule").unwrap_or_else(|| "invite".into())
    }

    /// The content of a state event as JSON (`None` if unset or not an object).
    pub fn content(&self, kind: &StateEventType, state_key: &str) -> Option<serde_json::Value> {
        let pdu = self.get(kind, state_key)?;
        serde_json::from_str::<serde_json::Value>(pdu.content_str()).ok().filter(|v| v.is_object())
    }

    /// The string value of `field` in the content of a state event.
    pub fn content_str(&self, kind: &StateEventType, state_key: &str, field: &str) -> Option<String> {
        let pdu = self.get(kind, state_key)?;
        let v: serde_json::Value = serde_json::from_str(pdu.content_str()).ok()?;
        v.get(field)?.as_str().map(str::to_owned)
    }
}

pub fn membership_of(pdu: &Pdu) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Member {
        membership: String,
    }
    serde_json::from_str::<Member>(pdu.content_str()).ok().map(|m| m.membership)
}

/// The rules of a room version Trellis can create and serve.
pub fn rules_for(version: &RoomVersionId) -> Result<RoomVersionRules> {
    match version.rules() {
        Some(rules) if trellis_core::room_versions::SUPPORTED.contains(&version.as_str()) => Ok(rules),
        _ => Err(Error::new(
            trellis_core::ErrorCode::UnsupportedRoomVersion,
            format!("room version {version} is not supported by this server"),
        )),
    }
}

/// The version of new rooms unless the client asks for another (`room_versions::DEFAULT`).
pub const DEFAULT_VERSION: RoomVersionId = RoomVersionId::V11;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_version_is_supported_and_advertised() {
        assert_eq!(DEFAULT_VERSION.as_str(), trellis_core::room_versions::DEFAULT);
        for v in trellis_core::room_versions::SUPPORTED {
            assert!(rules_for(&RoomVersionId::try_from(*v).unwrap()).is_ok(), "{v}");
        }
        assert!(rules_for(&RoomVersionId::try_from("org.example.custom").unwrap()).is_err());
    }
}
