//! Spaces and room previews: `/hierarchy` walks a space's tree as the spec orders it, shows
//! only rooms the requester may see and pages through it; `/room_summary` previews a room
//! by ID or alias, with or without an access token.

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

use crate::rooms_support::{room_path, v1_path};

both_modes!(hierarchy_walks_the_space_tree, hierarchy_refuses_bad_requests, room_summary_previews_rooms);

async fn space(client: &Client, name: &str, preset: &str) -> String {
    client.create_room(json!({"name": name, "preset": preset, "creation_content": {"type": "m.space"}})).await
}

async fn add_child(client: &Client, parent: &str, child: &str, content: Value) {
    let path = room_path(parent, &format!("/state/m.space.child/{}", enc(child)));
    client.put(&path, content).await.ok();
}

fn names(page: &Value) -> Vec<String> {
    page["rooms"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap_or("?").to_owned()).collect()
}

async fn hierarchy(client: &Client, space: &str, query: &str) -> Value {
    client.get(&v1_path(space, &format!("/hierarchy{query}"))).await.ok()
}

async fn hierarchy_walks_the_space_tree(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let root = space(&alice, "Root", "public_chat").await;
    let sub = space(&alice, "Sub", "public_chat").await;
    let a = alice.create_room(json!({"name": "A", "preset": "public_chat", "topic": "about A"})).await;
    let c = alice.create_room(json!({"name": "C", "preset": "public_chat"})).await;
    let private = alice.create_room(json!({"name": "Private", "preset": "private_chat"})).await;
    add_child(&alice, &root, &a, json!({"via": ["localhost"], "order": "b", "suggested": true})).await;
    add_child(&alice, &root, &sub, json!({"via": ["localhost"], "order": "a"})).await;
    add_child(&alice, &root, &private, json!({"via": ["localhost"], "order": "c"})).await;
    add_child(&alice, &root, "!elsewhere:example.org", json!({"via": ["example.org"]})).await;
    add_child(&alice, &root, &c, json!({})).await; // no via: not a child
    add_child(&alice, &sub, &c, json!({"via": ["localhost"]})).await;

    // Bob is in none of them: he sees the public rooms, depth first in the children's order.
    let page = hierarchy(&bob, &root, "").await;
    assert_eq!(names(&page), ["Root", "Sub", "C", "A"], "{page}");
    assert!(page.get("next_batch").is_none());
    let top = &page["rooms"][0];
    assert_eq!(top["room_type"], "m.space");
    assert_eq!(top["num_joined_members"], 1);
    let children: Vec<&str> =
        top["children_state"].as_array().unwrap().iter().map(|c| c["state_key"].as_str().unwrap()).collect();
    assert_eq!(children, [sub.as_str(), a.as_str(), private.as_str(), "!elsewhere:example.org"], "{top}");
    assert!(top["children_state"][0]["origin_server_ts"].is_number());
    assert_eq!(page["rooms"][3]["topic"], "about A");
    assert_eq!(page["rooms"][3]["children_state"], json!([]), "not a space");
    // Alice is in the private room and sees it too.
    assert_eq!(names(&hierarchy(&alice, &root, "").await), ["Root", "Sub", "C", "A", "Private"]);

    assert_eq!(names(&hierarchy(&bob, &root, "?max_depth=1").await), ["Root", "Sub", "A"]);
    assert_eq!(names(&hierarchy(&bob, &root, "?max_depth=0").await), ["Root"]);
    assert_eq!(names(&hierarchy(&bob, &root, "?suggested_only=true").await), ["Root", "A"]);

    let first = hierarchy(&bob, &root, "?limit=2").await;
    assert_eq!(names(&first), ["Root", "Sub"]);
    let next = first["next_batch"].as_str().expect("more to come");
    let second = hierarchy(&bob, &root, &format!("?limit=2&from={}", enc(next))).await;
    assert_eq!(names(&second), ["C", "A"]);
    assert!(second.get("next_batch").is_none(), "{second}");
    // The token continues only the same walk.
    let changed = bob.get(&v1_path(&root, &format!("/hierarchy?limit=2&max_depth=1&from={}", enc(next)))).await;
    changed.err(400, "M_INVALID_PARAM");
}

async fn hierarchy_refuses_bad_requests(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let closed = space(&alice, "Closed", "private_chat").await;
    bob.get(&v1_path(&closed, "/hierarchy")).await.err(403, "M_FORBIDDEN");
    bob.get(&v1_path("!unknown:localhost", "/hierarchy")).await.err(403, "M_FORBIDDEN");
    alice.get(&v1_path(&closed, "/hierarchy?limit=0")).await.err(400, "M_INVALID_PARAM");
    alice.get(&v1_path(&closed, "/hierarchy?from=nonsense")).await.err(400, "M_INVALID_PARAM");
    alice.get(&v1_path(&closed, "/hierarchy?max_depth=-1")).await.err(400, "M_INVALID_PARAM");
    server.client().get(&v1_path(&closed, "/hierarchy")).await.err(401, "M_MISSING_TOKEN");
    // Once invited, Bob may look.
    alice.post(&room_path(&closed, "/invite"), json!({"user_id": bob.user_id})).await.ok();
    assert_eq!(names(&hierarchy(&bob, &closed, "").await), ["Closed"]);
}

async fn room_summary_previews_rooms(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let public = alice
        .create_room(json!({"name": "Lobby", "topic": "Say hi", "preset": "public_chat", "room_alias_name": "lobby"}))
        .await;
    let summary_path = |room: &str| format!("/_matrix/client/v1/room_summary/{}", enc(room));

    let anonymous = server.client().get(&summary_path("#lobby:localhost")).await.ok();
    assert_eq!(anonymous["room_id"], public.as_str(), "{anonymous}");
    assert_eq!(anonymous["name"], "Lobby");
    assert_eq!(anonymous["topic"], "Say hi");
    assert_eq!(anonymous["canonical_alias"], "#lobby:localhost");
    assert_eq!(anonymous["num_joined_members"], 1);
    assert_eq!(anonymous["world_readable"], false);
    assert!(anonymous["room_version"].is_string());
    assert!(anonymous.get("membership").is_none(), "no membership without a user");

    assert_eq!(alice.get(&summary_path(&public)).await.ok()["membership"], "join");
    assert_eq!(bob.get(&summary_path(&public)).await.ok()["membership"], "leave");
    let unstable = format!("/_matrix/client/unstable/im.nheko.summary/rooms/{}/summary", enc(&public));
    assert_eq!(bob.get(&unstable).await.ok()["name"], "Lobby");

    let private = alice.create_room(json!({"name": "Secret", "preset": "private_chat"})).await;
    alice
        .put(&room_path(&private, "/state/m.room.encryption/"), json!({"algorithm": "m.megolm.v1.aes-sha2"}))
        .await
        .ok();
    bob.get(&summary_path(&private)).await.err(404, "M_NOT_FOUND");
    server.client().get(&summary_path(&private)).await.err(404, "M_NOT_FOUND");
    alice.post(&room_path(&private, "/invite"), json!({"user_id": bob.user_id})).await.ok();
    let invited = bob.get(&summary_path(&private)).await.ok();
    assert_eq!(invited["membership"], "invite", "{invited}");
    assert_eq!(invited["join_rule"], "invite");
    assert_eq!(invited["encryption"], "m.megolm.v1.aes-sha2");

    bob.get(&summary_path("#nowhere:localhost")).await.err(404, "M_NOT_FOUND");
    bob.get(&summary_path("!nowhere:localhost")).await.err(404, "M_NOT_FOUND");
    bob.get("/_matrix/client/v1/room_summary/nonsense").await.err(400, "M_INVALID_PARAM");
    let mut stranger = bob.clone();
    stranger.token = Some("not-a-token".into());
    stranger.get(&summary_path(&public)).await.err(401, "M_UNKNOWN_TOKEN");
}
