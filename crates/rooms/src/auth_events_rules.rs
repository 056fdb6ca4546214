//! The authorization rules no client request can reach, because the server picks the auth
//! events and writes the create event itself (an event whose `auth_events` are wrong, a v10
//! create event without `creator`) or checks first (a third-party invite whose signature
//! does not verify, which `/3pid/onbind` refuses before sending). Each is built here by hand
//! and judged by [`check_rules`], the function every append calls.

use std::{collections::HashMap, sync::Arc};

use ruma::{CanonicalJsonObject, OwnedEventId, RoomVersionId, UserId, room_id, signatures::Ed25519KeyPair, user_id};
use serde_json::json;
use trellis_core::ErrorCode;

use super::check_rules;
use crate::{
    new_event::object,
    pdu::{Draft, Pdu, build},
    state::RoomState,
};

const ALICE: &str = "@alice:localhost";

fn key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "k".into()).unwrap()
}

struct Room {
    state: RoomState,
    key: Ed25519KeyPair,
}

impl Room {
    /// A room with Alice's create event, her join and power levels.
    fn new(version: RoomVersionId) -> Room {
        let mut room =
            Room { state: RoomState::new(room_id!("!r:localhost").to_owned(), version).unwrap(), key: key() };
        let alice = UserId::parse(ALICE).unwrap();
        room.add(room.event(&alice, "m.room.create", Some(""), json!({"creator": ALICE}), vec![]));
        let create = room.id_of("m.room.create", "");
        room.add(room.event(&alice, "m.room.member", Some(ALICE), json!({"membership": "join"}), vec![create.clone()]));
        let member = room.id_of("m.room.member", ALICE);
        let pl = json!({"users": {ALICE: 100}});
        room.add(room.event(&alice, "m.room.power_levels", Some(""), pl, vec![create, member]));
        room
    }

    fn event(
        &self,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: serde_json::Value,
        auth_events: Vec<OwnedEventId>,
    ) -> Arc<Pdu> {
        let content: CanonicalJsonObject = object(content).unwrap();
        let auth_events = auth_events
            .iter()
            .map(|id| self.state.state.values().find(|p| &p.event_id == id).unwrap().reference())
            .collect();
        let draft = Draft {
            room_id: Some(&self.state.room_id),
            sender,
            kind,
            state_key,
            content,
            prev_events: self.state.latest.iter().cloned().collect(),
            auth_events,
            depth: (self.state.depth + 1) as u64,
            origin_server_ts: 1,
            redacts: None,
        };
        build(draft, &self.state.rules, ruma::server_name!("localhost"), &self.key).unwrap().pdu
    }

    fn add(&mut self, pdu: Arc<Pdu>) {
        self.state.latest = Some(pdu.reference());
        self.state.depth += 1;
        self.state.insert(pdu);
    }

    fn id_of(&self, kind: &str, key: &str) -> OwnedEventId {
        self.state.get(&kind.into(), key).unwrap().event_id.clone()
    }

    /// Judges `pdu` with every event of the room available as an auth event.
    fn check(&self, pdu: &Pdu) -> trellis_core::Result<()> {
        let auth: HashMap<OwnedEventId, Arc<Pdu>> =
            self.state.state.values().map(|p| (p.event_id.clone(), p.clone())).collect();
        check_rules(&self.state, pdu, &auth)
    }

    fn message(&self, auth_events: Vec<OwnedEventId>) -> Arc<Pdu> {
        self.event(user_id!("@alice:localhost"), "m.room.message", None, json!({"body": "hi"}), auth_events)
    }

    fn correct_auth(&self) -> Vec<OwnedEventId> {
        vec![self.id_of("m.room.create", ""), self.id_of("m.room.member", ALICE), self.id_of("m.room.power_levels", "")]
    }
}

fn refused(result: trellis_core::Result<()>, why: &str) {
    let err = result.expect_err("the rules must refuse this event");
    assert_eq!(err.code(), ErrorCode::Forbidden);
    assert!(format!("{err:?}").contains(why), "refused for another reason: {err:?}");
}

#[test]
fn auth_events_as_selected_are_allowed() {
    let room = Room::new(RoomVersionId::V11);
    room.check(&room.message(room.correct_auth())).unwrap();
}

#[test]
fn duplicate_auth_event_entries_are_refused() {
    let room = Room::new(RoomVersionId::V11);
    let mut auth = room.correct_auth();
    auth.push(room.id_of("m.room.member", ALICE));
    refused(room.check(&room.message(auth)), "duplicate auth event");
}

#[test]
fn auth_events_outside_the_selection_are_refused() {
    let mut room = Room::new(RoomVersionId::V11);
    let alice = user_id!("@alice:localhost");
    room.add(room.event(alice, "m.room.topic", Some(""), json!({"topic": "t"}), room.correct_auth()));
    let mut auth = room.correct_auth();
    auth.push(room.id_of("m.room.topic", ""));
    refused(room.check(&room.message(auth)), "unexpected auth event");
}

#[test]
fn auth_events_without_the_create_event_are_refused() {
    let room = Room::new(RoomVersionId::V11);
    let auth = vec![room.id_of("m.room.member", ALICE), room.id_of("m.room.power_levels", "")];
    refused(room.check(&room.message(auth)), "no `m.room.create` event in auth events");
}

#[test]
fn v10_create_events_need_a_creator() {
    let alice = user_id!("@alice:localhost");
    let empty =
        |version| Room { state: RoomState::new(room_id!("!r:localhost").to_owned(), version).unwrap(), key: key() };
    // Judged as the first event of a room (no previous events).
    let v10 = empty(RoomVersionId::V10);
    v10.check(&v10.event(alice, "m.room.create", Some(""), json!({"creator": ALICE}), vec![])).unwrap();
    refused(v10.check(&v10.event(alice, "m.room.create", Some(""), json!({}), vec![])), "missing `creator`");
    // In v11 the sender is the creator: no field needed.
    let v11 = empty(RoomVersionId::V11);
    v11.check(&v11.event(alice, "m.room.create", Some(""), json!({}), vec![])).unwrap();
}

/// A room holding Alice's `m.room.third_party_invite` (token `tok`) for the identity
/// server's key `is_key`, and Bob's invite carrying `signed` (mxid, token), signed by `signer`.
fn third_party_invite(is_key: &Ed25519KeyPair, signer: &Ed25519KeyPair, mxid: &str) -> (Room, Arc<Pdu>) {
    use ruma::third_party_invite::IdentityServerBase64PublicKey;
    let mut room = Room::new(RoomVersionId::V11);
    let alice = user_id!("@alice:localhost");
    let public = IdentityServerBase64PublicKey::new(&is_key.public_key()).0;
    let content = json!({"display_name": "b...", "key_validity_url": "https://is/valid", "public_key": public,
                         "public_keys": [{"public_key": public}]});
    room.add(room.event(alice, "m.room.third_party_invite", Some("tok"), content, room.correct_auth()));
    let mut signed = object(json!({"mxid": mxid, "token": "tok"})).unwrap();
    ruma::signatures::sign_json("is.example.org", signer, &mut signed).unwrap();
    let invite = json!({"membership": "invite", "third_party_invite": {"display_name": "b...", "signed": signed}});
    let mut auth = room.correct_auth();
    auth.push(room.id_of("m.room.third_party_invite", "tok"));
    let pdu = room.event(alice, "m.room.member", Some("@bob:localhost"), invite, auth);
    (room, pdu)
}

#[test]
fn third_party_invites_need_the_identity_servers_signature_for_the_invitee() {
    let (is_key, stranger) = (key(), key());
    let (room, signed) = third_party_invite(&is_key, &is_key, "@bob:localhost");
    room.check(&signed).unwrap();
    let (room, forged) = third_party_invite(&is_key, &stranger, "@bob:localhost");
    refused(room.check(&forged), "no signature on third-party invite matches");
    let (room, for_another) = third_party_invite(&is_key, &is_key, "@carol:localhost");
    refused(room.check(&for_another), "mxid does not match");
}
