//! Simplified Sliding Sync (MSC4186), the protocol core: lists ordered by recency with counts
//! and ranges, rooms sent whole once and then only their news, long-polls that answer as soon
//! as a window room changes, connections that continue on any sync worker, and `pos` values
//! the server does not know answered with `M_UNKNOWN_POS`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

both_modes!(
    lists_are_ordered_by_recency_with_counts_and_ranges,
    long_poll_answers_with_only_the_news,
    connections_continue_on_any_worker_and_unknown_pos_restarts,
    versions_advertise_sliding_sync,
    woken_long_polls_answer_from_memory_as_the_exact_path_does,
);

pub(crate) fn list(ranges: Value, timeline_limit: u64, required_state: Value) -> Value {
    json!({"lists": {"all": {"ranges": ranges, "timeline_limit": timeline_limit, "required_state": required_state}}})
}

pub(crate) fn pos(body: &Value) -> String {
    body["pos"].as_str().expect("pos").to_owned()
}

pub(crate) fn bodies(room: &Value) -> Vec<String> {
    room["timeline"]
        .as_array()
        .map(|evs| evs.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

pub(crate) async fn user(server: &TestServer, name: &str) -> Client {
    let mut c = server.client();
    c.register(name, "pw").await;
    c
}

async fn lists_are_ordered_by_recency_with_counts_and_ranges(server: TestServer) {
    let alice = user(&server, "alice").await;
    let mut rooms = Vec::new();
    for name in ["first", "second", "third"] {
        let room = alice.create_room(json!({"name": name})).await;
        alice.send_text(&room, &format!("t-{name}"), &format!("hello {name}")).await;
        rooms.push(room);
    }
    // The first room becomes the most recent.
    alice.send_text(&rooms[0], "t-again", "again first").await;

    let req = list(json!([[0, 1]]), 1, json!([["m.room.name", ""], ["m.room.member", "$ME"]]));
    let body = alice.sliding(None, None, req).await.ok();
    assert_eq!(body["lists"]["all"]["count"], 3, "{body}");
    let got = body["rooms"].as_object().expect("rooms");
    assert_eq!(got.len(), 2, "only the window's rooms: {body}");
    let first = &got[&rooms[0]];
    let third = &got[&rooms[2]];
    assert!(!got.contains_key(&rooms[1]), "second is outside [0, 1]");
    assert!(first["bump_stamp"].as_u64() > third["bump_stamp"].as_u64(), "{first} vs {third}");
    assert_eq!(first["initial"], true);
    assert_eq!(first["name"], "first");
    assert_eq!(first["joined_count"], 1);
    assert_eq!(bodies(first), ["again first"], "timeline_limit 1: the latest event");
    assert_eq!(first["limited"], true);
    assert!(first["prev_batch"].is_string());
    let state: Vec<(String, String)> = first["required_state"]
        .as_array()
        .expect("required_state")
        .iter()
        .map(|e| (e["type"].as_str().unwrap().to_owned(), e["state_key"].as_str().unwrap().to_owned()))
        .collect();
    assert!(state.contains(&("m.room.name".into(), "".into())), "{state:?}");
    assert!(state.contains(&("m.room.member".into(), alice.user_id.clone())), "$ME is the user: {state:?}");
    assert!(state.iter().all(|(t, _)| t == "m.room.name" || t == "m.room.member"), "nothing else: {state:?}");

    // `prev_batch` pages back through the room with /messages.
    let from = first["prev_batch"].as_str().unwrap();
    let page = alice
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=5&from={}", enc(&rooms[0]), enc(from)))
        .await
        .ok();
    let older: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(older.first(), Some(&"hello first"), "{page}");

    // The next window brings the remaining room, sent whole; the rooms already sent are not
    // sent again.
    let more = list(json!([[0, 2]]), 1, json!([["m.room.name", ""]]));
    let next = alice.sliding(Some(&pos(&body)), Some(0), more).await.ok();
    let got = next["rooms"].as_object().expect("rooms");
    assert_eq!(got.keys().collect::<Vec<_>>(), [&rooms[1]], "{next}");
    assert_eq!(got[&rooms[1]]["initial"], true);
}

async fn long_poll_answers_with_only_the_news(server: TestServer) {
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let room = alice.create_room(json!({"preset": "public_chat", "name": "chat"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    let req = list(json!([[0, 9]]), 5, json!([["m.room.member", "$LAZY"]]));
    let body = alice.sliding(None, Some(10_000), req.clone()).await.ok();
    let p = pos(&body);

    // Nothing new: the poll waits for its timeout and brings nothing.
    let quiet = alice.sliding(Some(&p), Some(300), req.clone()).await.ok();
    assert!(quiet["rooms"].as_object().is_none_or(|r| r.is_empty()), "{quiet}");

    // A message wakes a waiting poll at once.
    let started = Instant::now();
    let poll = {
        let (alice, since, req) = (alice.clone(), pos(&quiet), req.clone());
        tokio::spawn(async move { alice.sliding(Some(&since), Some(20_000), req).await.ok() })
    };
    server.until_metric("trellis_sync_open_longpolls", 1.0).await;
    bob.send_text(&room, "t1", "wake up").await;
    let woken = poll.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "answered on the wake-up, not the timeout");
    let r = &woken["rooms"][&room];
    assert_eq!(bodies(r), ["wake up"], "only the new event: {woken}");
    assert!(r.get("initial").is_none(), "{r}");
    assert_eq!(r["num_live"], 1);
    // Bob's membership went with the room when it was sent whole ($LAZY): not again.
    let members: Vec<&Value> =
        r["required_state"].as_array().into_iter().flatten().filter(|e| e["type"] == "m.room.member").collect();
    assert!(members.is_empty(), "bob's member event was already sent: {r}");
    assert_ne!(pos(&woken), p);
}

async fn connections_continue_on_any_worker_and_unknown_pos_restarts(server: TestServer) {
    let alice = user(&server, "alice").await;
    let eve = user(&server, "eve").await;
    let room = alice.create_room(json!({"name": "work"})).await;
    let req = list(json!([[0, 9]]), 3, json!([]));
    let mut p = pos(&alice.sliding(None, None, req.clone()).await.ok());
    // Alternate the gateways (in split mode each has its own sync worker): each request
    // continues the connection, sending only what is new.
    for i in 0..4 {
        alice.send_text(&room, &format!("t{i}"), &format!("m{i}")).await;
        let via = alice.via(&server.urls[i % server.urls.len()]);
        let body = via.sliding(Some(&p), Some(5_000), req.clone()).await.ok();
        assert_eq!(bodies(&body["rooms"][&room]), [format!("m{i}")], "{body}");
        assert!(body["rooms"][&room].get("initial").is_none(), "{body}");
        p = pos(&body);
    }
    // A retried request (its answer lost) is answered again from the same position.
    alice.send_text(&room, "t-last", "last").await;
    let once = alice.sliding(Some(&p), Some(5_000), req.clone()).await.ok();
    let again = alice.via(server.urls.last().unwrap()).sliding(Some(&p), Some(5_000), req.clone()).await.ok();
    assert_eq!(bodies(&once["rooms"][&room]), ["last"]);
    assert_eq!(bodies(&again["rooms"][&room]), ["last"]);

    // Positions the server does not know, or of someone else, restart the connection.
    alice.sliding(Some("12345/s1"), Some(0), req.clone()).await.err(400, "M_UNKNOWN_POS");
    alice.sliding(Some("garbage"), Some(0), req.clone()).await.err(400, "M_UNKNOWN_POS");
    eve.sliding(Some(&p), Some(0), req.clone()).await.err(400, "M_UNKNOWN_POS");
    // A connection started again with the same conn_id forgets the old positions.
    alice.sliding(None, None, req.clone()).await.ok();
    alice.sliding(Some(&p), Some(0), req.clone()).await.err(400, "M_UNKNOWN_POS");
    // Eve sees nothing of alice's rooms.
    let hers = eve.sliding(None, None, req).await.ok();
    assert_eq!(hers["lists"]["all"]["count"], 0, "{hers}");
    assert!(hers["rooms"].as_object().is_none_or(|r| r.is_empty()), "{hers}");
}

/// A long-poll woken by new events in rooms its connection holds is answered from the worker's
/// memory, with what the exact path (PostgreSQL) answers for the same `pos`; a change the
/// memory cannot vouch for (a room entering the window) is answered exactly.
async fn woken_long_polls_answer_from_memory_as_the_exact_path_does(server: TestServer) {
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let chat = alice.create_room(json!({"preset": "public_chat", "name": "chat"})).await;
    let other = alice.create_room(json!({"preset": "public_chat", "name": "other"})).await;
    for room in [&chat, &other] {
        bob.post(&format!("/_matrix/client/v3/join/{}", enc(room)), json!({})).await.ok();
    }
    bob.send_text(&chat, "b0", "before").await;
    let request = |ranges: Value, since: Option<&str>| {
        let mut req = list(ranges, 5, json!([["m.room.member", "$LAZY"], ["m.room.name", ""]]));
        req["extensions"] = json!({
            "e2ee": {"enabled": true}, "to_device": {"enabled": true, "since": since},
            "receipts": {"enabled": true}, "typing": {"enabled": true},
        });
        req
    };
    let first = alice.sliding(None, None, request(json!([[0, 9]]), None)).await.ok();
    let since = first["extensions"]["to_device"]["next_batch"].as_str().expect("to-device batch").to_owned();
    let req = request(json!([[0, 9]]), Some(&since));
    let p = pos(&first);

    let woken_poll = |p: String, req: Value| {
        let alice = alice.clone();
        tokio::spawn(async move { alice.sliding(Some(&p), Some(20_000), req).await.ok() })
    };
    let fast_before = server.metric("trellis_sliding_fast_responses_total").await;
    let poll = woken_poll(p.clone(), req.clone());
    server.until_metric("trellis_sync_open_longpolls", 1.0).await;
    bob.send_text(&chat, "b1", "from memory").await;
    let fast = poll.await.unwrap();
    let text = reqwest::get(server.metrics_url()).await.unwrap().text().await.unwrap();
    let slow: Vec<&str> = text.lines().filter(|l| l.starts_with("trellis_sliding_slow_path_total")).collect();
    assert_eq!(server.metric("trellis_sliding_fast_responses_total").await - fast_before, 1.0, "{slow:?} {fast}");
    assert_eq!(bodies(&fast["rooms"][&chat]), ["from memory"], "{fast}");
    assert!(fast["rooms"].get(&other).is_none(), "{fast}");

    // The same `pos` asked again is answered by the exact path: the same answer.
    let exact = alice.sliding(Some(&p), Some(0), req.clone()).await.ok();
    assert_eq!(server.metric("trellis_sliding_fast_responses_total").await - fast_before, 1.0, "{exact}");
    let ids = |b: &Value| -> Vec<Value> {
        b["rooms"][&chat]["timeline"].as_array().expect("timeline").iter().map(|e| e["event_id"].clone()).collect()
    };
    assert_eq!(ids(&fast), ids(&exact));
    let (f, e) = (&fast["rooms"][&chat], &exact["rooms"][&chat]);
    for field in
        ["bump_stamp", "num_live", "prev_batch", "limited", "initial", "required_state", "notification_count", "is_dm"]
    {
        assert_eq!(f.get(field), e.get(field), "{field}: {f} vs {e}");
    }
    assert_eq!(f["notification_count"], 2, "bob's two messages, carried on from memory: {f}");
    assert_eq!(fast["lists"], exact["lists"]);
    assert_eq!(fast["extensions"], exact["extensions"]);
    assert_eq!(fast["rooms"].as_object().map(|r| r.len()), exact["rooms"].as_object().map(|r| r.len()));

    // Another reader's receipt and typing reach the poll from memory too, as the exact path
    // sends them.
    let mut p = pos(&fast);
    let read = f["timeline"][0]["event_id"].as_str().expect("event ID").to_owned();
    for (stream, wake) in [("receipts", "receipt"), ("typing", "typing")] {
        let poll = woken_poll(p.clone(), req.clone());
        server.until_metric("trellis_sync_open_longpolls", 1.0).await;
        match wake {
            "receipt" => {
                let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&chat), enc(&read));
                bob.post(&path, json!({})).await.ok()
            }
            _ => {
                let path = format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&chat), enc(&bob.user_id));
                bob.put(&path, json!({"typing": true, "timeout": 30_000})).await.ok()
            }
        };
        let woken = poll.await.unwrap();
        assert!(woken["extensions"][stream]["rooms"].get(&chat).is_some(), "{woken}");
        assert!(woken["rooms"].as_object().is_none_or(|r| r.is_empty()), "{woken}");
        let exact = alice.sliding(Some(&p), Some(0), req.clone()).await.ok();
        assert_eq!(woken["extensions"][stream], exact["extensions"][stream], "{stream}");
        p = pos(&woken);
    }
    assert_eq!(server.metric("trellis_sliding_fast_responses_total").await - fast_before, 3.0);

    // A narrow window over the same rooms: a message in the room outside it brings that room
    // in, sent whole by the exact path.
    let narrow = {
        let mut r = request(json!([[0, 0]]), Some(&since));
        r["conn_id"] = json!("narrow");
        r
    };
    let start = alice.sliding(None, None, narrow.clone()).await.ok();
    assert!(start["rooms"].get(&chat).is_some() && start["rooms"].get(&other).is_none(), "{start}");
    let fast_before = server.metric("trellis_sliding_fast_responses_total").await;
    let poll = woken_poll(pos(&start), narrow);
    server.until_metric("trellis_sync_open_longpolls", 1.0).await;
    bob.send_text(&other, "b2", "over here").await;
    let entered = poll.await.unwrap();
    let room = &entered["rooms"][&other];
    assert_eq!(room["initial"], true, "{entered}");
    assert_eq!(room["name"], "other", "{entered}");
    assert_eq!(bodies(room).last().map(String::as_str), Some("over here"), "{entered}");
    assert_eq!(server.metric("trellis_sliding_fast_responses_total").await - fast_before, 0.0);
}

async fn versions_advertise_sliding_sync(server: TestServer) {
    let body = server.client().get("/_matrix/client/versions").await.ok();
    assert_eq!(body["unstable_features"]["org.matrix.simplified_msc3575"], true, "{body}");
}
