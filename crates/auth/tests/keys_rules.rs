//! Key rules, locally and behind gRPC: local users are local even when the server name has a
//! port (query and claim find them), device keys need every field of the spec's DeviceKeys,
//! and cross-signing uploads (a self-signing key needs a master key, replacing one needs
//! UIA, a user-signing key and its signatures concern only their owner).

mod common;

use common::{KeysHarness, assert_err, config, device_keys, keys_req as req, register};
use deadpool_postgres::Pool;
use serde_json::{Value, json};
use trellis_auth::AuthConfig;
use trellis_core::ErrorCode;

/// A server name with a port, as SyTest runs it.
const PORTED: &str = "127.0.0.1:8448";

fn body(resp: trellis_proto::keys::KeysResponse) -> Value {
    serde_json::from_str(&resp.body_json).unwrap()
}

fn cross_key(user: &str, usage: &str, public: &str) -> Value {
    json!({"user_id": user, "usage": [usage], "keys": {format!("ed25519:{public}"): public}})
}

/// Whose device-list changes `user` is told of, over the whole stream.
async fn changed_for(pool: &Pool, user: &str) -> Vec<String> {
    let client = pool.get().await.unwrap();
    let mut users = trellis_storage::device_lists::changed(&client, user, 0, i64::MAX).await.unwrap();
    users.sort();
    users
}

async fn local_users_with_a_port_in_the_server_name(grpc: bool) {
    let h = KeysHarness::new(AuthConfig { server_name: PORTED.into(), ..config() }, grpc).await;
    let alice = register(&h.auth, "alice", "password1").await;
    let bob = register(&h.auth, "bob", "password1").await;
    let (user, device) = (alice.user_id.clone(), alice.device_id.clone().unwrap());
    assert_eq!(user, format!("@alice:{PORTED}"));
    let upload = json!({"device_keys": device_keys(&user, &device),
                        "one_time_keys": {"signed_curve25519:AAAA": {"key": "otk"}}});
    h.keys.upload_keys(req(&user, &device, upload)).await.unwrap();

    let bob_device = bob.device_id.clone().unwrap();
    let query = json!({"device_keys": {user.clone(): [], bob.user_id.clone(): []}});
    let found = body(h.keys.query_keys(req(&bob.user_id, &bob_device, query)).await.unwrap());
    assert_eq!(found["device_keys"][&user][&device]["keys"], device_keys(&user, &device)["keys"], "{found}");
    // A device without a name has none in `unsigned` (not a null one).
    assert_eq!(found["device_keys"][&user][&device]["unsigned"], json!({}), "{found}");
    // A local user without keys is there, with none.
    assert_eq!(found["device_keys"][&bob.user_id], json!({}), "{found}");
    // Only the asked-for devices.
    let query = json!({"device_keys": {user.clone(): ["OTHER"]}});
    let found = body(h.keys.query_keys(req(&bob.user_id, &bob_device, query)).await.unwrap());
    assert_eq!(found["device_keys"][&user], json!({}));

    let claim = json!({"one_time_keys": {user.clone(): {device.clone(): "signed_curve25519"}}});
    let claimed = body(h.keys.claim_keys(req(&bob.user_id, &bob_device, claim)).await.unwrap());
    assert_eq!(claimed["one_time_keys"][&user][&device]["signed_curve25519:AAAA"]["key"], "otk", "{claimed}");
}

async fn device_keys_need_every_field(grpc: bool) {
    let h = KeysHarness::new(config(), grpc).await;
    let alice = register(&h.auth, "alice", "password1").await;
    let (user, device) = (alice.user_id.clone(), alice.device_id.clone().unwrap());
    for missing in ["algorithms", "keys", "signatures", "user_id", "device_id"] {
        let mut keys = device_keys(&user, &device);
        keys.as_object_mut().unwrap().remove(missing);
        let err = h.keys.upload_keys(req(&user, &device, json!({"device_keys": keys}))).await.unwrap_err();
        assert_err(&err, ErrorCode::BadJson, 400);
    }
    let mut keys = device_keys(&user, &device);
    keys["algorithms"] = json!("not a list");
    let err = h.keys.upload_keys(req(&user, &device, json!({"device_keys": keys}))).await.unwrap_err();
    assert_err(&err, ErrorCode::BadJson, 400);
    // Complete keys of another device are refused for what they claim, not their shape.
    let err = h.keys.upload_keys(req(&user, &device, json!({"device_keys": device_keys(&user, "ELSE")}))).await;
    assert_err(&err.unwrap_err(), ErrorCode::InvalidParam, 400);
    h.keys.upload_keys(req(&user, &device, json!({"device_keys": device_keys(&user, &device)}))).await.unwrap();
}

async fn cross_signing_uploads(grpc: bool) {
    let h = KeysHarness::new(config(), grpc).await;
    let alice = register(&h.auth, "alice", "password1").await;
    let bob = register(&h.auth, "bob", "password1").await;
    let (a, a_dev) = (alice.user_id.clone(), alice.device_id.clone().unwrap());
    let (b, b_dev) = (bob.user_id.clone(), bob.device_id.clone().unwrap());
    // Alice and Bob share a room (memberships are the rooms service's to write).
    for user in [&a, &b] {
        let sql = "INSERT INTO memberships (user_id, room_id, membership, event_id, pos) \
                   VALUES ($1, '!shared:x', 'join', $1, 1)";
        h.pool.get().await.unwrap().execute(sql, &[user]).await.unwrap();
    }
    let upload = |user: &str, dev: &str, body: Value| h.keys.upload_signing_keys(req(user, dev, body));

    let err = upload(&a, &a_dev, json!({"self_signing_key": cross_key(&a, "self_signing", "SSK")})).await;
    assert_err(&err.unwrap_err(), ErrorCode::InvalidParam, 400);
    upload(&a, &a_dev, json!({"master_key": cross_key(&a, "master", "MSK")})).await.unwrap();
    assert!(changed_for(&h.pool, &b).await.contains(&a), "a new master key is Bob's news");
    let err = upload(&a, &a_dev, json!({"master_key": cross_key(&a, "master", "MSK2")})).await.unwrap_err();
    assert_eq!(err.status(), 401, "replacing a master key needs UIA: {err}");

    // Bob's master key, so that Alice's user-signing key can sign it.
    upload(&b, &b_dev, json!({"master_key": cross_key(&b, "master", "BMSK")})).await.unwrap();
    let before_bob = changed_for(&h.pool, &b).await.len();
    h.pool.get().await.unwrap().execute("DELETE FROM device_list_changes", &[]).await.unwrap();
    upload(&a, &a_dev, json!({"user_signing_key": cross_key(&a, "user_signing", "USK")})).await.unwrap();
    assert_eq!(changed_for(&h.pool, &a).await, vec![a.clone()], "Alice sees her new user-signing key");
    assert!(changed_for(&h.pool, &b).await.is_empty(), "... and Bob does not (was {before_bob})");

    let mut signed = cross_key(&b, "master", "BMSK");
    signed["signatures"] = json!({a.clone(): {"ed25519:USK": "sig"}});
    let sigs = json!({b.clone(): {"BMSK": signed}});
    let out = body(h.keys.upload_signatures(req(&a, &a_dev, sigs)).await.unwrap());
    assert_eq!(out["failures"], json!({}));
    assert_eq!(changed_for(&h.pool, &a).await, vec![a.clone(), b.clone()], "Alice sees Bob's key change");
    assert!(changed_for(&h.pool, &b).await.is_empty(), "Alice's signature is hers alone");
    let query = json!({"device_keys": {b.clone(): []}});
    let seen_by = |user: &str, dev: &str| h.keys.query_keys(req(user, dev, query.clone()));
    let alice_view = body(seen_by(&a, &a_dev).await.unwrap());
    assert_eq!(alice_view["master_keys"][&b]["signatures"][&a]["ed25519:USK"], "sig", "{alice_view}");
    let bob_view = body(seen_by(&b, &b_dev).await.unwrap());
    assert!(bob_view["master_keys"][&b]["signatures"].get(&a).is_none(), "{bob_view}");
}

macro_rules! both {
    ($($name:ident),*) => {
        mod local { $(#[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(false).await })* }
        mod grpc { $(#[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(true).await })* }
    };
}

both!(local_users_with_a_port_in_the_server_name, device_keys_need_every_field, cross_signing_uploads);
