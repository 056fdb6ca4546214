//! A client's consecutive long-polls may land on any sync worker (in split mode they
//! alternate between two) and still receive every event exactly once, in order — also while
//! several writers commit concurrently.

use std::{collections::HashMap, time::Duration};

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

both_modes!(alternating_long_polls_lose_nothing, concurrent_writers_are_delivered_exactly_once);

/// Polls until `expected` message bodies arrived, alternating gateways; returns them in
/// arrival order per room.
async fn collect(server: &TestServer, reader: &Client, since: String, expected: usize) -> HashMap<String, Vec<String>> {
    let mut since = since;
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    let mut total = 0;
    let mut polls = 0;
    while total < expected {
        polls += 1;
        assert!(polls < 500, "gave up after {polls} polls with {total}/{expected} messages");
        let via = reader.via(&server.urls[polls % server.urls.len()]);
        let body: Value = via.sync(Some(&since), None, 10_000).await;
        for (room, r) in body["rooms"]["join"].as_object().cloned().unwrap_or_default() {
            for e in r["timeline"]["events"].as_array().cloned().unwrap_or_default() {
                if e["type"] == "m.room.message" {
                    got.entry(room.clone()).or_default().push(e["content"]["body"].as_str().unwrap().to_owned());
                    total += 1;
                }
            }
            assert_eq!(r["timeline"]["limited"], false, "the reader keeps up; nothing is skipped");
        }
        since = body["next_batch"].as_str().unwrap().to_owned();
    }
    // Nothing more arrives afterwards: nothing was duplicated into a later batch.
    let tail = reader.sync(Some(&since), None, 300).await;
    assert!(tail["rooms"]["join"].as_object().unwrap().is_empty(), "unexpected extra events: {tail}");
    got
}

async fn alternating_long_polls_lose_nothing(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    let since = alice.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    let sender = {
        let bob = bob.clone();
        let room = room.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                bob.send_text(&room, &format!("t{i}"), &format!("{i}")).await;
                if i % 3 == 0 {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }
        })
    };
    let got = collect(&server, &alice, since, 30).await;
    sender.await.unwrap();
    let expected: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    assert_eq!(got[&room], expected, "every message exactly once, in order");
}

async fn concurrent_writers_are_delivered_exactly_once(server: TestServer) {
    let mut reader = server.client();
    reader.register("reader", "pw").await;
    let mut writers = Vec::new();
    let mut rooms = Vec::new();
    for w in 0..4 {
        let mut c = Client::new(&server.urls[w % server.urls.len()]);
        c.register(&format!("writer{w}"), "pw").await;
        let room = c.create_room(json!({"preset": "public_chat"})).await;
        reader.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
        rooms.push(room);
        writers.push(c);
    }
    let since = reader.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for (w, c) in writers.into_iter().enumerate() {
        let room = rooms[w].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                c.send_text(&room, &format!("w{w}-{i}"), &format!("{w}:{i}")).await;
            }
        }));
    }
    let got = collect(&server, &reader, since, 60).await;
    for t in tasks {
        t.await.unwrap();
    }
    for (w, room) in rooms.iter().enumerate() {
        let expected: Vec<String> = (0..15).map(|i| format!("{w}:{i}")).collect();
        assert_eq!(got[room], expected, "room of writer {w}");
    }
}
