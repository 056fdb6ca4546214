//! Building one event on top of a room's state and judging it: the auth events the room
//! version selects, the PDU built and named as the version prescribes, ruma's authorization
//! rules, and the event applied to the state the next event builds on.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    CanonicalJsonObject, EventId, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, UserId,
    events::{StateEventType, TimelineEventType},
};
use serde_json::value::RawValue;
use trellis_core::{Error, Result, time::now_ms};

use crate::{
    Rooms,
    new_event::{NewEvent, Redacts, Row, Txn},
    pdu::{self, Built, Draft, EventRef, Pdu},
    state::RoomState,
};

impl Rooms {
    /// Builds a new room's create event. From v12 on the room is named after the event (which
    /// then carries no room ID); before, the room gets `room_id` (a fresh `!opaque:server` ID
    /// unless one was chosen).
    pub(crate) fn build_create(
        &self,
        version: &RoomVersionId,
        sender: &UserId,
        content: CanonicalJsonObject,
        room_id: Option<OwnedRoomId>,
    ) -> Result<(OwnedRoomId, Built)> {
        let rules = crate::state::rules_for(version)?;
        let named_by_create = rules.authorization.room_create_event_id_as_room_id;
        let random_id =
            (!named_by_create).then(|| room_id.unwrap_or_else(|| RoomId::new_v1(&self.settings.server_name)));
        let draft = Draft {
            room_id: random_id.as_deref(),
            sender,
            kind: "m.room.create",
            state_key: Some(""),
            content,
            prev_events: Vec::new(),
            auth_events: Vec::new(),
            depth: 1,
            origin_server_ts: now_ms() as u64,
            redacts: None,
        };
        let built = pdu::build(draft, &rules, &self.settings.server_name, &self.key)?;
        let room_id = match random_id {
            Some(id) => id,
            None => RoomId::new_v2(built.pdu.event_id.localpart())?,
        };
        Ok((room_id, built))
    }

    /// Builds one event on top of `room`, citing the auth events the version selects.
    pub(crate) fn build_event(
        &self,
        room: &RoomState,
        ev: &NewEvent,
    ) -> Result<(Built, HashMap<OwnedEventId, Arc<Pdu>>)> {
        let rules = &room.rules;
        let kind = TimelineEventType::from(ev.kind.as_str());
        let content_raw = RawValue::from_string(serde_json::to_string(&ev.content)?)?;
        let auth_types = ruma::state_res::auth_types_for_event(
            &kind,
            &ev.sender,
            ev.state_key.as_deref(),
            &content_raw,
            &rules.authorization,
        )
        .map_err(Error::bad_json)?;
        let mut auth: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        for (t, k) in &auth_types {
            if let Some(p) = room.get(t, k) {
                auth.insert(p.event_id.clone(), p.clone());
            }
        }
        let mut auth_events: Vec<EventRef> = auth.values().map(|p| p.reference()).collect();
        auth_events.sort();
        let built = pdu::build(
            Draft {
                room_id: Some(&room.room_id),
                sender: &ev.sender,
                kind: &ev.kind,
                state_key: ev.state_key.as_deref(),
                content: ev.content.clone(),
                prev_events: room.latest.iter().cloned().collect(),
                auth_events,
                depth: (room.depth + 1) as u64,
                origin_server_ts: ev.origin_server_ts.unwrap_or_else(now_ms) as u64,
                redacts: ev.redacts.as_ref().map(|r| &*r.event_id),
            },
            rules,
            &self.settings.server_name,
            &self.key,
        )?;
        Ok((built, auth))
    }
}

/// Checks a built event against `room` and applies it: the row the transaction will write.
pub(crate) fn accept(
    room: &mut RoomState,
    built: Built,
    auth: &HashMap<OwnedEventId, Arc<Pdu>>,
    txn: Option<Txn>,
    redacts: Option<Redacts>,
) -> Result<Row> {
    let pdu = built.pdu;
    check_rules(room, &pdu, auth)?;
    let unsigned = pdu.state_key.as_ref().and_then(|key| {
        let prev = room.get(&StateEventType::from(pdu.kind.to_string()), key)?;
        let content: serde_json::Value = serde_json::from_str(prev.content_str()).ok()?;
        Some(
            serde_json::json!({
                "replaces_state": prev.event_id,
                "prev_content": content,
                "prev_sender": prev.sender,
            })
            .to_string(),
        )
    });
    room.insert(pdu.clone());
    if let Some(target) = &redacts {
        room.redact(&target.event_id)?;
    }
    room.latest = Some(pdu.reference());
    room.depth += 1;
    Ok(Row { pdu, json: built.json, unsigned, txn, redacts: redacts.map(|r| r.event_id) })
}

/// The room version's authorization rules (ruma's implementation) for `pdu`, given its auth
/// events and the room's current state: `M_FORBIDDEN` naming the rule that refused it.
pub(crate) fn check_rules(room: &RoomState, pdu: &Pdu, auth: &HashMap<OwnedEventId, Arc<Pdu>>) -> Result<()> {
    let rules = &room.rules.authorization;
    // From v12 the create event is never an auth event, yet the rules look it up by the ID
    // the room is named after.
    let create = room.get(&StateEventType::RoomCreate, "");
    let fetch = |id: &EventId| auth.get(id).or(create.filter(|c| c.event_id == id)).cloned();
    ruma::state_res::check_state_independent_auth_rules(rules, pdu, fetch).map_err(Error::forbidden)?;
    ruma::state_res::check_state_dependent_auth_rules(rules, pdu, |t, k| room.get(t, k).cloned())
        .map_err(Error::forbidden)
}

#[cfg(test)]
#[path = "auth_events_rules.rs"]
mod auth_events_rules;
