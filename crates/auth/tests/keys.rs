//! The keys service contract, against the local implementation and behind gRPC
//! (`KeysGrpcServer` + `KeysGrpcClient`): uploads, claims under concurrency (each one-time key
//! handed out once, then the fallback key), errors that survive the hop, keys deleted with
//! their device.

mod common;

use std::collections::HashSet;

use common::{KeysHarness, SERVER, assert_err, config, device_keys, keys_json, register};
use deadpool_postgres::Pool;
use serde_json::{Value, json};
use trellis_core::ErrorCode;
use trellis_proto::auth::LogoutRequest;

async fn harness(grpc: bool) -> KeysHarness {
    KeysHarness::new(config(), grpc).await
}

async fn count(pool: &Pool, sql: &str) -> i64 {
    pool.get().await.unwrap().query_one(sql, &[]).await.unwrap().get(0)
}

async fn concurrent_claims_hand_out_each_key_once(grpc: bool) {
    let h = harness(grpc).await;
    let alice = register(&h.auth, "alice", "password1").await;
    let (user, device) = (alice.user_id.clone(), alice.device_id.clone().unwrap());
    let otks: serde_json::Map<String, Value> =
        (0..20).map(|i| (format!("signed_curve25519:K{i:02}"), json!({"key": format!("k{i}")}))).collect();
    let body =
        json!({"one_time_keys": otks, "fallback_keys": {"signed_curve25519:FB": {"key": "fb", "fallback": true}}});
    let up = h.keys.upload_keys(keys_json::upload(&user, &device, body)).await.unwrap();
    assert_eq!(up.one_time_key_counts["signed_curve25519"], 20);

    let claim = json!({"one_time_keys": {user.clone(): {device.clone(): "signed_curve25519"}}});
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let keys = h.keys.clone();
            let r = keys_json::claim("@bob:test.local", claim.clone());
            tokio::spawn(async move { keys.claim_keys(r).await.unwrap() })
        })
        .collect();
    let mut one_time = Vec::new();
    let mut fallback = 0;
    for t in tasks {
        let body = keys_json::claimed(t.await.unwrap());
        let got = body["one_time_keys"][&user][&device].as_object().unwrap().clone();
        assert_eq!(got.len(), 1, "{body}");
        let id = got.keys().next().unwrap().clone();
        if id == "signed_curve25519:FB" {
            fallback += 1;
        } else {
            one_time.push(id);
        }
    }
    let distinct: HashSet<&String> = one_time.iter().collect();
    assert_eq!((one_time.len(), distinct.len(), fallback), (20, 20, 30));
    assert_eq!(count(&h.pool, "SELECT count(*) FROM one_time_keys").await, 0);
    assert_eq!(count(&h.pool, "SELECT count(*) FROM fallback_keys WHERE used").await, 1);
}

async fn bad_uploads_are_refused(grpc: bool) {
    let h = harness(grpc).await;
    let alice = register(&h.auth, "alice", "password1").await;
    let (user, device) = (alice.user_id.clone(), alice.device_id.clone().unwrap());
    let keys = |u: &str, d: &str| json!({"device_keys": device_keys(u, d)});
    let err =
        h.keys.upload_keys(keys_json::upload(&user, &device, keys("@bob:test.local", &device))).await.unwrap_err();
    assert_err(&err, ErrorCode::InvalidParam, 400);
    // A key ID that is not `<algorithm>:<name>` (M_BAD_JSON, as Synapse).
    let err = h
        .keys
        .upload_keys(keys_json::upload(&user, &device, json!({"one_time_keys": {"nocolon": {}}})))
        .await
        .unwrap_err();
    assert_err(&err, ErrorCode::BadJson, 400);
    // A key that is neither an object nor a string; a user ID that is none (the gateway's
    // parse refuses bodies of the wrong shape before they get here: `tests/e2e/e2ee_keys.rs`).
    let err =
        h.keys.upload_keys(keys_json::upload(&user, &device, json!({"one_time_keys": {"a:b": []}}))).await.unwrap_err();
    assert_err(&err, ErrorCode::BadJson, 400);
    let err = h.keys.query_keys(keys_json::query(&user, json!({"device_keys": {"nobody": []}}))).await.unwrap_err();
    assert_err(&err, ErrorCode::BadJson, 400);
    let otk = |k: &str| json!({"one_time_keys": {"signed_curve25519:A": {"key": k}}});
    h.keys.upload_keys(keys_json::upload(&user, &device, otk("one"))).await.unwrap();
    h.keys.upload_keys(keys_json::upload(&user, &device, otk("one"))).await.unwrap();
    let err = h.keys.upload_keys(keys_json::upload(&user, &device, otk("two"))).await.unwrap_err();
    assert_err(&err, ErrorCode::InvalidParam, 400);

    // Deleting the device (logout) deletes its keys; the upload recorded a device-list change.
    h.keys.upload_keys(keys_json::upload(&user, &device, keys(&user, &device))).await.unwrap();
    assert_eq!(count(&h.pool, "SELECT count(*) FROM device_keys").await, 1);
    let sql = format!("SELECT count(*) FROM device_list_changes WHERE user_id = '@alice:{SERVER}'");
    assert_eq!(count(&h.pool, &sql).await, 2, "registration's new device and the key upload");
    let token = alice.access_token.clone().unwrap();
    h.auth.logout(LogoutRequest { access_token: token, all_devices: false }).await.unwrap();
    assert_eq!(count(&h.pool, "SELECT count(*) FROM device_keys").await, 0);
    assert_eq!(count(&h.pool, "SELECT count(*) FROM one_time_keys").await, 0);
}

trellis_testkit::contract! {
    setup = crate::common::through_grpc;
    concurrent_claims_hand_out_each_key_once,
    bad_uploads_are_refused,
}
