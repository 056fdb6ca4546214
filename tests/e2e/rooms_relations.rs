//! Relations, bundled aggregations and threads over HTTP; room upgrades.

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

use crate::rooms_support::{room_path, say, v1_path};

both_modes!(relations_and_threads, room_upgrade);

async fn send(client: &Client, room: &str, txn: &str, content: Value) -> String {
    let path = room_path(room, &format!("/send/m.room.message/{txn}"));
    client.put(&path, content).await.ok()["event_id"].as_str().unwrap().to_owned()
}

fn ids(body: &Value) -> Vec<&str> {
    body["chunk"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect()
}

async fn relations_and_threads(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    let root = say(&alice, &room, "root").await;
    let thread = |body: &str| json!({"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
    let r1 = send(&bob, &room, "r1", thread("one")).await;
    let r2 = send(&alice, &room, "r2", thread("two")).await;
    let edit = send(
        &alice,
        &room,
        "e1",
        json!({"msgtype": "m.text", "body": "* root!", "m.new_content": {"msgtype": "m.text", "body": "root!"},
               "m.relates_to": {"rel_type": "m.replace", "event_id": root}}),
    )
    .await;

    let all = alice.get(&v1_path(&room, &format!("/relations/{}", enc(&root)))).await.ok();
    assert_eq!(ids(&all), [edit.as_str(), r2.as_str(), r1.as_str()]);
    let page = alice.get(&v1_path(&room, &format!("/relations/{}/m.thread?limit=1&dir=f", enc(&root)))).await.ok();
    assert_eq!(ids(&page), [r1.as_str()]);
    let next = page["next_batch"].as_str().unwrap();
    let page2 = alice
        .get(&v1_path(&room, &format!("/relations/{}/m.thread?limit=1&dir=f&from={}", enc(&root), enc(next))))
        .await
        .ok();
    assert_eq!(ids(&page2), [r2.as_str()]);
    let typed = alice.get(&v1_path(&room, &format!("/relations/{}/m.replace/m.room.message", enc(&root)))).await.ok();
    assert_eq!(ids(&typed), [edit.as_str()]);
    let recursed = alice.get(&v1_path(&room, &format!("/relations/{}?recurse=true", enc(&root)))).await.ok();
    assert_eq!(recursed["recursion_depth"], 3);
    alice.get(&v1_path(&room, &format!("/relations/{}", enc("$nope")))).await.err(404, "M_NOT_FOUND");

    // Bundled aggregations wherever the root is served.
    let root_event = bob.get(&room_path(&room, &format!("/event/{}", enc(&root)))).await.ok();
    let relations = &root_event["unsigned"]["m.relations"];
    assert_eq!(relations["m.replace"]["event_id"], edit.as_str());
    assert_eq!(relations["m.thread"]["count"], 2);
    assert_eq!(relations["m.thread"]["latest_event"]["event_id"], r2.as_str());
    assert_eq!(relations["m.thread"]["current_user_participated"], true);
    let messages = bob.get(&room_path(&room, "/messages?dir=b&limit=20")).await.ok();
    let in_messages = messages["chunk"].as_array().unwrap().iter().find(|e| e["event_id"] == root.as_str()).unwrap();
    assert_eq!(in_messages["unsigned"]["m.relations"]["m.thread"]["count"], 2);

    // Threads, latest activity first; a thread cannot start from a reply.
    let other = say(&bob, &room, "another root").await;
    send(&bob, &room, "r3", json!({"body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": other}})).await;
    let threads = alice.get(&v1_path(&room, "/threads")).await.ok();
    assert_eq!(ids(&threads), [other.as_str(), root.as_str()]);
    let mine = alice.get(&v1_path(&room, "/threads?include=participated")).await.ok();
    assert_eq!(ids(&mine), [root.as_str()]);
    let nested = json!({"body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": r1}});
    alice.put(&room_path(&room, "/send/m.room.message/bad"), nested).await.err(400, "M_INVALID_PARAM");
}

async fn room_upgrade(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let old = alice
        .create_room(json!({"preset": "public_chat", "name": "Hall", "room_alias_name": "hall", "room_version": "10"}))
        .await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&old)), json!({})).await.ok();
    bob.post(&room_path(&old, "/upgrade"), json!({"new_version": "11"})).await.err(403, "M_FORBIDDEN");
    alice.post(&room_path(&old, "/upgrade"), json!({"new_version": "99"})).await.err(400, "M_UNSUPPORTED_ROOM_VERSION");
    let new = alice.post(&room_path(&old, "/upgrade"), json!({"new_version": "11"})).await.ok()["replacement_room"]
        .as_str()
        .unwrap()
        .to_owned();
    let tombstone = bob.get(&room_path(&old, "/state/m.room.tombstone")).await.ok();
    assert_eq!(tombstone["replacement_room"], new.as_str());
    let create = alice.get(&room_path(&new, "/state/m.room.create")).await.ok();
    assert_eq!((create["room_version"].as_str(), create["predecessor"]["room_id"].as_str()), (Some("11"), Some(&*old)));
    assert_eq!(alice.get(&room_path(&new, "/state/m.room.name")).await.ok()["name"], "Hall");
    // A public room has no guest access event; its successor has the private_chat preset's.
    alice.get(&room_path(&old, "/state/m.room.guest_access")).await.err(404, "M_NOT_FOUND");
    assert_eq!(alice.get(&room_path(&new, "/state/m.room.guest_access")).await.ok()["guest_access"], "can_join");
    let alias = alice.get(&format!("/_matrix/client/v3/directory/room/{}", enc("#hall:localhost"))).await.ok();
    assert_eq!(alias["room_id"], new.as_str());
    bob.put(&room_path(&old, "/send/m.room.message/late"), json!({"body": "hi"})).await.err(403, "M_FORBIDDEN");
    bob.post(&format!("/_matrix/client/v3/join/{}", enc("#hall:localhost")), json!({})).await.ok();
    say(&bob, &new, "moved").await;
}
