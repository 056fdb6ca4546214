//! Room versions, createRoom in full, and the limits and refusals of event sending.

use serde_json::json;
use trellis_testkit::{TestServer, enc};

use crate::rooms_support::{history, room_path};

both_modes!(room_versions_and_create_room, sending_limits_and_refusals);

async fn room_versions_and_create_room(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let caps = alice.get("/_matrix/client/v3/capabilities").await.ok();
    let versions = &caps["capabilities"]["m.room_versions"];
    assert_eq!(versions["default"], "11");
    let stable: Vec<u32> = (1..=12).collect();
    let available = versions["available"].as_object().unwrap();
    let mut listed: Vec<u32> = available.keys().map(|v| v.parse().unwrap()).collect();
    listed.sort();
    assert_eq!(listed, stable, "every stable version is offered");
    assert!(available.values().all(|s| s == "stable"));
    for bad in ["13", "banana", "my_bad_version"] {
        alice
            .post("/_matrix/client/v3/createRoom", json!({"room_version": bad}))
            .await
            .err(400, "M_UNSUPPORTED_ROOM_VERSION");
    }
    // A version is a string: a number is malformed JSON for this field (as Synapse answers).
    alice.post("/_matrix/client/v3/createRoom", json!({"room_version": 1})).await.err(400, "M_BAD_JSON");

    // trusted_private_chat: invitees get the creator's power; the event order is the spec's.
    let room = alice
        .create_room(json!({
            "preset": "trusted_private_chat", "invite": ["@bob:localhost"], "is_direct": true, "name": "Pair",
            "topic": "t", "room_alias_name": "pair", "room_version": "10",
            "initial_state": [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
            "power_level_content_override": {"events_default": 10},
            "creation_content": {"m.federate": false},
        }))
        .await;
    let order: Vec<String> = history(&alice, &room)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "m.room.create",
            "m.room.member",
            "m.room.power_levels",
            "m.room.canonical_alias",
            "m.room.join_rules",
            "m.room.history_visibility",
            "m.room.guest_access",
            "m.room.encryption",
            "m.room.name",
            "m.room.topic",
            "m.room.member",
        ]
    );
    let pl = alice.get(&room_path(&room, "/state/m.room.power_levels")).await.ok();
    assert_eq!(
        (pl["users"]["@alice:localhost"].clone(), pl["users"]["@bob:localhost"].clone()),
        (json!(100), json!(100))
    );
    assert_eq!((pl["events_default"].clone(), pl["invite"].clone()), (json!(10), json!(0)));
    let create = alice.get(&room_path(&room, "/state/m.room.create")).await.ok();
    assert_eq!((create["room_version"].as_str(), create["creator"].as_str()), (Some("10"), Some("@alice:localhost")));
    assert_eq!(create["m.federate"], false);
    let bob_member = alice.get(&room_path(&room, "/state/m.room.member/@bob:localhost")).await.ok();
    assert_eq!((bob_member["membership"].as_str(), bob_member["is_direct"].as_bool()), (Some("invite"), Some(true)));
    alice.post("/_matrix/client/v3/createRoom", json!({"room_alias_name": "pair"})).await.err(400, "M_ROOM_IN_USE");

    // public_chat: public join rule, no guest access event, invites need power.
    let public = alice.create_room(json!({"preset": "public_chat"})).await;
    let rules = alice.get(&room_path(&public, "/state/m.room.join_rules")).await.ok();
    assert_eq!(rules["join_rule"], "public");
    assert_eq!(alice.get(&room_path(&public, "/state/m.room.power_levels")).await.ok()["invite"], 50);
    // No `m.room.guest_access` event: without one, guests may not join (as Synapse creates it).
    alice.get(&room_path(&public, "/state/m.room.guest_access")).await.err(404, "M_NOT_FOUND");
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&public)), json!({})).await.ok();
    bob.post(&room_path(&public, "/invite"), json!({"user_id": "@carol:localhost"})).await.err(403, "M_FORBIDDEN");
    // The default preset for a private room: invite-only, shared history.
    let private = alice.create_room(json!({})).await;
    assert_eq!(alice.get(&room_path(&private, "/state/m.room.join_rules")).await.ok()["join_rule"], "invite");
    assert_eq!(
        alice.get(&room_path(&private, "/state/m.room.history_visibility")).await.ok()["history_visibility"],
        "shared"
    );
}

async fn sending_limits_and_refusals(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    let before = history(&alice, &room).await.as_array().unwrap().len();

    // Size limits: 65,536 bytes per event; 255 bytes per type and state key.
    let big = json!({"msgtype": "m.text", "body": "x".repeat(65_000)});
    alice.put(&room_path(&room, "/send/m.room.message/big"), big).await.err(413, "M_TOO_LARGE");
    let long_type = "t".repeat(256);
    alice.put(&room_path(&room, &format!("/send/{long_type}/t1")), json!({})).await.err(400, "M_INVALID_PARAM");
    let long_key = "k".repeat(256);
    alice
        .put(&room_path(&room, &format!("/state/m.room.topic/{long_key}")), json!({}))
        .await
        .err(400, "M_INVALID_PARAM");
    // Refused by the authorization rules: never stored, never sent.
    bob.put(&room_path(&room, "/state/m.room.name"), json!({"name": "mine"})).await.err(403, "M_FORBIDDEN");
    bob.put(&room_path(&room, "/state/org.example/@alice:localhost"), json!({})).await.err(403, "M_FORBIDDEN");
    bob.put(&room_path(&room, "/state/m.room.member/@alice:localhost"), json!({"membership": "join"}))
        .await
        .err(403, "M_FORBIDDEN");
    // State-changing requests that make no sense are M_BAD_STATE, others M_FORBIDDEN/M_NOT_FOUND.
    alice.post(&room_path(&room, "/unban"), json!({"user_id": "@bob:localhost"})).await.err(403, "M_BAD_STATE");
    alice.post(&room_path("!nope:localhost", "/join"), json!({})).await.err(404, "M_NOT_FOUND");
    assert_eq!(history(&alice, &room).await.as_array().unwrap().len(), before, "nothing refused was stored");
    let sync = bob.sync(None, None, 0).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    assert!(!timeline.iter().any(|e| e["type"] == "m.room.name"), "nor sent to anyone");
}
