//! Push: the default push rules and editing them, unread counts driven by the rules, pushers,
//! `/notifications`, and delivery to a push gateway (a local receiver started by the test).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

both_modes!(
    default_rules_and_editing,
    counts_follow_the_rules,
    pushers_and_notifications,
    pushes_reach_the_gateway_with_a_retry,
);

fn next(body: &Value) -> String {
    body["next_batch"].as_str().unwrap().to_owned()
}

fn ids(rules: &Value, kind: &str) -> Vec<String> {
    rules[kind].as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap().to_owned()).collect()
}

async fn default_rules_and_editing(server: TestServer) {
    let (alice, _bob, _room) = server.pair().await;
    let all = alice.get("/_matrix/client/v3/pushrules/").await.ok();
    let global = &all["global"];
    assert!(ids(global, "override").contains(&".m.rule.master".to_owned()));
    assert!(ids(global, "override").contains(&".m.rule.is_user_mention".to_owned()));
    assert!(ids(global, "underride").contains(&".m.rule.message".to_owned()));
    assert!(ids(global, "underride").contains(&".m.rule.encrypted".to_owned()));
    assert_eq!(&alice.get("/_matrix/client/v3/pushrules/global/").await.ok(), global);
    // The first sync carries them as account data.
    let first = alice.sync(None, None, 0).await;
    let since = next(&first);
    let in_sync = first["account_data"]["events"].as_array().unwrap().iter().find(|e| e["type"] == "m.push_rules");
    assert_eq!(in_sync.unwrap()["content"], all);

    let base = "/_matrix/client/v3/pushrules/global";
    let rule = alice.get(&format!("{base}/underride/.m.rule.message")).await.ok();
    assert_eq!(rule["rule_id"], ".m.rule.message");
    assert_eq!(rule["default"], true);
    alice.get(&format!("{base}/underride/nope")).await.err(404, "M_NOT_FOUND");
    alice.request("DELETE", &format!("{base}/override/.m.rule.master"), None).await.err(403, "M_FORBIDDEN");
    alice.put(&format!("{base}/override/.m.rule.mine"), json!({"actions": []})).await.err(400, "M_INVALID_PARAM");
    alice.put(&format!("{base}/content/cake"), json!({"actions": ["notify"]})).await.err(400, "M_BAD_JSON");
    alice.put(&format!("{base}/bogus/x"), json!({"actions": []})).await.err(400, "M_INVALID_PARAM");

    // User rules, placed with before/after.
    let cake = json!({"pattern": "cake", "actions": ["notify", {"set_tweak": "highlight"}]});
    alice.put(&format!("{base}/content/a"), cake.clone()).await.ok();
    alice.put(&format!("{base}/content/b?after=a"), cake.clone()).await.ok();
    alice.put(&format!("{base}/content/c?before=a"), cake.clone()).await.ok();
    alice.put(&format!("{base}/content/d?before=zzz"), cake).await.err(400, "M_INVALID_PARAM");
    let content = alice.get(&format!("{base}/")).await.ok();
    assert_eq!(&ids(&content, "content")[..3], ["c", "a", "b"]);
    assert_eq!(alice.get(&format!("{base}/content/a")).await.ok()["pattern"], "cake");
    alice.request("DELETE", &format!("{base}/content/a"), None).await.ok();
    alice.get(&format!("{base}/content/a")).await.err(404, "M_NOT_FOUND");

    // Enabled and actions, of defaults too.
    alice.put(&format!("{base}/underride/.m.rule.message/enabled"), json!({"enabled": false})).await.ok();
    let enabled = alice.get(&format!("{base}/underride/.m.rule.message/enabled")).await.ok();
    assert_eq!(enabled, json!({"enabled": false}));
    alice
        .put(&format!("{base}/underride/.m.rule.message/enabled"), json!({"enabled": "no"}))
        .await
        .err(400, "M_BAD_JSON");
    alice.put(&format!("{base}/override/.m.rule.tombstone/actions"), json!({"actions": []})).await.ok();
    let actions = alice.get(&format!("{base}/override/.m.rule.tombstone/actions")).await.ok();
    assert_eq!(actions, json!({"actions": []}));
    alice.put(&format!("{base}/override/nope/actions"), json!({"actions": []})).await.err(404, "M_NOT_FOUND");

    // The change reaches /sync on the account-data stream.
    let body = alice.sync(Some(&since), None, 5_000).await;
    let rules = body["account_data"]["events"].as_array().unwrap().iter().find(|e| e["type"] == "m.push_rules");
    let underride = &rules.expect("m.push_rules in the incremental sync")["content"]["global"]["underride"];
    let message = underride.as_array().unwrap().iter().find(|r| r["rule_id"] == ".m.rule.message").unwrap();
    assert_eq!(message["enabled"], false);
    // Not writable as plain account data.
    let me = enc(&alice.user_id);
    alice
        .put(&format!("/_matrix/client/v3/user/{me}/account_data/m.push_rules"), json!({}))
        .await
        .err(400, "M_BAD_JSON");
}

fn counts(body: &Value, room: &str) -> (Value, Value) {
    let c = &body["rooms"]["join"][room]["unread_notifications"];
    (c["notification_count"].clone(), c["highlight_count"].clone())
}

async fn counts_follow_the_rules(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    let since = next(&bob.sync(None, None, 0).await);
    alice.send_text(&room, "c1", "hello").await;
    alice.send_text(&room, "c2", "hey bob, look").await;
    let body = bob.sync(Some(&since), None, 5_000).await;
    let mut since = next(&body);
    // The long-poll may wake for the first message alone: wait for both.
    let mut seen = counts(&body, &room);
    for _ in 0..5 {
        if seen == (json!(2), json!(1)) {
            break;
        }
        let body = bob.sync(Some(&since), None, 2_000).await;
        since = next(&body);
        if body["rooms"]["join"][&room].is_object() {
            seen = counts(&body, &room);
        }
    }
    assert_eq!(seen, (json!(2), json!(1)), "a message counts; a mention of bob's name highlights");
    // An encrypted event counts through `.m.rule.encrypted`; a long poll (fast path) counts it.
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.encrypted/e1", enc(&room)),
            json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x", "sender_key": "k", "session_id": "s", "device_id": "D"}),
        )
        .await
        .ok();
    let body = bob.sync(Some(&since), None, 5_000).await;
    assert_eq!(counts(&body, &room), (json!(3), json!(1)));
    let since = next(&body);

    // Disabling the message rules (in a room of two, `.m.rule.room_one_to_one` matches first):
    // later messages no longer count.
    let base = "/_matrix/client/v3/pushrules/global";
    bob.put(&format!("{base}/underride/.m.rule.room_one_to_one/enabled"), json!({"enabled": false})).await.ok();
    let body = bob.sync(Some(&since), None, 0).await;
    let since = next(&body);
    alice.send_text(&room, "c3a", "still counted").await;
    let body = bob.sync(Some(&since), None, 5_000).await;
    let since = next(&body);
    assert_eq!(counts(&body, &room).0, json!(4), "`.m.rule.message` still counts it");
    // Counts follow the rules in force when an event arrived: let the notifier see it first.
    wait_for_notifications(&bob, 4).await;
    bob.put(&format!("{base}/underride/.m.rule.message/enabled"), json!({"enabled": false})).await.ok();
    let body = bob.sync(Some(&since), None, 0).await;
    let since = next(&body);
    alice.send_text(&room, "c3", "ignored").await;
    let body = bob.sync(Some(&since), None, 5_000).await;
    let since = next(&body);
    assert_eq!(counts(&body, &room).0, json!(4), "the disabled rules stop counting");
    // A user rule that highlights a keyword.
    bob.put(
        &format!("{base}/content/cake"),
        json!({"pattern": "cake", "actions": ["notify", {"set_tweak": "highlight"}]}),
    )
    .await
    .ok();
    let body = bob.sync(Some(&since), None, 0).await;
    let since = next(&body);
    let last = alice.send_text(&room, "c4", "there is cake").await;
    let body = bob.sync(Some(&since), None, 5_000).await;
    assert_eq!(counts(&body, &room), (json!(5), json!(2)));
    let since = next(&body);

    // A read receipt clears them.
    bob.post(&format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&last)), json!({})).await.ok();
    let body = bob.sync(Some(&since), None, 5_000).await;
    assert_eq!(counts(&body, &room), (json!(0), json!(0)));
    let fresh = bob.sync(None, None, 0).await;
    assert_eq!(counts(&fresh, &room), (json!(0), json!(0)));
}

/// Waits until `/notifications` lists `n` events.
async fn wait_for_notifications(client: &Client, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = client.get("/_matrix/client/v3/notifications").await.ok();
        if page["notifications"].as_array().unwrap().len() >= n || Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pusher(url: &str, pushkey: &str) -> Value {
    json!({
        "kind": "http", "app_id": "org.example.app", "pushkey": pushkey, "app_display_name": "Example",
        "device_display_name": "Phone", "lang": "en", "data": {"url": url, "format": "full", "extra": "x"},
    })
}

async fn pushers_and_notifications(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    let url = "http://127.0.0.1:9/_matrix/push/v1/notify";
    bob.post("/_matrix/client/v3/pushers/set", pusher(url, "key1")).await.ok();
    bob.post("/_matrix/client/v3/pushers/set", pusher(url, "key2")).await.ok();
    let list = bob.get("/_matrix/client/v3/pushers").await.ok();
    let keys: Vec<&str> = list["pushers"].as_array().unwrap().iter().map(|p| p["pushkey"].as_str().unwrap()).collect();
    assert_eq!(keys, ["key1", "key2"]);
    assert_eq!(list["pushers"][0]["data"]["url"], url);
    assert_eq!(list["pushers"][0]["kind"], "http");
    // Bad pushers.
    bob.post("/_matrix/client/v3/pushers/set", pusher("http://127.0.0.1:9/elsewhere", "k"))
        .await
        .err(400, "M_INVALID_PARAM");
    let mut no_url = pusher(url, "k");
    no_url["data"] = json!({});
    bob.post("/_matrix/client/v3/pushers/set", no_url).await.err(400, "M_INVALID_PARAM");
    let mut missing = pusher(url, "k");
    missing.as_object_mut().unwrap().remove("app_id");
    bob.post("/_matrix/client/v3/pushers/set", missing).await.err(400, "M_MISSING_PARAM");
    // `kind: null` deletes.
    let mut delete = pusher(url, "key1");
    delete["kind"] = Value::Null;
    bob.post("/_matrix/client/v3/pushers/set", delete).await.ok();
    let list = bob.get("/_matrix/client/v3/pushers").await.ok();
    assert_eq!(list["pushers"].as_array().unwrap().len(), 1);
    // Without append, the same app and pushkey moves to the new user.
    alice.post("/_matrix/client/v3/pushers/set", pusher(url, "key2")).await.ok();
    assert_eq!(bob.get("/_matrix/client/v3/pushers").await.ok()["pushers"], json!([]));
    alice.post("/_matrix/client/v3/pushers/set", json!({"app_id": "a", "pushkey": "k", "kind": null})).await.ok();

    // Notifications: what notified bob, newest first, with paging and `only=highlight`.
    alice.send_text(&room, "n1", "first").await;
    let mention = alice.send_text(&room, "n2", "bob: second").await;
    let third = alice.send_text(&room, "n3", "third").await;
    let page = wait_for_notifications(&bob, 3).await;
    let list = page["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{page}");
    assert_eq!(list[0]["event"]["event_id"], third.as_str());
    assert_eq!(list[0]["room_id"], room.as_str());
    assert_eq!(list[0]["read"], false);
    assert!(list[0]["ts"].as_i64().unwrap() > 0);
    assert!(list[0]["actions"].as_array().unwrap().contains(&json!("notify")));
    assert!(alice.get("/_matrix/client/v3/notifications").await.ok()["notifications"].as_array().unwrap().is_empty());
    let first = bob.get("/_matrix/client/v3/notifications?limit=2").await.ok();
    assert_eq!(first["notifications"].as_array().unwrap().len(), 2);
    let token = first["next_token"].as_str().expect("a next_token when the page is full");
    let rest = bob.get(&format!("/_matrix/client/v3/notifications?limit=2&from={token}")).await.ok();
    assert_eq!(rest["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(rest["notifications"][0]["event"]["body"], Value::Null);
    assert_eq!(rest["notifications"][0]["event"]["content"]["body"], "first");
    let high = bob.get("/_matrix/client/v3/notifications?only=highlight").await.ok();
    let high = high["notifications"].as_array().unwrap();
    assert_eq!(high.len(), 1);
    assert_eq!(high[0]["event"]["event_id"], mention.as_str());
    // Read once the receipt passes them.
    bob.post(&format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&third)), json!({})).await.ok();
    let page = bob.get("/_matrix/client/v3/notifications").await.ok();
    assert!(page["notifications"].as_array().unwrap().iter().all(|n| n["read"] == true));
}

/// A push gateway that records every body and fails the first `fail_first` requests with 500.
#[derive(Clone, Default)]
struct Gateway {
    bodies: Arc<Mutex<Vec<Value>>>,
    failures_left: Arc<Mutex<u32>>,
}

async fn notify(State(gw): State<Gateway>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    {
        let mut left = gw.failures_left.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})));
        }
    }
    gw.bodies.lock().unwrap().push(body);
    (StatusCode::OK, Json(json!({"rejected": []})))
}

async fn start_gateway(fail_first: u32) -> (Gateway, String) {
    let gw = Gateway { failures_left: Arc::new(Mutex::new(fail_first)), ..Default::default() };
    let app = Router::new().route("/_matrix/push/v1/notify", post(notify)).with_state(gw.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/_matrix/push/v1/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (gw, url)
}

async fn wait_for(gw: &Gateway, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let bodies = gw.bodies.lock().unwrap().clone();
        if bodies.len() >= n || Instant::now() > deadline {
            return bodies;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pushes_reach_the_gateway_with_a_retry(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    let (gw, url) = start_gateway(1).await;
    bob.post("/_matrix/client/v3/pushers/set", pusher(&url, "device-key")).await.ok();
    let event = alice.send_text(&room, "p1", "hi bob").await;
    let bodies = wait_for(&gw, 1).await;
    assert_eq!(bodies.len(), 1, "delivered after the first attempt failed");
    let n = &bodies[0]["notification"];
    assert_eq!(n["event_id"], event.as_str());
    assert_eq!(n["room_id"], room.as_str());
    assert_eq!(n["type"], "m.room.message");
    assert_eq!(n["sender"], alice.user_id.as_str());
    assert_eq!(n["counts"]["unread"], 1);
    assert_eq!(n["prio"], "high", "a mention highlights");
    let device = &n["devices"][0];
    assert_eq!(device["app_id"], "org.example.app");
    assert_eq!(device["pushkey"], "device-key");
    assert!(device["pushkey_ts"].as_i64().unwrap() > 0);
    assert_eq!(device["data"], json!({"format": "full", "extra": "x"}), "data without the url");
    assert_eq!(device["tweaks"]["highlight"], true);

    // The next one goes straight through, once; alice's own messages are not pushed to her.
    let second = alice.send_text(&room, "p2", "plain").await;
    let bodies = wait_for(&gw, 2).await;
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[1]["notification"]["event_id"], second.as_str());
    assert_eq!(bodies[1]["notification"]["counts"]["unread"], 2);
    // Two members: `.m.rule.room_one_to_one` adds a sound, so it is high priority too.
    assert_eq!(bodies[1]["notification"]["devices"][0]["tweaks"], json!({"sound": "default"}));
    // Nothing to wait for: the point is that no third push comes (a retry would within this).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(gw.bodies.lock().unwrap().len(), 2, "each push delivered exactly once");
}
