//! Every stable room version: created, joined, invited to, sent to, redacted in and read, each
//! with its own event-ID format, redaction algorithm and authorization rules; v12's room IDs
//! and creators; upgrades across the formats.

use ruma::{CanonicalJsonObject, RoomVersionId};
use serde_json::{Value, json};
use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

const VERSIONS: [&str; 12] = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];

async fn create_in(env: &Env, version: &str, preset: &str, invite: &[&str]) -> String {
    let mut req = create(ALICE);
    req.room_version = Some(version.into());
    req.preset = preset.into();
    req.invite = invite.iter().map(|u| u.to_string()).collect();
    env.svc.create_room(req).await.unwrap().room_id
}

/// The stored PDU of an event (what federation will serve).
async fn stored_pdu(env: &Env, event_id: &str) -> String {
    let client = env.db.pool(1).get().await.unwrap();
    client.query_one("SELECT pdu FROM events WHERE event_id = $1", &[&event_id]).await.unwrap().get(0)
}

/// Checks the ID of a stored event against its room version's event-ID format.
async fn assert_id_format(env: &Env, version: &str, event_id: &str) {
    let rules = RoomVersionId::try_from(version).unwrap().rules().unwrap();
    let json = stored_pdu(env, event_id).await;
    let pdu: Value = serde_json::from_str(&json).unwrap();
    let hash =
        ruma::signatures::reference_hash(&serde_json::from_str::<CanonicalJsonObject>(&json).unwrap(), &rules).unwrap();
    match version {
        "1" | "2" => {
            assert!(event_id.ends_with(":localhost"), "v{version}: {event_id}");
            assert_eq!(pdu["event_id"], event_id, "v{version}: the ID is carried in the event");
            for cited in pdu["prev_events"].as_array().unwrap().iter().chain(pdu["auth_events"].as_array().unwrap()) {
                let (id, hash) = (cited[0].as_str().unwrap(), cited[1]["sha256"].as_str().unwrap());
                let cited_json = stored_pdu(env, id).await;
                let cited_obj: CanonicalJsonObject = serde_json::from_str(&cited_json).unwrap();
                assert_eq!(hash, ruma::signatures::reference_hash(&cited_obj, &rules).unwrap(), "v{version}");
            }
        }
        _ => {
            // The reference hash in the version's alphabet (standard base64 in v3, URL-safe
            // from v4): recomputed from the stored event, it must be the ID.
            assert_eq!(event_id, format!("${hash}"), "v{version}");
            assert!(pdu.get("event_id").is_none(), "v{version}");
            assert!(pdu["prev_events"].as_array().unwrap().iter().all(Value::is_string), "v{version}");
        }
    }
}

pub async fn every_version_serves_the_room_lifecycle(env: Env) {
    for version in VERSIONS {
        let room = create_in(&env, version, "public_chat", &[]).await;
        let st = state_of(&env, ALICE, &room).await;
        let create_ev = st.iter().find(|e| e["type"] == "m.room.create").unwrap();
        assert_eq!(create_ev["content"]["room_version"], version);
        let v: u32 = version.parse().unwrap();
        assert_eq!(create_ev["content"]["creator"].as_str(), (v <= 10).then_some(ALICE), "v{version}: creator field");
        assert_eq!(room.ends_with(":localhost"), v < 12, "v{version}: {room}");

        // Join, invite, send and read.
        env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
        env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(CAROL))).await.unwrap();
        env.svc.change_membership(member(CAROL, &room, MembershipAction::Join, None)).await.unwrap();
        let hello = send(&env, message(BOB, &room, "hello", None)).await.unwrap();
        // The next event builds on state reloaded from PostgreSQL (v1–v2: the reference
        // hashes it cites are recomputed from the stored events).
        trellis_rooms::testing_evict_all(&env.rooms);
        let hi = send(&env, message(CAROL, &room, "hi", None)).await.unwrap();
        assert_id_format(&env, version, &hi).await;
        assert_eq!(bodies(&messages(&env, CAROL, &room, None, true, 10).await), vec!["hi", "hello"], "v{version}");
        assert_id_format(&env, version, &hello).await;
        assert_id_format(&env, version, create_ev["event_id"].as_str().unwrap()).await;

        // The authorization rules of the version: Bob may not change the name.
        refused(
            send(&env, state(BOB, &room, "m.room.name", json!({"name": "x"}))).await,
            ErrorCode::Forbidden,
            "power",
        );

        // Redaction: the message is stripped; the redaction names its target at the top level
        // before v11 and in its content since.
        let redaction_id = env.svc.redact(redaction(ALICE, &room, &hello, None)).await.unwrap().event_id;
        assert_eq!(event(&env, CAROL, &room, &hello).await.unwrap()["content"], json!({}), "v{version}");
        let red: Value = serde_json::from_str(&stored_pdu(&env, &redaction_id).await).unwrap();
        assert_eq!(red["redacts"].as_str(), (v < 11).then_some(hello.as_str()), "v{version}");
        assert_eq!(red["content"]["redacts"].as_str(), (v >= 11).then_some(hello.as_str()), "v{version}");
        assert_id_format(&env, version, &redaction_id).await;

        // The version's redaction algorithm: `allow` of join rules survives from v8.
        let rules = json!({"join_rule": "public", "allow": [{"type": "m.room_membership", "room_id": "!a:x"}]});
        let rules_id = send(&env, state(ALICE, &room, "m.room.join_rules", rules)).await.unwrap();
        env.svc.redact(redaction(ALICE, &room, &rules_id, None)).await.unwrap();
        let stripped = event(&env, ALICE, &room, &rules_id).await.unwrap()["content"].clone();
        assert_eq!(stripped.get("allow").is_some(), v >= 8, "v{version}: {stripped}");
        assert_eq!(stripped["join_rule"], "public");
        // The redacted join rules still admit anyone.
        env.svc.change_membership(member(EVE, &room, MembershipAction::Join, None)).await.unwrap();
    }
}

pub async fn knocking_and_restricted_rooms_follow_their_versions(env: Env) {
    let hub = create_in(&env, "11", "public_chat", &[]).await;
    env.svc.change_membership(member(CAROL, &hub, MembershipAction::Join, None)).await.unwrap();
    // Knocking came with v7, restricted rooms with v8.
    for (version, knock, restricted) in [("6", false, false), ("7", true, false), ("8", true, true)] {
        let room = create_in(&env, version, "private_chat", &[]).await;
        send(&env, state(ALICE, &room, "m.room.join_rules", json!({"join_rule": "knock"}))).await.unwrap();
        let knocked = env.svc.change_membership(member(BOB, &room, MembershipAction::Knock, None)).await;
        assert_eq!(knocked.is_ok(), knock, "v{version} knock: {knocked:?}");
        let allow = json!({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": hub}]});
        send(&env, state(ALICE, &room, "m.room.join_rules", allow)).await.unwrap();
        let joined = env.svc.change_membership(member(CAROL, &room, MembershipAction::Join, None)).await;
        assert_eq!(joined.is_ok(), restricted, "v{version} restricted join: {joined:?}");
    }
}

pub async fn v12_rooms_are_named_by_their_create_event(env: Env) {
    let room = create_in(&env, "12", "private_chat", &[]).await;
    let st = state_of(&env, ALICE, &room).await;
    let create_ev = st.iter().find(|e| e["type"] == "m.room.create").unwrap();
    let create_id = create_ev["event_id"].as_str().unwrap();
    assert_eq!(room, format!("!{}", create_id.trim_start_matches('$')));
    assert_eq!(create_ev["room_id"], room.as_str(), "clients still see the room ID");
    let pdu: Value = serde_json::from_str(&stored_pdu(&env, create_id).await).unwrap();
    assert!(pdu.get("room_id").is_none(), "the create event itself has no room ID");
    let msg = send(&env, message(ALICE, &room, "first", None)).await.unwrap();
    let msg_pdu: Value = serde_json::from_str(&stored_pdu(&env, &msg).await).unwrap();
    assert!(!msg_pdu["auth_events"].as_array().unwrap().iter().any(|a| a == create_id), "never an auth event");
    assert_eq!(msg_pdu["room_id"], room.as_str());
}

pub async fn v12_creators_have_infinite_power(env: Env) {
    // trusted_private_chat: the invitee becomes an additional creator (Synapse), not a PL 100.
    let room = create_in(&env, "12", "trusted_private_chat", &[BOB]).await;
    let st = state_of(&env, ALICE, &room).await;
    let create_ev = st.iter().find(|e| e["type"] == "m.room.create").unwrap();
    assert_eq!(create_ev["content"]["additional_creators"], json!([BOB]));
    let pl = st.iter().find(|e| e["type"] == "m.room.power_levels").unwrap()["content"].clone();
    assert_eq!(pl["users"], json!({}), "creators are not listed");
    assert_eq!(pl["events"]["m.room.tombstone"], 150, "only creators upgrade by default");
    env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(CAROL))).await.unwrap();
    env.svc.change_membership(member(CAROL, &room, MembershipAction::Join, None)).await.unwrap();

    // Power levels may not list a creator.
    let listing = power_levels(json!({ALICE: 100}), json!({}));
    refused(send(&env, state(BOB, &room, "m.room.power_levels", listing)).await, ErrorCode::Forbidden, "creator");
    // Bob, an additional creator, outranks anyone with any level.
    let carol_top = power_levels(json!({CAROL: 1_000_000}), json!({}));
    send(&env, state(BOB, &room, "m.room.power_levels", carol_top)).await.unwrap();
    refused(
        env.svc.change_membership(member(CAROL, &room, MembershipAction::Kick, Some(BOB))).await,
        ErrorCode::Forbidden,
        "power",
    );
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Kick, Some(CAROL))).await.unwrap();
    send(&env, state(BOB, &room, "m.room.name", json!({"name": "ours"}))).await.unwrap();
}

pub async fn upgrades_cross_the_formats(env: Env) {
    let old = create_in(&env, "1", "public_chat", &[]).await;
    send(&env, state(ALICE, &old, "m.room.name", json!({"name": "Old"}))).await.unwrap();
    env.svc.change_membership(member(BOB, &old, MembershipAction::Join, None)).await.unwrap();
    env.svc.change_membership(member(ALICE, &old, MembershipAction::Ban, Some(CAROL))).await.unwrap();
    let upgrade = |room: &str, version: &str| UpgradeRoomRequest {
        sender: ALICE.into(),
        room_id: room.into(),
        new_version: version.into(),
        additional_creators: vec![BOB.into()],
    };

    // 1 → 12: the new room is named by its create event, which cannot cite the tombstone.
    let v12 = env.svc.upgrade_room(upgrade(&old, "12")).await.unwrap().replacement_room;
    let st = state_of(&env, ALICE, &v12).await;
    let find = |st: &[Value], t: &str, k: &str| st.iter().find(|e| e["type"] == t && e["state_key"] == k).cloned();
    let create_ev = find(&st, "m.room.create", "").unwrap();
    assert_eq!(v12, format!("!{}", create_ev["event_id"].as_str().unwrap().trim_start_matches('$')));
    assert_eq!(create_ev["content"]["predecessor"], json!({"room_id": old}));
    assert_eq!(create_ev["content"]["additional_creators"], json!([BOB]));
    assert!(create_ev["content"].get("creator").is_none());
    let pl = find(&st, "m.room.power_levels", "").unwrap()["content"].clone();
    assert!(pl["users"].get(ALICE).is_none() && pl["users"].get(BOB).is_none(), "creators unlisted: {pl}");
    assert_eq!(find(&st, "m.room.name", "").unwrap()["content"]["name"], "Old");
    assert_eq!(find(&st, "m.room.member", CAROL).unwrap()["content"]["membership"], "ban");
    let old_st = state_of(&env, ALICE, &old).await;
    assert_eq!(find(&old_st, "m.room.tombstone", "").unwrap()["content"]["replacement_room"], v12.as_str());
    send(&env, message(ALICE, &v12, "in twelve", None)).await.unwrap();
    let guarded = power_levels(json!({}), json!({"events": {"m.room.tombstone": 150, "m.room.power_levels": 100}}));
    send(&env, state(ALICE, &v12, "m.room.power_levels", guarded)).await.unwrap();

    // 12 → 10: the creator of the v12 room keeps the top power in a version that ranks by level;
    // additional creators are not carried over.
    let v10 = env.svc.upgrade_room(upgrade(&v12, "10")).await.unwrap().replacement_room;
    assert!(v10.ends_with(":localhost"));
    let st = state_of(&env, ALICE, &v10).await;
    let create_ev = find(&st, "m.room.create", "").unwrap();
    let tombstone = find(&state_of(&env, ALICE, &v12).await, "m.room.tombstone", "").unwrap();
    assert_eq!(create_ev["content"]["predecessor"], json!({"room_id": v12, "event_id": tombstone["event_id"]}));
    assert_eq!(create_ev["content"]["creator"], ALICE);
    assert!(create_ev["content"].get("additional_creators").is_none());
    let pl = find(&st, "m.room.power_levels", "").unwrap()["content"].clone();
    assert_eq!(pl["users"][ALICE], 150, "the top level in the old room's levels (its tombstone level)");
    send(&env, state(ALICE, &v10, "m.room.topic", json!({"topic": "ten"}))).await.unwrap();
    assert_id_format(&env, "10", tombstone["event_id"].as_str().unwrap()).await;

    // An unknown room is not found; a tombstone may not name its own room.
    refused(env.svc.upgrade_room(upgrade("!nowhere:localhost", "11")).await, ErrorCode::NotFound, "Unknown room");
    let own = SendEventRequest {
        event_type: "m.room.tombstone".into(),
        ..custom(ALICE, &v10, json!({"replacement_room": v10}))
    };
    refused(send(&env, own).await, ErrorCode::BadJson, "tombstone");
}
