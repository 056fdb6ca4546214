//! Room behaviour SyTest checks and Synapse shows: `joined_members` profile keys, custom join
//! content, idempotent state, transaction IDs scoped to their path, redaction across rooms,
//! `/messages` page ends, erased users, the user directory's public rooms and
//! self-destructing messages.

use serde_json::{Value, json};
use trellis_testkit::{TestServer, enc};

use crate::rooms_support::{history, room_path, say};

both_modes!(
    joined_members_lists_both_profile_fields,
    join_keeps_custom_content,
    setting_identical_state_twice_makes_no_new_event,
    transaction_ids_are_scoped_to_their_path,
    redacting_an_event_of_another_room_is_refused,
    messages_pages_end_as_synapse_does,
    erased_users_messages_are_hidden_from_later_joiners,
    user_directory_lists_members_of_public_rooms_only,
    self_destructing_messages_expire,
);

const V3: &str = "/_matrix/client/v3";

async fn joined_members_lists_both_profile_fields(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let path = format!("{V3}/profile/{}/avatar_url", enc(&alice.user_id));
    alice.put(&path, json!({"avatar_url": "mxc://localhost/alice"})).await.ok();
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();

    let joined = bob.get(&room_path(&room, "/joined_members")).await.ok()["joined"].clone();
    assert_eq!(joined[&alice.user_id]["avatar_url"], "mxc://localhost/alice", "{joined}");
    assert_eq!(joined[&alice.user_id]["display_name"], "alice");
    // Bob has no avatar: the key is there, null, as Synapse sends it.
    let bobs = joined[&bob.user_id].as_object().expect("bob is listed");
    assert_eq!(bobs.get("avatar_url"), Some(&Value::Null), "{joined}");
    assert_eq!(bobs["display_name"], "bob");
}

async fn join_keeps_custom_content(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat", "room_alias_name": "custom"})).await;

    let by_id = bob.post(&format!("{V3}/join/{}", enc(&room)), json!({"foo": "bar", "membership": "leave"})).await;
    assert_eq!(by_id.ok()["room_id"], room.as_str());
    let member = bob.get(&room_path(&room, &format!("/state/m.room.member/{}", enc(&bob.user_id)))).await.ok();
    assert_eq!(member["foo"], "bar", "{member}");
    assert_eq!(member["membership"], "join", "the body cannot choose the membership");
    assert_eq!(member["displayname"], "bob", "the profile still fills the content");

    let by_alias = carol
        .post(&format!("{V3}/join/{}", enc("#custom:localhost")), json!({"foo": {"nested": 1}, "reason": "hi"}))
        .await;
    assert_eq!(by_alias.ok()["room_id"], room.as_str());
    let member = carol.get(&room_path(&room, &format!("/state/m.room.member/{}", enc(&carol.user_id)))).await.ok();
    assert_eq!(member["foo"], json!({"nested": 1}), "{member}");
    assert_eq!(member["reason"], "hi");

    // Content that is not canonical JSON cannot go into an event.
    let dave = server.user("dave").await;
    dave.post(&format!("{V3}/rooms/{}/join", enc(&room)), json!({"foo": 1.5})).await.err(400, "M_BAD_JSON");
}

async fn setting_identical_state_twice_makes_no_new_event(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room =
        alice.create_room(json!({"preset": "public_chat", "power_level_content_override": {"state_default": 0}})).await;
    bob.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();
    let path = room_path(&room, "/state/a.test.state/");
    let first = alice.put(&path, json!({"a": "b"})).await.ok()["event_id"].clone();
    let again = alice.put(&path, json!({"a": "b"})).await.ok()["event_id"].clone();
    assert_eq!(first, again, "the same state from the same sender is the event already there");
    let changed = alice.put(&path, json!({"a": "c"})).await.ok()["event_id"].clone();
    assert_ne!(changed, first);
    // Another sender setting the same content is a new event (the sender is part of state).
    let bobs = bob.put(&path, json!({"a": "c"})).await.ok()["event_id"].clone();
    assert_ne!(bobs, changed);
    let states: Vec<Value> = history(&alice, &room)
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "a.test.state")
        .cloned()
        .collect();
    assert_eq!(states.len(), 3, "no event for the repeat: {states:?}");
}

async fn transaction_ids_are_scoped_to_their_path(server: TestServer) {
    let alice = server.user("alice").await;
    let one = alice.create_room(json!({})).await;
    let two = alice.create_room(json!({})).await;
    let send = |room: &str, kind: &str| room_path(room, &format!("/send/{kind}/same-txn"));
    let body = json!({"msgtype": "m.text", "body": "x"});

    let first = alice.put(&send(&one, "m.room.message"), body.clone()).await.ok()["event_id"].clone();
    let retry = alice.put(&send(&one, "m.room.message"), body.clone()).await.ok()["event_id"].clone();
    assert_eq!(first, retry, "a retry on the same path is the same event");
    let other_room = alice.put(&send(&two, "m.room.message"), body.clone()).await.ok()["event_id"].clone();
    assert_ne!(other_room, first, "the same ID in another room is another event");
    let other_type = alice.put(&send(&one, "m.custom"), body.clone()).await.ok()["event_id"].clone();
    assert_ne!(other_type, first, "the same ID for another type is another event");

    // Redacting with the same transaction ID is a redaction, not the message again.
    let redact = room_path(&one, &format!("/redact/{}/same-txn", enc(first.as_str().unwrap())));
    let redaction = alice.put(&redact, json!({})).await.ok()["event_id"].clone();
    assert_ne!(redaction, first);
    assert_eq!(alice.put(&redact, json!({})).await.ok()["event_id"], redaction, "a retried redaction");
    let redacted = alice.get(&room_path(&one, &format!("/event/{}", enc(first.as_str().unwrap())))).await.ok();
    assert_eq!(redacted["content"], json!({}), "{redacted}");
    // Another device of the same user has its own transactions.
    let mut laptop = server.client();
    laptop.login("alice", "pw").await;
    let laptops = laptop.put(&send(&one, "m.room.message"), body).await.ok()["event_id"].clone();
    assert_ne!(laptops, first);
}

async fn redacting_an_event_of_another_room_is_refused(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let alices = alice.create_room(json!({})).await;
    let bobs = bob.create_room(json!({})).await;
    let event = say(&alice, &alices, "mine").await;
    let path = room_path(&bobs, &format!("/redact/{}/t1", enc(&event)));
    bob.put(&path, json!({})).await.err(400, "M_INVALID_PARAM");
    let unknown = room_path(&bobs, &format!("/redact/{}/t2", enc("$nowhere")));
    bob.put(&unknown, json!({})).await.err(404, "M_NOT_FOUND");
    let still = alice.get(&room_path(&alices, &format!("/event/{}", enc(&event)))).await.ok();
    assert_eq!(still["content"]["body"], "mine");
}

async fn messages_pages_end_as_synapse_does(server: TestServer) {
    let alice = server.user("alice").await;
    let room = alice.create_room(json!({})).await;
    say(&alice, &room, "only").await;
    // The initial sync holds the whole room, unlimited; its `prev_batch` is where a client
    // pages back from, and it finds the room's events there.
    let sync = alice.sync(None, None, 0).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], false, "{timeline}");
    let from = timeline["prev_batch"].as_str().unwrap();
    let filter = enc(r#"{"lazy_load_members":true}"#);
    let page = alice.get(&room_path(&room, &format!("/messages?dir=b&from={}&filter={filter}", enc(from)))).await.ok();
    assert!(!page["chunk"].as_array().unwrap().is_empty(), "{page}");
    let end = page["end"].as_str().expect("a page with events has an end, even the last");
    let state = page["state"].as_array().expect("lazy-loaded members");
    assert_eq!(state.len(), 1, "{page}");
    assert_eq!(state[0]["state_key"], alice.user_id.as_str());
    let after = alice.get(&room_path(&room, &format!("/messages?dir=b&from={}", enc(end)))).await.ok();
    assert_eq!(after["chunk"], json!([]));
    assert!(after.get("end").is_none(), "nothing further: no end ({after})");
}

/// Deactivates `client`'s account (password `pw`) through user-interactive auth.
async fn deactivate(client: &trellis_testkit::Client, body: Value) {
    let path = format!("{V3}/account/deactivate");
    let challenge = client.post(&path, body.clone()).await;
    assert_eq!(challenge.status, 401, "{}", challenge.body);
    let mut body = body;
    body["auth"] = json!({
        "type": "m.login.password", "session": challenge.body["session"],
        "identifier": {"type": "m.id.user", "user": client.user_id}, "password": "pw",
    });
    client.post(&path, body).await.ok();
}

async fn erased_users_messages_are_hidden_from_later_joiners(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let dave = server.user("dave").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();
    let message = say(&alice, &room, "before erasure").await;
    carol.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();
    let content_for = |events: &Value| {
        events.as_array().unwrap().iter().find(|e| e["event_id"] == message.as_str()).map(|e| e["content"].clone())
    };
    assert_eq!(content_for(&history(&carol, &room).await).unwrap()["body"], "before erasure");

    deactivate(&alice, json!({"erase": true})).await;
    // Bob was in the room when it was sent and keeps it; Carol joined later and loses it.
    assert_eq!(content_for(&history(&bob, &room).await).unwrap()["body"], "before erasure");
    assert_eq!(content_for(&history(&carol, &room).await), Some(json!({})), "history after erasure");
    let sync = carol.sync(None, None, 0).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(content_for(timeline), Some(json!({})), "sync after erasure: {timeline}");
    let sync = bob.sync(None, None, 0).await;
    assert_eq!(content_for(&sync["rooms"]["join"][&room]["timeline"]["events"]).unwrap()["body"], "before erasure");

    // Deactivation without `erase` hides nothing.
    let room2 = bob.create_room(json!({"preset": "public_chat"})).await;
    let kept = say(&bob, &room2, "kept").await;
    deactivate(&bob, json!({})).await;
    dave.post(&format!("{V3}/join/{}", enc(&room2)), json!({})).await.ok();
    let seen = dave.get(&room_path(&room2, &format!("/event/{}", enc(&kept)))).await.ok();
    assert_eq!(seen["content"]["body"], "kept");
}

async fn directory_has(client: &trellis_testkit::Client, term: &str, user_id: &str) -> bool {
    let found = client.post(&format!("{V3}/user_directory/search"), json!({"search_term": term})).await.ok();
    found["results"].as_array().unwrap().iter().any(|r| r["user_id"] == user_id)
}

async fn user_directory_lists_members_of_public_rooms_only(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bobbyuniq").await;
    let room = alice.create_room(json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    bob.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();
    // A private room shows Bob to Alice, but never Bob to himself.
    assert!(directory_has(&alice, "bobbyuniq", &bob.user_id).await);
    assert!(!directory_has(&bob, "bobbyuniq", &bob.user_id).await, "not through a private room");

    let rules = room_path(&room, "/state/m.room.join_rules/");
    alice.put(&rules, json!({"join_rule": "public"})).await.ok();
    assert!(directory_has(&bob, "bobbyuniq", &bob.user_id).await, "a public room lists its members");
    alice.put(&rules, json!({"join_rule": "invite"})).await.ok();
    assert!(!directory_has(&bob, "bobbyuniq", &bob.user_id).await);

    let visibility = room_path(&room, "/state/m.room.history_visibility/");
    alice.put(&visibility, json!({"history_visibility": "world_readable"})).await.ok();
    assert!(directory_has(&bob, "bobbyuniq", &bob.user_id).await, "a world-readable room lists its members");
    alice.put(&visibility, json!({"history_visibility": "shared"})).await.ok();
    assert!(!directory_has(&bob, "bobbyuniq", &bob.user_id).await);
}

async fn self_destructing_messages_expire(server: TestServer) {
    let alice = server.user("alice").await;
    let room = alice.create_room(json!({})).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let send = |txn: &str| room_path(&room, &format!("/send/m.room.message/{txn}"));
    let due = json!({"msgtype": "m.text", "body": "gone", "org.matrix.self_destruct_after": now - 1});
    let later = json!({"msgtype": "m.text", "body": "stays", "org.matrix.self_destruct_after": now + 3_600_000});
    let gone = alice.put(&send("t1"), due).await.ok()["event_id"].clone();
    let stays = alice.put(&send("t2"), later).await.ok()["event_id"].clone();
    let events = history(&alice, &room).await;
    let content =
        |id: &Value| events.as_array().unwrap().iter().find(|e| e["event_id"] == *id).unwrap()["content"].clone();
    assert_eq!(content(&gone), json!({}), "past its time, even for its sender");
    assert_eq!(content(&stays)["body"], "stays");
}
