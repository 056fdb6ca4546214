//! The very first tutorial, as written: `/_matrix/client/api/v1` paths, one-shot registration,
//! `POST .../send`, invites, joins by ID and alias, `/initialSync` and the `/events` stream;
//! then the rest of the old API as SyTest and old clients use it: limits, receipts, presence
//! and account data in `/initialSync`, room snapshots of departed and `world_readable` rooms,
//! `/events` catching up in order and peeking.

use std::time::Duration;

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

both_modes!(
    the_first_tutorial,
    initial_sync_honours_limit_and_carries_receipts_presence_and_account_data,
    room_initial_sync_of_departed_and_world_readable_rooms,
    events_catch_up_in_order_with_account_data,
    events_refuse_bad_input,
    a_sync_token_pages_messages_forward,
);

const V1: &str = "/_matrix/client/api/v1";

async fn register_v1(c: &mut Client, user: &str) {
    let reg = c
        .post(&format!("{V1}/register"), json!({"user": user, "password": "pw", "type": "m.login.password"}))
        .await
        .ok();
    assert_eq!(reg["user_id"], format!("@{user}:localhost"));
    let login =
        c.post(&format!("{V1}/login"), json!({"type": "m.login.password", "user": user, "password": "pw"})).await.ok();
    c.token = login["access_token"].as_str().map(str::to_owned);
    c.user_id = login["user_id"].as_str().unwrap().to_owned();
}

async fn the_first_tutorial(server: TestServer) {
    let mut alice = server.client();
    register_v1(&mut alice, "alice").await;
    let mut bob = server.client();
    register_v1(&mut bob, "bob").await;
    let mut carol = server.client();
    register_v1(&mut carol, "carol").await;

    let room = alice.post(&format!("{V1}/createRoom"), json!({"room_alias_name": "tutorial"})).await.ok()["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice
        .post(&format!("{V1}/rooms/{}/send/m.room.message", enc(&room)), json!({"msgtype": "m.text", "body": "hello"}))
        .await
        .ok();
    alice.post(&format!("{V1}/rooms/{}/invite", enc(&room)), json!({"user_id": "@bob:localhost"})).await.ok();
    bob.post(&format!("{V1}/rooms/{}/join", enc(&room)), json!({})).await.ok();
    alice.post(&format!("{V1}/rooms/{}/invite", enc(&room)), json!({"user_id": "@carol:localhost"})).await.ok();
    carol.post(&format!("{V1}/join/{}", enc("#tutorial:localhost")), json!({})).await.ok();

    let init = bob.get(&format!("{V1}/initialSync?limit=10")).await.ok();
    let rooms = init["rooms"].as_array().unwrap();
    let r = rooms.iter().find(|r| r["room_id"] == room.as_str()).expect("the room");
    assert_eq!(r["membership"], "join");
    let chunk = r["messages"]["chunk"].as_array().unwrap();
    assert!(chunk.iter().any(|e| e["content"]["body"] == "hello" && e["room_id"] == room.as_str()));
    assert!(r["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));
    let end = init["end"].as_str().unwrap().to_owned();

    // The event stream long-polls from `end` (reading it marks bob online first: that is
    // news too, so the stream is followed until the message comes).
    let stream = {
        let bob = bob.clone();
        tokio::spawn(async move {
            let mut from = end;
            for _ in 0..5 {
                let page = bob.get(&format!("{V1}/events?from={}&timeout=20000", enc(&from))).await.ok();
                if page["chunk"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.message") {
                    return page;
                }
                from = page["end"].as_str().unwrap().to_owned();
            }
            panic!("no message in the event stream")
        })
    };
    // The long-poll is open (waiting on the worker) before anything is sent.
    server.until_metric("trellis_sync_open_longpolls", 1.0).await;
    alice
        .post(
            &format!("{V1}/rooms/{}/send/m.room.message", enc(&room)),
            json!({"msgtype": "m.text", "body": "streamed"}),
        )
        .await
        .ok();
    let events: Value = tokio::time::timeout(Duration::from_secs(15), stream).await.unwrap().unwrap();
    let chunk = events["chunk"].as_array().unwrap();
    assert!(chunk.iter().any(|e| e["content"]["body"] == "streamed" && e["room_id"] == room.as_str()), "{events}");
    assert!(events["end"].is_string() && events["start"].is_string());

    let per_room = carol.get(&format!("{V1}/rooms/{}/initialSync", enc(&room))).await.ok();
    assert_eq!(per_room["room_id"], room.as_str());
    assert!(per_room["messages"]["chunk"].as_array().unwrap().iter().any(|e| e["content"]["body"] == "streamed"));
    let mut stranger = server.client();
    register_v1(&mut stranger, "dave").await;
    stranger.get(&format!("{V1}/rooms/{}/initialSync", enc(&room))).await.err(403, "M_FORBIDDEN");
}

const V3: &str = "/_matrix/client/v3";

fn room_of<'a>(init: &'a Value, room: &str) -> &'a Value {
    init["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == room).unwrap_or_else(|| panic!("{room}: {init}"))
}

fn bodies(chunk: &Value) -> Vec<&str> {
    chunk.as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect()
}

async fn initial_sync_honours_limit_and_carries_receipts_presence_and_account_data(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let public = alice.create_room(json!({"visibility": "public", "preset": "public_chat"})).await;
    let private = alice.create_room(json!({})).await;
    bob.post(&format!("{V3}/join/{}", enc(&public)), json!({})).await.ok();
    let first = alice.send_text(&public, "t1", "one").await;
    alice.send_text(&public, "t2", "two").await;
    alice.post(&format!("{V3}/rooms/{}/receipt/m.read/{}", enc(&public), enc(&first)), json!({})).await.ok();
    alice.put(&format!("{V3}/presence/{}/status", enc(&alice.user_id)), json!({"presence": "online"})).await.ok();
    bob.put(&format!("{V3}/presence/{}/status", enc(&bob.user_id)), json!({"presence": "online"})).await.ok();
    let me = enc(&alice.user_id);
    alice.put(&format!("{V3}/user/{me}/account_data/my.type"), json!({"n": 1})).await.ok();
    alice.put(&format!("{V3}/user/{me}/account_data/my.type"), json!({"n": 2})).await.ok();
    alice.put(&format!("{V3}/user/{me}/rooms/{}/account_data/my.type", enc(&public)), json!({"r": 1})).await.ok();

    let none = alice.get(&format!("{V3}/initialSync?limit=0")).await.ok();
    assert_eq!(room_of(&none, &public)["messages"]["chunk"], json!([]), "{none}");
    let init = alice.get(&format!("{V3}/initialSync?limit=2")).await.ok();
    let room = room_of(&init, &public);
    assert_eq!(bodies(&room["messages"]["chunk"]), ["one", "two"], "{room}");
    assert_eq!((room["membership"].as_str(), room["visibility"].as_str()), (Some("join"), Some("public")));
    assert_eq!(room_of(&init, &private)["visibility"], "private");
    // The v1 format: `user_id` is the sender, members keyed by it.
    let event = &room["messages"]["chunk"][0];
    assert_eq!(
        (event["user_id"].as_str(), event["room_id"].as_str()),
        (Some(alice.user_id.as_str()), Some(public.as_str()))
    );
    assert!(
        room["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["user_id"] == bob.user_id.as_str())
    );
    assert_eq!(room["account_data"], json!([{"type": "my.type", "content": {"r": 1}}]), "{room}");
    // The latest account data, without push rules (they have their own API).
    assert_eq!(init["account_data"], json!([{"type": "my.type", "content": {"n": 2}}]), "{init}");
    let receipt =
        init["receipts"].as_array().unwrap().iter().find(|r| r["room_id"] == public.as_str()).expect("receipts");
    assert!(receipt["content"][&first]["m.read"][&alice.user_id]["ts"].is_number(), "{receipt}");
    for who in [&alice.user_id, &bob.user_id] {
        let p = init["presence"].as_array().unwrap().iter().find(|p| p["content"]["user_id"] == who.as_str());
        assert_eq!(p.map(|p| p["content"]["presence"].clone()), Some(json!("online")), "{who}: {init}");
    }

    // The room's own snapshot: limit, members' presence and receipts.
    let one = alice.get(&format!("{V3}/rooms/{}/initialSync?limit=1", enc(&public))).await.ok();
    assert_eq!(bodies(&one["messages"]["chunk"]), ["two"]);
    assert_eq!(one["membership"], "join");
    assert!(one["receipts"].as_array().unwrap().iter().any(|r| r["type"] == "m.receipt"), "{one}");
    let presence: Vec<&str> =
        one["presence"].as_array().unwrap().iter().filter_map(|p| p["content"]["user_id"].as_str()).collect();
    assert!(presence.contains(&alice.user_id.as_str()) && presence.contains(&bob.user_id.as_str()), "{one}");
    let zero = alice.get(&format!("{V3}/rooms/{}/initialSync?limit=0", enc(&public))).await.ok();
    assert_eq!(zero["messages"]["chunk"], json!([]));
}

async fn room_initial_sync_of_departed_and_world_readable_rooms(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();
    alice.send_text(&room, "t1", "before").await;
    bob.post(&format!("{V3}/rooms/{}/leave", enc(&room)), json!({})).await.ok();
    alice.send_text(&room, "t2", "after").await;
    alice.put(&format!("{V3}/rooms/{}/state/m.room.topic", enc(&room)), json!({"topic": "later"})).await.ok();

    // Bob sees the room as it was when he left.
    let left = bob.get(&format!("{V3}/rooms/{}/initialSync?limit=2", enc(&room))).await.ok();
    assert_eq!(left["membership"], "leave");
    let chunk = left["messages"]["chunk"].as_array().unwrap();
    assert_eq!(chunk[0]["content"]["body"], "before", "{left}");
    assert_eq!(chunk.last().unwrap()["content"]["membership"], "leave");
    assert!(!left["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.topic"), "{left}");
    assert_eq!((left["presence"].clone(), left["receipts"].clone()), (json!([]), json!([])));
    // The global snapshot lists it only with archived=true.
    let init = bob.get(&format!("{V3}/initialSync")).await.ok();
    assert!(init["rooms"].as_array().unwrap().iter().all(|r| r["room_id"] != room.as_str()), "{init}");
    let archived = bob.get(&format!("{V3}/initialSync?archived=true")).await.ok();
    assert_eq!(room_of(&archived, &room)["membership"], "leave");

    // Carol never joined: refused until the room is world_readable, then she sees what is
    // world_readable, without a membership.
    carol.get(&format!("{V3}/rooms/{}/initialSync", enc(&room))).await.err(403, "M_FORBIDDEN");
    carol.get(&format!("{V3}/events?room_id={}&timeout=0", enc(&room))).await.err(403, "M_FORBIDDEN");
    let hv = json!({"history_visibility": "world_readable"});
    alice.put(&format!("{V3}/rooms/{}/state/m.room.history_visibility", enc(&room)), hv).await.ok();
    alice.send_text(&room, "t3", "public").await;
    let peek = carol.get(&format!("{V3}/rooms/{}/initialSync", enc(&room))).await.ok();
    assert!(peek.get("membership").is_none(), "{peek}");
    let chunk = peek["messages"]["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 2, "{peek}");
    assert_eq!(
        (chunk[0]["type"].as_str(), chunk[1]["content"]["body"].as_str()),
        (Some("m.room.history_visibility"), Some("public"))
    );
    // And follows it with /events from the snapshot's end.
    let end = peek["messages"]["end"].as_str().unwrap().to_owned();
    alice.send_text(&room, "t4", "streamed").await;
    let events = carol.get(&format!("{V3}/events?room_id={}&from={}&timeout=10000", enc(&room), enc(&end))).await.ok();
    assert_eq!(bodies(&events["chunk"]), ["streamed"], "{events}");
}

async fn events_catch_up_in_order_with_account_data(server: TestServer) {
    let alice = server.user("alice").await;
    let room = alice.create_room(json!({})).await;
    let start = alice.get(&format!("{V3}/events?timeout=0")).await.ok()["end"].as_str().unwrap().to_owned();
    let mut sent = Vec::new();
    for i in 0..12 {
        sent.push(alice.send_text(&room, &format!("t{i}"), &format!("m{i}")).await);
    }
    let me = enc(&alice.user_id);
    alice.put(&format!("{V3}/user/{me}/rooms/{}/tags/u.work", enc(&room)), json!({"order": 0.5})).await.ok();
    alice.put(&format!("{V3}/user/{me}/account_data/my.type"), json!({"n": 1})).await.ok();

    // Five at a time, oldest first, none twice.
    let (mut seen, mut from, mut others) = (Vec::new(), start, Vec::new());
    for _ in 0..10 {
        let page = alice.get(&format!("{V3}/events?from={}&limit=5&timeout=10000", enc(&from))).await.ok();
        let chunk = page["chunk"].as_array().unwrap();
        assert!(chunk.iter().filter(|e| e["type"] == "m.room.message").count() <= 5, "{page}");
        for e in chunk {
            match e["type"].as_str() {
                Some("m.room.message") => seen.push(e["event_id"].as_str().unwrap().to_owned()),
                _ => others.push(e.clone()),
            }
        }
        from = page["end"].as_str().unwrap().to_owned();
        if seen.len() == sent.len() && others.iter().any(|e| e["type"] == "my.type") {
            break;
        }
    }
    assert_eq!(seen, sent);
    let tag = others.iter().find(|e| e["type"] == "m.tag").expect("the tag event");
    assert_eq!(
        (tag["room_id"].as_str(), tag["content"]["tags"]["u.work"]["order"].as_f64()),
        (Some(room.as_str()), Some(0.5))
    );
    assert!(others.iter().any(|e| e["type"] == "my.type" && e["content"]["n"] == 1 && e.get("room_id").is_none()));
    assert!(!others.iter().any(|e| e["type"] == "m.push_rules"));
    // Nothing new: an empty chunk at the timeout, and the same token back.
    let idle = alice.get(&format!("{V3}/events?from={}&timeout=0", enc(&from))).await.ok();
    assert_eq!((idle["chunk"].clone(), idle["end"].as_str()), (json!([]), Some(from.as_str())), "{idle}");
}

async fn events_refuse_bad_input(server: TestServer) {
    let alice = server.user("alice").await;
    for bad in ["limit=-2", "limit=hello", "timeout=hello", "from=nonsense"] {
        alice.get(&format!("{V3}/events?{bad}")).await.err(400, "M_INVALID_PARAM");
    }
    alice.get(&format!("{V3}/initialSync?limit=hello")).await.err(400, "M_INVALID_PARAM");
    alice.get(&format!("{V3}/rooms/{}/initialSync?limit=-1", enc("!r:localhost"))).await.err(400, "M_INVALID_PARAM");
    alice.get(&format!("{V3}/rooms/{}/initialSync", enc("not-a-room"))).await.err(400, "M_INVALID_PARAM");
    alice.get(&format!("{V3}/events?room_id={}", enc("not-a-room"))).await.err(400, "M_INVALID_PARAM");
}

async fn a_sync_token_pages_messages_forward(server: TestServer) {
    let alice = server.user("alice").await;
    let room = alice.create_room(json!({})).await;
    alice.send_text(&room, "t1", "1").await;
    let next = alice.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let second = alice.send_text(&room, "t2", "2").await;
    let page = alice.get(&format!("{V3}/rooms/{}/messages?dir=f&from={}", enc(&room), enc(&next))).await.ok();
    assert_eq!(page["chunk"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["chunk"][0]["event_id"], second.as_str());
    // A short page still says where to look from next; an empty one does not.
    let end = page["end"].as_str().expect("end").to_owned();
    let after = alice.get(&format!("{V3}/rooms/{}/messages?dir=f&from={}", enc(&room), enc(&end))).await.ok();
    assert_eq!(after["chunk"], json!([]));
    assert!(after.get("end").is_none(), "{after}");
}
