//! Everything `/sync` delivers besides timelines: typing, receipts (public and private),
//! unread counts, read markers, account data and tags, presence, lazy-loaded members, filters.

use std::time::Duration;

use serde_json::{Value, json};
use trellis_testkit::{TestServer, enc};

both_modes!(
    history_visibility_forgetting_and_relations,
    woken_long_polls_take_the_fast_path,
    open_long_polls_are_counted,
    receipts_typing_and_presence_reach_woken_polls_from_memory,
    typing_and_receipts,
    unread_counts_rise_and_fall,
    account_data_and_tags,
    presence_between_room_members,
    lazy_loaded_members,
    filters_shape_the_response,
);

fn next(body: &Value) -> String {
    body["next_batch"].as_str().unwrap().to_owned()
}

fn ephemeral<'a>(body: &'a Value, room: &str, kind: &str) -> Option<&'a Value> {
    body["rooms"]["join"][room]["ephemeral"]["events"].as_array()?.iter().find(|e| e["type"] == kind)
}

async fn typing_and_receipts(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    let since = next(&bob.sync(None, None, 0).await);

    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(&alice.user_id)),
            json!({"typing": true, "timeout": 1000}),
        )
        .await
        .ok();
    let body = bob.sync(Some(&since), None, 5_000).await;
    assert_eq!(ephemeral(&body, &room, "m.typing").unwrap()["content"]["user_ids"], json!([alice.user_id]));
    // The timeout is optional; nobody may type for someone else; `typing` is required.
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(&alice.user_id)),
            json!({"typing": false}),
        )
        .await
        .ok();
    alice
        .put(&format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(&alice.user_id)), json!({"timeout": 5}))
        .await
        .err(400, "M_BAD_JSON");
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(&alice.user_id)),
            json!({"typing": true, "timeout": 1000}),
        )
        .await
        .ok();
    bob.put(
        &format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(&alice.user_id)),
        json!({"typing": true}),
    )
    .await
    .err(403, "M_FORBIDDEN");
    // The notification times out by itself.
    let mut since = next(&body);
    let mut stopped = false;
    for _ in 0..10 {
        let body = bob.sync(Some(&since), None, 3_000).await;
        since = next(&body);
        if ephemeral(&body, &room, "m.typing").is_some_and(|t| t["content"]["user_ids"] == json!([])) {
            stopped = true;
            break;
        }
    }
    assert!(stopped, "the typing notification timed out");

    // Receipts: Bob's public receipt reaches Alice, his private one only himself.
    let ev = alice.send_text(&room, "r1", "read me").await;
    let alice_since = next(&alice.sync(None, None, 0).await);
    let bob_since = next(&bob.sync(None, None, 0).await);
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&ev)),
        json!({"thread_id": "main"}),
    )
    .await
    .ok();
    let body = alice.sync(Some(&alice_since), None, 5_000).await;
    let receipt = ephemeral(&body, &room, "m.receipt").expect("a receipt event");
    assert_eq!(receipt["content"][&ev]["m.read"][&bob.user_id]["thread_id"], "main");
    assert!(receipt["content"][&ev]["m.read"][&bob.user_id]["ts"].is_u64());
    let alice_since = next(&body);

    let ev2 = alice.send_text(&room, "r2", "private").await;
    bob.post(&format!("/_matrix/client/v3/rooms/{}/receipt/m.read.private/{}", enc(&room), enc(&ev2)), json!({}))
        .await
        .ok();
    let mine = bob.sync(Some(&bob_since), None, 0).await;
    let r = ephemeral(&mine, &room, "m.receipt").expect("own private receipt");
    assert!(r["content"][&ev2]["m.read.private"][&bob.user_id].is_object());
    let theirs = alice.sync(Some(&alice_since), None, 0).await;
    let leaked = ephemeral(&theirs, &room, "m.receipt").map(|r| r.to_string()).unwrap_or_default();
    assert!(!leaked.contains("m.read.private"), "private receipts stay private: {leaked}");
    // Bad receipts.
    bob.post(&format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc("$nope")), json!({}))
        .await
        .err(404, "M_NOT_FOUND");
}

async fn unread_counts_rise_and_fall(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    let since = next(&bob.sync(None, None, 0).await);
    alice.send_text(&room, "u1", "one").await;
    alice.send_text(&room, "u2", "hey bob, look").await;
    let last = alice.send_text(&room, "u3", "three").await;
    let body = bob.sync(Some(&since), None, 0).await;
    let counts = &body["rooms"]["join"][&room]["unread_notifications"];
    assert_eq!(counts["notification_count"], 3);
    assert_eq!(counts["highlight_count"], 1, "the message naming bob highlights");
    // Alice's own messages do not count for her.
    let mine = alice.sync(None, None, 0).await;
    assert_eq!(mine["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 0);

    // Reading clears them: read markers set the receipt and the fully-read marker.
    let since = next(&body);
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/read_markers", enc(&room)),
        json!({"m.fully_read": last, "m.read": last}),
    )
    .await
    .ok();
    let body = bob.sync(Some(&since), None, 5_000).await;
    let joined = &body["rooms"]["join"][&room];
    assert_eq!(joined["unread_notifications"]["notification_count"], 0);
    let fully_read = joined["account_data"]["events"].as_array().unwrap().iter().find(|e| e["type"] == "m.fully_read");
    assert_eq!(fully_read.unwrap()["content"]["event_id"], last.as_str());
}

async fn account_data_and_tags(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    let since = next(&alice.sync(None, None, 0).await);
    let me = enc(&alice.user_id);
    alice
        .put(&format!("/_matrix/client/v3/user/{me}/account_data/org.example.pref"), json!({"theme": "dark"}))
        .await
        .ok();
    assert_eq!(
        alice.get(&format!("/_matrix/client/v3/user/{me}/account_data/org.example.pref")).await.ok(),
        json!({"theme": "dark"})
    );
    alice
        .put(
            &format!("/_matrix/client/v3/user/{me}/rooms/{}/account_data/org.example.room", enc(&room)),
            json!({"x": 1}),
        )
        .await
        .ok();
    alice
        .put(&format!("/_matrix/client/v3/user/{me}/rooms/{}/tags/u.work", enc(&room)), json!({"order": 0.5}))
        .await
        .ok();
    alice.put(&format!("/_matrix/client/v3/user/{me}/rooms/{}/tags/m.favourite", enc(&room)), json!({})).await.ok();
    alice
        .request("DELETE", &format!("/_matrix/client/v3/user/{me}/rooms/{}/tags/m.favourite", enc(&room)), None)
        .await
        .ok();
    let tags = alice.get(&format!("/_matrix/client/v3/user/{me}/rooms/{}/tags", enc(&room))).await.ok();
    assert_eq!(tags, json!({"tags": {"u.work": {"order": 0.5}}}));

    let body = alice.sync(Some(&since), None, 0).await;
    let global = body["account_data"]["events"].as_array().unwrap();
    assert!(global.iter().any(|e| e["type"] == "org.example.pref" && e["content"]["theme"] == "dark"));
    let room_data = body["rooms"]["join"][&room]["account_data"]["events"].as_array().unwrap();
    assert!(room_data.iter().any(|e| e["type"] == "org.example.room"));
    assert!(room_data.iter().any(|e| e["type"] == "m.tag" && e["content"]["tags"]["u.work"]["order"] == 0.5));

    // Only for oneself; the read marker has its own endpoint; bodies must be objects.
    bob.put(&format!("/_matrix/client/v3/user/{me}/account_data/x"), json!({})).await.err(403, "M_FORBIDDEN");
    bob.get(&format!("/_matrix/client/v3/user/{me}/account_data/org.example.pref")).await.err(403, "M_FORBIDDEN");
    alice
        .put(
            &format!("/_matrix/client/v3/user/{me}/rooms/{}/account_data/m.fully_read", enc(&room)),
            json!({"event_id": "$x"}),
        )
        .await
        .err(400, "M_BAD_JSON");
    alice.get(&format!("/_matrix/client/v3/user/{me}/account_data/unset.type")).await.err(404, "M_NOT_FOUND");
}

async fn presence_between_room_members(server: TestServer) {
    let (alice, bob, _room) = server.pair().await;
    let mut carol = server.client();
    carol.register("carol", "pw").await;
    let since = next(&bob.sync(None, None, 0).await);
    alice
        .put(
            &format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)),
            json!({"presence": "unavailable", "status_msg": "lunch"}),
        )
        .await
        .ok();
    let body = bob.sync(Some(&since), None, 5_000).await;
    let p =
        body["presence"]["events"].as_array().unwrap().iter().find(|e| e["sender"] == alice.user_id.as_str()).cloned();
    let p = p.expect("bob sees alice's presence");
    assert_eq!(p["content"]["presence"], "unavailable");
    assert_eq!(p["content"]["status_msg"], "lunch");
    let got = bob.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id))).await.ok();
    assert_eq!(got["presence"], "unavailable");
    assert!(got["last_active_ago"].is_u64());
    // Carol shares no room with Alice.
    carol.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id))).await.err(403, "M_FORBIDDEN");
    let cs = carol.sync(None, None, 0).await;
    assert!(!cs["presence"].to_string().contains(&alice.user_id));
    alice
        .put(&format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)), json!({"presence": "sleepy"}))
        .await
        .err(400, "M_INVALID_PARAM");
}

async fn lazy_loaded_members(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    let mut others = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let mut c = server.client();
        c.register(name, "pw").await;
        c.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
        others.push(c);
    }
    others[0].send_text(&room, "l1", "only bob talks").await;
    let lazy = json!({"room": {"state": {"lazy_load_members": true}, "timeline": {"limit": 1}}});
    let members = |body: &Value| -> Vec<String> {
        body["rooms"]["join"][&room]["state"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.member")
            .map(|e| e["state_key"].as_str().unwrap().to_owned())
            .collect()
    };
    let body = alice.sync(None, Some(&lazy), 0).await;
    let mut got = members(&body);
    got.sort();
    assert_eq!(got, vec!["@alice:localhost".to_string(), "@bob:localhost".to_string()], "speaker and self only");
    let since = next(&body);

    others[0].send_text(&room, "l2", "bob again").await;
    others[1].send_text(&room, "l3", "carol now").await;
    let lazy_all = json!({"room": {"state": {"lazy_load_members": true}, "timeline": {"limit": 1}}});
    let body = alice.sync(Some(&since), Some(&lazy_all), 0).await;
    assert_eq!(members(&body), vec!["@carol:localhost".to_string()], "bob was already sent to this device");

    let redundant = json!({"room": {"state": {"lazy_load_members": true, "include_redundant_members": true}, "timeline": {"limit": 2}}});
    let body = alice.sync(Some(&since), Some(&redundant), 0).await;
    let mut got = members(&body);
    got.sort();
    assert_eq!(got, vec!["@bob:localhost".to_string(), "@carol:localhost".to_string()]);
}

async fn filters_shape_the_response(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    bob.send_text(&room, "f1", "hello").await;
    let filter = json!({
        "event_fields": ["type", "content.body", "sender"],
        "room": {"timeline": {"limit": 5, "not_types": ["m.room.member"]}, "state": {"types": ["m.room.create"]}},
        "presence": {"not_types": ["*"]},
    });
    let body = alice.sync(None, Some(&filter), 0).await;
    let joined = &body["rooms"]["join"][&room];
    let tl = joined["timeline"]["events"].as_array().unwrap();
    assert!(tl.iter().all(|e| e["type"] != "m.room.member"));
    let msg = tl.iter().find(|e| e["type"] == "m.room.message").unwrap();
    assert_eq!(msg, &json!({"type": "m.room.message", "content": {"body": "hello"}, "sender": bob.user_id}));
    let state_types: Vec<&str> =
        joined["state"]["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(state_types.iter().all(|t| *t == "m.room.create"), "{state_types:?}");
    assert!(body["presence"]["events"].as_array().unwrap().is_empty());
    // Unknown parameters are ignored; full_state resends the state.
    let since = next(&body);
    let plain = alice
        .get(&format!(
            "/_matrix/client/v3/sync?since={}&full_state=true&org.matrix.msc4222.use_state_after=true",
            enc(&since)
        ))
        .await
        .ok();
    assert!(plain["rooms"]["join"][&room]["state"]["events"].as_array().unwrap().len() > 3);
    // Invalid filters.
    alice.get(&format!("/_matrix/client/v3/sync?filter={}", enc("{\"room\": 1}"))).await.err(400, "M_BAD_JSON");
    alice.get("/_matrix/client/v3/sync?filter=12345").await.err(400, "M_INVALID_PARAM");
    let _ = Duration::ZERO;
}

async fn history_visibility_forgetting_and_relations(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let mut bob = server.client();
    bob.register("bob", "pw").await;
    let joined_only = alice
        .create_room(json!({"preset": "public_chat", "initial_state": [
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}]}))
        .await;
    let shared = alice.create_room(json!({"preset": "public_chat"})).await;
    alice.send_text(&joined_only, "h1", "before bob (joined-only)").await;
    let parent = alice.send_text(&shared, "h2", "before bob (shared)").await;
    for room in [&joined_only, &shared] {
        bob.post(&format!("/_matrix/client/v3/join/{}", enc(room)), json!({})).await.ok();
    }
    let body = bob.sync(None, None, 0).await;
    let text = |room: &str| body["rooms"]["join"][room]["timeline"].to_string();
    assert!(!text(&joined_only).contains("before bob"), "joined-only history stays hidden");
    assert!(text(&shared).contains("before bob (shared)"), "shared history is visible");

    // An edit is bundled into its parent.
    let since = next(&body);
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/edit1", enc(&shared)),
            json!({"msgtype": "m.text", "body": "* fixed", "m.new_content": {"msgtype": "m.text", "body": "fixed"},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": parent}}),
        )
        .await
        .ok();
    let initial = bob.sync(None, None, 0).await;
    let tl = initial["rooms"]["join"][&shared]["timeline"]["events"].as_array().unwrap();
    let p = tl.iter().find(|e| e["event_id"] == parent.as_str()).expect("parent in timeline");
    assert!(p["unsigned"]["m.relations"]["m.replace"].is_object(), "bundled edit: {p}");
    let inc = bob.sync(Some(&since), None, 0).await;
    assert!(inc["rooms"]["join"][&shared]["timeline"].to_string().contains("* fixed"));

    // Left and forgotten rooms drop out of sync, even with include_leave.
    bob.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&shared)), json!({})).await.ok();
    let with_leave = json!({"room": {"include_leave": true}});
    assert!(bob.sync(None, Some(&with_leave), 0).await["rooms"]["leave"].get(&shared).is_some());
    bob.post(&format!("/_matrix/client/v3/rooms/{}/forget", enc(&shared)), json!({})).await.ok();
    assert!(bob.sync(None, Some(&with_leave), 0).await["rooms"]["leave"].get(&shared).is_none());
}

async fn woken_long_polls_take_the_fast_path(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    let metric = |text: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with("trellis_sync_fast_responses_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let before = metric(&reqwest::get(server.metrics_url()).await.unwrap().text().await.unwrap());
    let mut since = next(&bob.sync(None, None, 0).await);
    let mut got = Vec::new();
    for i in 0..5 {
        let poll = server.open_long_poll(&bob, &since).await;
        alice.send_text(&room, &format!("fp{i}"), &format!("fast {i}")).await;
        let body = poll.await.unwrap();
        got.extend(trellis_testkit::timeline_bodies(&body, &room));
        assert!(body["rooms"]["join"][&room]["unread_notifications"]["notification_count"].as_u64().unwrap() >= 1);
        since = next(&body);
    }
    assert_eq!(got, (0..5).map(|i| format!("fast {i}")).collect::<Vec<_>>());
    let after = metric(&reqwest::get(server.metrics_url()).await.unwrap().text().await.unwrap());
    assert!(after - before >= 3.0, "woken long-polls answered from memory: {before} -> {after}");
}

/// `trellis_sync_open_longpolls` follows the long-polls the workers hold.
async fn open_long_polls_are_counted(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    let since = next(&bob.sync(None, None, 0).await);
    server.until_metric("trellis_sync_open_longpolls", 0.0).await;
    let polls: Vec<_> = (0..3)
        .map(|_| {
            let (bob, since) = (bob.clone(), since.clone());
            tokio::spawn(async move { bob.sync(Some(&since), None, 10_000).await })
        })
        .collect();
    server.until_metric("trellis_sync_open_longpolls", 3.0).await;
    alice.send_text(&room, "open1", "wake up").await;
    for poll in polls {
        assert_eq!(trellis_testkit::timeline_bodies(&poll.await.unwrap(), &room), ["wake up"]);
    }
    server.until_metric("trellis_sync_open_longpolls", 0.0).await;
}

/// Receipts, typing and presence in a room wake its members' long-polls, which answer from the
/// worker's shared windows: right content, private receipts kept private, unread counts kept.
async fn receipts_typing_and_presence_reach_woken_polls_from_memory(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    let event = alice.send_text(&room, "w0", "hello bob").await;
    let metric = |text: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with("trellis_sync_fast_responses_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let first = bob.sync(None, None, 0).await;
    let unread = first["rooms"]["join"][&room]["unread_notifications"].clone();
    assert_eq!(unread["notification_count"], 1, "{first}");
    let before = metric(&reqwest::get(server.metrics_url()).await.unwrap().text().await.unwrap());
    let mut since = next(&first);
    let typing = format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(&alice.user_id));
    let receipt = |kind: &str| format!("/_matrix/client/v3/rooms/{}/receipt/{kind}/{}", enc(&room), enc(&event));
    let presence = format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id));
    for step in ["typing", "private receipt", "receipt", "presence"] {
        let poll = {
            let bob = bob.clone();
            let since = since.clone();
            tokio::spawn(async move { bob.sync(Some(&since), None, 3_000).await })
        };
        server.until_metric("trellis_sync_open_longpolls", 1.0).await;
        match step {
            "typing" => alice.put(&typing, json!({"typing": true, "timeout": 20_000})).await.ok(),
            "private receipt" => alice.post(&receipt("m.read.private"), json!({})).await.ok(),
            "receipt" => alice.post(&receipt("m.read"), json!({})).await.ok(),
            _ => alice.put(&presence, json!({"presence": "unavailable", "status_msg": "away"})).await.ok(),
        };
        let body = poll.await.unwrap();
        since = next(&body);
        let joined = &body["rooms"]["join"][&room];
        match step {
            "typing" => {
                assert_eq!(ephemeral(&body, &room, "m.typing").unwrap()["content"]["user_ids"], json!([alice.user_id]));
                assert_eq!(joined["unread_notifications"], unread, "counts kept: {body}");
                assert_eq!(joined["timeline"]["events"], json!([]), "{body}");
            }
            "private receipt" => assert!(!body.to_string().contains("m.read.private"), "private stays private: {body}"),
            "receipt" => {
                let r = ephemeral(&body, &room, "m.receipt").expect("receipt delivered");
                assert!(r["content"][&event]["m.read"][&alice.user_id]["ts"].is_u64(), "{body}");
                assert!(!r.to_string().contains("m.read.private"), "{body}");
                assert_eq!(joined["unread_notifications"], unread, "counts kept: {body}");
            }
            _ => {
                let p = body["presence"]["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["sender"] == alice.user_id.as_str());
                let p = p.unwrap_or_else(|| panic!("alice's presence: {body}"));
                assert_eq!(
                    (p["content"]["presence"].as_str(), p["content"]["status_msg"].as_str()),
                    (Some("unavailable"), Some("away"))
                );
            }
        }
    }
    // Alice's own private receipt reaches her.
    let own = alice.sync(None, None, 0).await;
    assert!(ephemeral(&own, &room, "m.receipt").unwrap().to_string().contains("m.read.private"), "{own}");
    let after = metric(&reqwest::get(server.metrics_url()).await.unwrap().text().await.unwrap());
    assert!(after - before >= 3.0, "woken long-polls answered from memory: {before} -> {after}");
}
