//! Simplified Sliding Sync (MSC4186) extensions: to-device messages with their own `since`
//! (acknowledged ones are not sent again), e2ee key counts and device-list changes, account
//! data (global and for the rooms of the lists), receipts and typing for the rooms an
//! extension covers — and long-polls woken by each of them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trellis_testkit::{TestServer, enc};

use crate::sliding_sync::{list, pos, user};

both_modes!(
    to_device_and_e2ee_reach_the_encryption_connection,
    to_device_limit_pages_the_messages,
    room_extensions_follow_the_lists
);

const V3: &str = "/_matrix/client/v3";

fn encryption(since: Option<&str>) -> Value {
    let mut to_device = json!({"enabled": true});
    if let Some(s) = since {
        to_device["since"] = json!(s);
    }
    json!({"conn_id": "encryption", "extensions": {"to_device": to_device, "e2ee": {"enabled": true}}})
}

/// `extensions.to_device.limit` caps an answer's messages; `next_batch` picks up the rest.
async fn to_device_limit_pages_the_messages(server: TestServer) {
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    for n in 1..=3 {
        let body = json!({"messages": {alice.user_id.clone(): {alice.device_id.clone(): {"n": n}}}});
        bob.put(&format!("{V3}/sendToDevice/m.test/txn{n}"), body).await.ok();
    }
    let limited = |since: Option<&str>| {
        let mut to_device = json!({"enabled": true, "limit": 2});
        if let Some(s) = since {
            to_device["since"] = json!(s);
        }
        json!({"conn_id": "encryption", "extensions": {"to_device": to_device}})
    };
    let numbers = |body: &Value| -> Vec<i64> {
        body["extensions"]["to_device"]["events"]
            .as_array()
            .map(|events| events.iter().filter_map(|e| e["content"]["n"].as_i64()).collect())
            .unwrap_or_default()
    };
    let first = alice.sliding(None, Some(0), limited(None)).await.ok();
    assert_eq!(numbers(&first), [1, 2], "{first}");
    let since = first["extensions"]["to_device"]["next_batch"].as_str().expect("next_batch").to_owned();
    let second = alice.sliding(Some(&pos(&first)), Some(0), limited(Some(&since))).await.ok();
    assert_eq!(numbers(&second), [3], "{second}");
}

async fn to_device_and_e2ee_reach_the_encryption_connection(server: TestServer) {
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let otk = |n: u32| json!({"key": format!("key{n}"), "signatures": {}});
    alice
        .post(
            &format!("{V3}/keys/upload"),
            json!({"one_time_keys": {"signed_curve25519:A1": otk(1), "signed_curve25519:A2": otk(2)}}),
        )
        .await
        .ok();
    let first = alice.sliding(None, None, encryption(None)).await.ok();
    let e2ee = &first["extensions"]["e2ee"];
    assert_eq!(e2ee["device_one_time_keys_count"]["signed_curve25519"], 2, "{first}");
    assert!(e2ee["device_unused_fallback_key_types"].is_array(), "{first}");
    let since = first["extensions"]["to_device"]["next_batch"].as_str().expect("next_batch").to_owned();

    // A to-device message wakes the waiting connection.
    let started = Instant::now();
    let poll = {
        let (alice, pos, req) = (alice.clone(), pos(&first), encryption(Some(&since)));
        tokio::spawn(async move { alice.sliding(Some(&pos), Some(20_000), req).await.ok() })
    };
    server.until_metric("trellis_sync_open_longpolls", 1.0).await;
    let body = json!({"messages": {&alice.user_id: {&alice.device_id: {"secret": "s1"}}}});
    bob.put(&format!("{V3}/sendToDevice/m.test/txn1"), body).await.ok();
    let woken = poll.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let events = woken["extensions"]["to_device"]["events"].as_array().expect("to-device events").clone();
    assert_eq!(events.len(), 1, "{woken}");
    assert_eq!(
        (events[0]["type"].as_str(), events[0]["sender"].as_str()),
        (Some("m.test"), Some(bob.user_id.as_str()))
    );
    let next = woken["extensions"]["to_device"]["next_batch"].as_str().unwrap().to_owned();
    // A retry with the old `since` (its answer lost) gets the message again; once the next
    // `since` acknowledges it, it is gone.
    let replay = alice.sliding(Some(&pos(&first)), Some(0), encryption(Some(&since))).await.ok();
    assert_eq!(replay["extensions"]["to_device"]["events"].as_array().map(Vec::len), Some(1), "{replay}");
    let again = alice.sliding(Some(&pos(&woken)), Some(0), encryption(Some(&next))).await.ok();
    assert!(again["extensions"]["to_device"].get("events").is_none_or(|e| e.as_array().unwrap().is_empty()), "{again}");

    // Bob joins a room alice is in and uploads device keys: alice hears of his devices.
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();
    let keys = json!({"device_keys": {
        "user_id": bob.user_id, "device_id": bob.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": {format!("curve25519:{}", bob.device_id): "k", format!("ed25519:{}", bob.device_id): "k"},
        "signatures": {},
    }});
    bob.post(&format!("{V3}/keys/upload"), keys).await.ok();
    let changed = alice.sliding(Some(&pos(&again)), Some(5_000), encryption(Some(&next))).await.ok();
    let users = changed["extensions"]["e2ee"]["device_lists"]["changed"].as_array().cloned().unwrap_or_default();
    assert!(users.contains(&json!(bob.user_id)), "{changed}");
}

async fn room_extensions_follow_the_lists(server: TestServer) {
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let room = alice.create_room(json!({"preset": "public_chat", "name": "listed"})).await;
    bob.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();
    let event = bob.send_text(&room, "t0", "read me").await;
    alice
        .put(&format!("{V3}/user/{}/account_data/org.example.global", enc(&alice.user_id)), json!({"g": 1}))
        .await
        .ok();
    let tag = format!("{V3}/user/{}/rooms/{}/tags/u.work", enc(&alice.user_id), enc(&room));
    alice.put(&tag, json!({"order": 0.5})).await.ok();
    bob.post(&format!("{V3}/rooms/{}/receipt/m.read/{}", enc(&room), enc(&event)), json!({})).await.ok();

    let mut req = list(json!([[0, 0]]), 1, json!([]));
    req["extensions"] = json!({
        "account_data": {"enabled": true},
        "receipts": {"enabled": true, "lists": ["all"]},
        "typing": {"enabled": true, "lists": ["all"]},
    });
    let body = alice.sliding(None, None, req.clone()).await.ok();
    let ext = &body["extensions"];
    let global: Vec<&str> =
        ext["account_data"]["global"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(global.contains(&"org.example.global") && global.contains(&"m.push_rules"), "{ext}");
    let room_data = &ext["account_data"]["rooms"][&room];
    assert_eq!(room_data[0]["content"]["tags"]["u.work"]["order"], 0.5, "{ext}");
    assert!(ext["receipts"]["rooms"][&room]["content"][&event]["m.read"][&bob.user_id].is_object(), "{ext}");

    // Typing in the window wakes the connection; extensions scoped to no list stay quiet.
    let typing = format!("{V3}/rooms/{}/typing/{}", enc(&room), enc(&bob.user_id));
    bob.put(&typing, json!({"typing": true, "timeout": 30_000})).await.ok();
    let typed = alice.sliding(Some(&pos(&body)), Some(5_000), req.clone()).await.ok();
    assert_eq!(typed["extensions"]["typing"]["rooms"][&room]["content"]["user_ids"], json!([bob.user_id]), "{typed}");
    let mut unscoped = req.clone();
    unscoped["extensions"]["typing"]["lists"] = json!([]);
    unscoped["extensions"]["receipts"]["lists"] = json!([]);
    bob.put(&typing, json!({"typing": false})).await.ok();
    let quiet = alice.sliding(Some(&pos(&typed)), Some(300), unscoped).await.ok();
    assert!(quiet["extensions"].get("typing").is_none(), "no list, no typing: {quiet}");

    // New account data arrives as a delta.
    alice
        .put(&format!("{V3}/user/{}/account_data/org.example.global", enc(&alice.user_id)), json!({"g": 2}))
        .await
        .ok();
    let delta = alice.sliding(Some(&pos(&quiet)), Some(5_000), req).await.ok();
    let global = delta["extensions"]["account_data"]["global"].as_array().expect("global").clone();
    assert_eq!(global.len(), 1, "only the change: {delta}");
    assert_eq!(global[0]["content"]["g"], 2);
}
