//! Which events concern an appservice (as Synapse decides): the room is in its room
//! namespace; the sender, or the target of a membership event, is its sender user or in its
//! user namespaces; the room has an alias in its alias namespaces; or one of the room's
//! joined local members is its sender user or in its user namespaces.

use std::collections::HashMap;

use trellis_core::{Result, appservice::Appservice};
use trellis_storage::events::EventRow;

const ROOM_ALIASES: &str = "SELECT alias FROM room_aliases WHERE room_id = $1";
const JOINED_MEMBERS: &str = "SELECT user_id FROM memberships WHERE room_id = $1 AND membership = 'join'";

/// What a room's aliases and members are, read once per scan.
#[derive(Default)]
pub(crate) struct RoomFacts {
    cache: HashMap<String, (Vec<String>, Vec<String>)>,
}

impl RoomFacts {
    async fn get(&mut self, client: &deadpool_postgres::Client, room_id: &str) -> Result<&(Vec<String>, Vec<String>)> {
        if !self.cache.contains_key(room_id) {
            let aliases = client.prepare_cached(ROOM_ALIASES).await?;
            let aliases = client.query(&aliases, &[&room_id]).await?.iter().map(|r| r.get(0)).collect();
            let members = client.prepare_cached(JOINED_MEMBERS).await?;
            let members = client.query(&members, &[&room_id]).await?.iter().map(|r| r.get(0)).collect();
            self.cache.insert(room_id.to_owned(), (aliases, members));
        }
        Ok(&self.cache[room_id])
    }

    /// Forgets a room whose aliases or members this event may change.
    fn changed_by(&mut self, event: &EventRow) {
        if event.kind == "m.room.member" || event.kind == "m.room.canonical_alias" {
            self.cache.remove(&event.room_id);
        }
    }
}

/// Whether `event` concerns `appservice`; `server_name` tells local members apart.
pub(crate) async fn concerns(
    client: &deadpool_postgres::Client,
    appservice: &Appservice,
    event: &EventRow,
    facts: &mut RoomFacts,
    server_name: &str,
) -> Result<bool> {
    let direct = appservice.is_interested_in_room(&event.room_id)
        || appservice.is_interested_in_user(&event.sender)
        || (event.kind == "m.room.member"
            && event.state_key.as_deref().is_some_and(|target| appservice.is_interested_in_user(target)));
    if direct {
        facts.changed_by(event);
        return Ok(true);
    }
    let found = room_concerns(client, appservice, &event.room_id, facts, server_name).await?;
    facts.changed_by(event);
    Ok(found)
}

/// Whether what happens in `room_id` (typing, receipts) concerns `appservice`: the room is in
/// its room namespaces, has an alias in its alias namespaces, or one of its joined local
/// members is its sender user or in its user namespaces.
pub(crate) async fn room_concerns(
    client: &deadpool_postgres::Client,
    appservice: &Appservice,
    room_id: &str,
    facts: &mut RoomFacts,
    server_name: &str,
) -> Result<bool> {
    if appservice.is_interested_in_room(room_id) {
        return Ok(true);
    }
    let local = format!(":{server_name}");
    let (aliases, members) = facts.get(client, room_id).await?;
    Ok(aliases.iter().any(|a| appservice.is_interested_in_alias(a))
        || members.iter().any(|m| m.ends_with(&local) && appservice.is_interested_in_user(m)))
}
