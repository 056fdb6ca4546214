//! No stored row makes a read fail. The gateway refuses NUL in every input, but a row may
//! still hold the JSON escape `\u0000` (written before that refusal, or by hand), which
//! PostgreSQL cannot read as `jsonb`: every read path that looks inside stored JSON must still
//! answer, for everyone, with the room's events.

use serde_json::json;
use trellis_testkit::{Client, TestServer, enc};

both_modes!(stored_nul_breaks_no_read, stored_nul_breaks_no_sliding_read);

/// Puts `\u0000` where every `POISON` stands in the stored events: their content, their
/// `unsigned` data and their PDU.
async fn poison(server: &TestServer) {
    let touched = server
        .sql(
            r"UPDATE events SET content = replace(content, 'POISON', '\u0000'),
                unsigned_json = replace(unsigned_json, 'POISON', '\u0000'),
                pdu = replace(pdu, 'POISON', '\u0000')
              WHERE content LIKE '%POISON%' OR unsigned_json LIKE '%POISON%'",
        )
        .await;
    assert!(touched >= 10, "poisoned {touched} rows");
}

/// Reads that must answer 200; every failure is listed at the end, not only the first.
#[derive(Default)]
struct Reads {
    failed: Vec<String>,
}

impl Reads {
    async fn get(&mut self, c: &Client, path: &str) -> serde_json::Value {
        self.check("GET", path, c.get(path).await)
    }

    async fn post(&mut self, c: &Client, path: &str, body: serde_json::Value) -> serde_json::Value {
        self.check("POST", path, c.post(path, body).await)
    }

    fn check(&mut self, method: &str, path: &str, reply: trellis_testkit::Reply) -> serde_json::Value {
        if reply.status != 200 {
            self.failed.push(format!("{method} {path}: {} {}", reply.status, reply.body));
        }
        reply.body
    }

    /// Notes a read whose answer lacks what it should show.
    fn expect(&mut self, holds: bool, what: String) {
        if !holds {
            self.failed.push(what);
        }
    }

    /// One `/sync` of `c`.
    async fn sync(&mut self, c: &Client, since: Option<&str>, filter: Option<&serde_json::Value>) -> serde_json::Value {
        let mut path = "/_matrix/client/v3/sync?timeout=0".to_owned();
        if let Some(s) = since {
            path.push_str(&format!("&since={}", enc(s)));
        }
        if let Some(f) = filter {
            path.push_str(&format!("&filter={}", enc(&f.to_string())));
        }
        self.get(c, &path).await
    }
}

async fn stored_nul_breaks_no_read(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let mut bob = server.client();
    bob.register("bob", "pw").await;
    alice.put("/_matrix/client/v3/profile/@alice:localhost/displayname", json!({"displayname": "POISON a"})).await.ok();

    // A public, world-readable room whose every kind of state and message holds the marker.
    let room = alice
        .create_room(json!({
            "preset": "public_chat", "visibility": "public", "room_alias_name": "poisoned",
            "name": "POISON name", "topic": "POISON topic",
            "initial_state": [
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable", "x": "POISON"}},
                {"type": "m.room.avatar", "state_key": "", "content": {"url": "mxc://localhost/POISON"}},
                {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join", "x": "POISON"}},
            ],
        }))
        .await;
    let r = enc(&room);
    bob.post(&format!("/_matrix/client/v3/join/{r}"), json!({})).await.ok();
    let image = json!({"msgtype": "m.image", "body": "POISON.png", "url": "mxc://localhost/POISON"});
    let root = alice.put(&format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/img"), image).await.ok();
    let root = root["event_id"].as_str().unwrap().to_owned();
    let edit = json!({
        "msgtype": "m.text", "body": "* POISON",
        "m.new_content": {"msgtype": "m.text", "body": "POISON"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": root},
    });
    alice.put(&format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/edit"), edit).await.ok();
    let reply = json!({"msgtype": "m.text", "body": "POISON in thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
    bob.put(&format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/thread"), reply).await.ok();
    alice.put(&format!("/_matrix/client/v3/rooms/{r}/send/m.custom/c"), json!({"POISON": ["POISON"]})).await.ok();
    // A state event replaced later: its successor's `unsigned.replaces_state` points at it.
    let old_topic = alice
        .put(&format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic"), json!({"topic": "POISON again"}))
        .await
        .ok();
    let old_topic = old_topic["event_id"].as_str().unwrap().to_owned();
    alice.put(&format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic"), json!({"topic": "POISON third"})).await.ok();
    let since = bob.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    poison(&server).await;
    let mut reads = Reads::default();

    // Anonymous and authenticated directory listings, with and without a search term.
    let anon = server.client();
    let public = reads.get(&anon, "/_matrix/client/v3/publicRooms").await;
    let listed = public["chunk"].as_array().is_some_and(|l| l.iter().any(|c| c["room_id"] == room));
    reads.expect(listed, format!("the room is not listed: {public}"));
    reads.post(&bob, "/_matrix/client/v3/publicRooms", json!({"filter": {"generic_search_term": "name"}})).await;
    // The user directory, for someone sharing the room and for a stranger.
    let mut carol = server.client();
    carol.register("carol", "pw").await;
    for c in [&bob, &carol] {
        let found = reads.post(c, "/_matrix/client/v3/user_directory/search", json!({"search_term": "alice"})).await;
        reads.expect(found["results"][0]["user_id"] == "@alice:localhost", format!("alice not found: {found}"));
    }

    // History, single events, context, relations and threads.
    let messages = reads.get(&bob, &format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&limit=50")).await;
    let shown = messages["chunk"].as_array().is_some_and(|l| l.iter().any(|e| e["event_id"] == root));
    reads.expect(shown, format!("the image is not in the history: {messages}"));
    for filter in [json!({"contains_url": true}), json!({"contains_url": false}), json!({"lazy_load_members": true})] {
        let f = enc(&filter.to_string());
        reads.get(&bob, &format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&filter={f}")).await;
        reads.get(&bob, &format!("/_matrix/client/v3/rooms/{r}/context/{}?filter={f}", enc(&root))).await;
    }
    let event = reads.get(&bob, &format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&root))).await;
    reads.expect(event["content"]["url"] == "mxc://localhost/\u{0}", format!("the event as stored: {event}"));
    reads.get(&bob, &format!("/_matrix/client/v1/rooms/{r}/relations/{}", enc(&root))).await;
    reads.get(&bob, &format!("/_matrix/client/v1/rooms/{r}/threads")).await;

    // State and members.
    reads.get(&bob, &format!("/_matrix/client/v3/rooms/{r}/state")).await;
    reads.get(&bob, &format!("/_matrix/client/v3/rooms/{r}/state/m.room.name/")).await;
    reads.get(&bob, &format!("/_matrix/client/v3/rooms/{r}/members")).await;
    reads.get(&bob, &format!("/_matrix/client/v3/rooms/{r}/joined_members")).await;
    reads.get(&bob, &format!("/_matrix/client/v3/rooms/{r}/initialSync")).await;

    // Summaries, the space hierarchy and search.
    reads.get(&carol, &format!("/_matrix/client/v1/room_summary/{r}")).await;
    reads.get(&bob, &format!("/_matrix/client/v1/rooms/{r}/hierarchy")).await;
    let search = json!({"search_categories": {"room_events": {"search_term": "thread"}}});
    reads.post(&bob, "/_matrix/client/v3/search", search).await;

    // Initial, filtered and incremental syncs, for a member and for someone who joins now.
    for filter in [None, Some(json!({"room": {"timeline": {"contains_url": true}}}))] {
        let body = reads.sync(&bob, None, filter.as_ref()).await;
        reads.expect(body["rooms"]["join"][&room].is_object(), format!("the room in bob's sync: {body}"));
    }
    alice.send_text(&room, "after", "after").await;
    let body = reads.sync(&bob, Some(&since), None).await;
    reads.expect(body["rooms"]["join"][&room].is_object(), format!("the room in bob's next sync: {body}"));
    carol.post(&format!("/_matrix/client/v3/join/{r}"), json!({})).await.ok();
    let body = reads.sync(&carol, None, None).await;
    reads.expect(body["rooms"]["join"][&room].is_object(), format!("the room in carol's sync: {body}"));

    // Writes on poisoned rows: redacting a replaced state event rewrites its successor's
    // `prev_content`; editing a poisoned message, sending after it.
    let redact = format!("/_matrix/client/v3/rooms/{r}/redact/{}/rd", enc(&old_topic));
    let redacted = alice.put(&redact, json!({})).await;
    reads.check("PUT", &redact, redacted);
    alice.send_text(&room, "later", "still talking").await;
    reads.get(&bob, &format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&limit=5")).await;
    assert!(reads.failed.is_empty(), "reads that failed:\n{}", reads.failed.join("\n"));
}

/// Sliding sync looks inside stored JSON to sort and filter its lists: the room type of each
/// room's create event, the `via` of each space child. A poisoned create event or space child
/// still leaves every list answered, with the room counted where it belongs.
async fn stored_nul_breaks_no_sliding_read(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let space =
        alice.create_room(json!({"name": "space", "creation_content": {"type": "m.space", "x": "POISON"}})).await;
    let child = alice.create_room(json!({"name": "child", "creation_content": {"x": "POISON"}})).await;
    let child_path = format!("/_matrix/client/v3/rooms/{}/state/m.space.child/{}", enc(&space), enc(&child));
    alice.put(&child_path, json!({"via": ["localhost"], "x": "POISON"})).await.ok();
    let touched = server
        .sql(r"UPDATE events SET content = replace(content, 'POISON', '\u0000') WHERE content LIKE '%POISON%'")
        .await;
    assert!(touched >= 3, "poisoned {touched} rows");

    let lists = |filters: serde_json::Value| json!({"ranges": [[0, 20]], "timeline_limit": 1, "filters": filters});
    let req = json!({"lists": {
        "all": lists(json!({})),
        "in_space": lists(json!({"spaces": [space]})),
        "spaces": lists(json!({"room_types": ["m.space"]})),
    }});
    let mut reads = Reads::default();
    let body = reads.post(&alice, "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", req).await;
    let count = |name: &str| body["lists"][name]["count"].as_u64();
    reads.expect(
        [count("all"), count("in_space"), count("spaces")] == [Some(2), Some(1), Some(1)],
        format!("the lists of a poisoned space and child: {body}"),
    );
    reads.expect(body["rooms"][&child].is_object(), format!("the child in the answer: {body}"));
    assert!(reads.failed.is_empty(), "reads that failed:\n{}", reads.failed.join("\n"));
}
