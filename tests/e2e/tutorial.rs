//! The walk of the spec's client-server tutorial: register, log in, create a room with an
//! alias, send, invite, join through the invite and through the alias, initial sync,
//! incremental long-poll sync, a filter with timeline limit 1 and back-fill via `/messages`.

use std::time::{Duration, Instant};

use serde_json::json;
use trellis_testkit::{Client, TestServer, enc, timeline_bodies};

both_modes!(tutorial_walk, one_shot_register_and_legacy_send, public_room_join_by_alias);

async fn tutorial_walk(server: TestServer) {
    let mut alice = server.client();
    let registered = alice.register("alice", "wordpass").await;
    assert_eq!(registered["user_id"], "@alice:localhost");
    // Log in again the r0 way, with the legacy `user` field.
    let login = alice
        .post("/_matrix/client/r0/login", json!({"type": "m.login.password", "user": "alice", "password": "wordpass"}))
        .await
        .ok();
    alice.token = login["access_token"].as_str().map(str::to_owned);
    assert_eq!(alice.get("/_matrix/client/v3/account/whoami").await.ok()["user_id"], "@alice:localhost");

    let mut bob = server.client();
    bob.register("bob", "secret").await;
    let mut carol = server.client();
    carol.register("carol", "secret").await;

    let room = alice.create_room(json!({"room_alias_name": "tutorial", "name": "Tutorial"})).await;
    let resolved = alice.get(&format!("/_matrix/client/v3/directory/room/{}", enc("#tutorial:localhost"))).await.ok();
    assert_eq!(resolved["room_id"], room.as_str());
    alice.send_text(&room, "t1", "hello").await;

    // Bob joins through an invite, by room ID.
    alice
        .post(&format!("/_matrix/client/r0/rooms/{}/invite", enc(&room)), json!({"user_id": "@bob:localhost"}))
        .await
        .ok();
    let joined = bob.post(&format!("/_matrix/client/r0/rooms/{}/join", enc(&room)), json!({})).await.ok();
    assert_eq!(joined["room_id"], room.as_str());
    // Carol, invited too, joins through the alias.
    alice
        .post(&format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)), json!({"user_id": "@carol:localhost"}))
        .await
        .ok();
    let joined = carol.post(&format!("/_matrix/client/r0/join/{}", enc("#tutorial:localhost")), json!({})).await.ok();
    assert_eq!(joined["room_id"], room.as_str());

    // Initial sync.
    let initial = alice.sync(None, None, 0).await;
    assert_eq!(timeline_bodies(&initial, &room), vec!["hello"]);
    let joined_room = &initial["rooms"]["join"][&room];
    assert_eq!(joined_room["summary"]["m.joined_member_count"], 3);
    let since = initial["next_batch"].as_str().unwrap().to_owned();

    // Incremental long-poll: answered as soon as Bob speaks.
    let poll = {
        let alice = alice.clone();
        let since = since.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (alice.sync(Some(&since), None, 30_000).await, started.elapsed())
        })
    };
    // The long-poll is open (waiting on the worker) before anything is sent.
    server.until_metric("trellis_sync_open_longpolls", 1.0).await;
    bob.send_text(&room, "b1", "hi alice").await;
    let (incremental, waited) = poll.await.unwrap();
    assert_eq!(timeline_bodies(&incremental, &room), vec!["hi alice"]);
    assert!(waited < Duration::from_secs(10), "long-poll answered on the event, after {waited:?}");
    let since = incremental["next_batch"].as_str().unwrap().to_owned();

    // Timeline limit 1 → limited, with a prev_batch that back-fills through /messages.
    for i in 0..5 {
        alice.send_text(&room, &format!("m{i}"), &format!("message {i}")).await;
    }
    let limited = alice.sync(Some(&since), Some(&json!({"room": {"timeline": {"limit": 1}}})), 0).await;
    let timeline = &limited["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], true);
    assert_eq!(timeline_bodies(&limited, &room), vec!["message 4"]);
    let prev_batch = timeline["prev_batch"].as_str().unwrap();
    let page = alice
        .get(&format!("/_matrix/client/r0/rooms/{}/messages?from={}&dir=b&limit=10", enc(&room), enc(prev_batch)))
        .await
        .ok();
    let back: Vec<&str> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(&back[..4], &["message 3", "message 2", "message 1", "message 0"]);
    assert!(page["end"].is_string());

    // Room state as the tutorial reads it.
    let name = alice.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room))).await.ok();
    assert_eq!(name, json!({"name": "Tutorial"}));
    let state = alice.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room))).await.ok();
    assert!(state.as_array().unwrap().iter().any(|e| e["type"] == "m.room.canonical_alias"));
}

async fn one_shot_register_and_legacy_send(server: TestServer) {
    // The oldest tutorial: register in one call, send with POST and the token in the query.
    let mut client = server.client();
    let reg = client
        .post("/_matrix/client/r0/register", json!({"user": "oldtimer", "password": "pw", "type": "m.login.password"}))
        .await
        .ok();
    let token = reg["access_token"].as_str().unwrap().to_owned();
    client.token = None;
    let room =
        client.post(&format!("/_matrix/client/r0/createRoom?access_token={token}"), json!({})).await.ok()["room_id"]
            .as_str()
            .unwrap()
            .to_owned();
    let sent = client
        .post(
            &format!("/_matrix/client/r0/rooms/{}/send/m.room.message?access_token={token}", enc(&room)),
            json!({"msgtype": "m.text", "body": "hello"}),
        )
        .await
        .ok();
    assert!(sent["event_id"].as_str().unwrap().starts_with('$'));
    let sync = client.get(&format!("/_matrix/client/r0/sync?access_token={token}")).await.ok();
    assert_eq!(timeline_bodies(&sync, &room), vec!["hello"]);

    // PUT with a transaction ID is idempotent: same event, stored once.
    let mut c = server.client();
    c.token = Some(token);
    let first = c.send_text(&room, "same-txn", "once").await;
    let again = c.send_text(&room, "same-txn", "once").await;
    assert_eq!(first, again);
    let sync = c.sync(None, None, 0).await;
    assert_eq!(timeline_bodies(&sync, &room), vec!["hello", "once"]);
}

async fn public_room_join_by_alias(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let mut dave = Client::new(server.url());
    dave.register("dave", "pw").await;
    let room = alice.create_room(json!({"room_alias_name": "lobby", "preset": "public_chat"})).await;
    let joined = dave
        .post(&format!("/_matrix/client/v3/join/{}?server_name=localhost", enc("#lobby:localhost")), json!({}))
        .await
        .ok();
    assert_eq!(joined["room_id"], room.as_str());
    // Joining again is a no-op.
    dave.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    let rooms = dave.get("/_matrix/client/v3/joined_rooms").await.ok();
    assert_eq!(rooms["joined_rooms"], json!([room]));
    dave.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), json!({})).await.ok();
    assert_eq!(dave.get("/_matrix/client/v3/joined_rooms").await.ok()["joined_rooms"], json!([]));
}
