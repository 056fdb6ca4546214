//! What one sync asks for, and the steps the exact path (`compute.rs`) and the fast path
//! (`fast.rs`) both take: which rooms the filter selects, the timeline limit, the filtered
//! ephemeral events per room and the response's last touches.

use std::collections::HashMap;

use ruma::api::client::filter::{FilterDefinition, RoomEventFilter, RoomFilter};
use serde_json::{Value, json};
use trellis_core::StreamToken;
use trellis_storage::events::EventRow;

use crate::{
    poll::{filters, response::SyncBody},
    queries::Membership,
};

/// What one sync asks for.
pub struct Request<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub since: Option<StreamToken>,
    pub full_state: bool,
    pub filter: &'a FilterDefinition,
}

/// Whether the room filter's `rooms` and `not_rooms` let `room` through.
pub(crate) fn room_selected(room: &str, rooms: Option<&[ruma::OwnedRoomId]>, not_rooms: &[ruma::OwnedRoomId]) -> bool {
    if not_rooms.iter().any(|r| r.as_str() == room) {
        return false;
    }
    rooms.is_none_or(|list| list.iter().any(|r| r.as_str() == room))
}

/// The rooms the user is joined to that the room filter selects.
pub(crate) fn selected_joined(memberships: &[Membership], rf: &RoomFilter) -> Vec<String> {
    memberships
        .iter()
        .filter(|m| m.membership == "join" && room_selected(&m.room_id, rf.rooms.as_deref(), &rf.not_rooms))
        .map(|m| m.room_id.clone())
        .collect()
}

/// Timeline events per room: the filter's limit, else the worker's default.
pub(crate) fn timeline_limit(rf: &RoomFilter, default: u32) -> u64 {
    rf.timeline.limit.map_or(u64::from(default), u64::from)
}

/// The ephemeral events of each room that the filter lets through; rooms left with none drop out.
pub(crate) fn ephemeral_filtered(
    filter: &RoomEventFilter,
    mut ephemeral: HashMap<String, Vec<Value>>,
) -> HashMap<String, Vec<Value>> {
    ephemeral.retain(|_, events| {
        *events = filters::room_events(filter, std::mem::take(events));
        !events.is_empty()
    });
    ephemeral
}

/// The last touch of every response: the filter's `event_fields`.
pub(crate) fn finish(body: &mut SyncBody, req: &Request<'_>) {
    if let Some(fields) = &req.filter.event_fields {
        body.keep_fields(fields);
    }
}

/// A stripped state event: only `type`, `state_key`, `content` and `sender`.
pub(crate) fn stripped_json(e: &EventRow) -> String {
    let content: Value = serde_json::from_str(&e.content).unwrap_or_default();
    json!({
        "type": e.kind,
        "state_key": e.state_key.as_deref().unwrap_or(""),
        "content": content,
        "sender": e.sender,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_filters() {
        let a = ruma::RoomId::parse("!a:x").unwrap();
        assert!(room_selected("!a:x", None, &[]));
        assert!(!room_selected("!a:x", None, std::slice::from_ref(&a)));
        assert!(room_selected("!a:x", Some(std::slice::from_ref(&a)), &[]));
        assert!(!room_selected("!b:x", Some(std::slice::from_ref(&a)), &[]));
    }
}
