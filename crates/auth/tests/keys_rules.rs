//! Key rules, locally and behind gRPC: local users are local even when the server name has a
//! port (query and claim find them), device keys need every field of the spec's DeviceKeys,
//! and cross-signing uploads (a self-signing key needs a master key, replacing one needs
//! UIA, a user-signing key and its signatures concern only their owner), with every
//! cross-signing signature verified.

mod common;

use common::{
    KeysHarness, assert_err, config, device_keys, keys_json, register,
    signing::{SigningKey, device_key, with_signature},
};
use deadpool_postgres::Pool;
use serde_json::{Value, json};
use trellis_auth::AuthConfig;
use trellis_core::ErrorCode;

/// A server name with a port, as SyTest runs it.
const PORTED: &str = "127.0.0.1:8448";

/// A real cross-signing key of `user` for `usage`, derived from `seed`.
fn cross_key(user: &str, usage: &str, seed: &str) -> (SigningKey, Value) {
    let key = SigningKey::from_seed(&format!("{user} {seed}"));
    let json = key.cross_signing_key(user, usage);
    (key, json)
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
    h.keys.upload_keys(keys_json::upload(&user, &device, upload)).await.unwrap();

    let query = json!({"device_keys": {user.clone(): [], bob.user_id.clone(): []}});
    let found = keys_json::queried(h.keys.query_keys(keys_json::query(&bob.user_id, query)).await.unwrap());
    assert_eq!(found["device_keys"][&user][&device]["keys"], device_keys(&user, &device)["keys"], "{found}");
    // A device without a name has none in `unsigned` (not a null one).
    assert_eq!(found["device_keys"][&user][&device]["unsigned"], json!({}), "{found}");
    // A local user without keys is there, with none.
    assert_eq!(found["device_keys"][&bob.user_id], json!({}), "{found}");
    // Only the asked-for devices.
    let query = json!({"device_keys": {user.clone(): ["OTHER"]}});
    let found = keys_json::queried(h.keys.query_keys(keys_json::query(&bob.user_id, query)).await.unwrap());
    assert_eq!(found["device_keys"][&user], json!({}));

    let claim = json!({"one_time_keys": {user.clone(): {device.clone(): "signed_curve25519"}}});
    let claimed = keys_json::claimed(h.keys.claim_keys(keys_json::claim(&bob.user_id, claim)).await.unwrap());
    assert_eq!(claimed["one_time_keys"][&user][&device]["signed_curve25519:AAAA"]["key"], "otk", "{claimed}");
}

async fn device_keys_need_every_field(grpc: bool) {
    let h = KeysHarness::new(config(), grpc).await;
    let alice = register(&h.auth, "alice", "password1").await;
    let (user, device) = (alice.user_id.clone(), alice.device_id.clone().unwrap());
    for missing in ["algorithms", "keys", "signatures", "user_id", "device_id"] {
        let mut keys = device_keys(&user, &device);
        keys.as_object_mut().unwrap().remove(missing);
        let err =
            h.keys.upload_keys(keys_json::upload(&user, &device, json!({"device_keys": keys}))).await.unwrap_err();
        assert_err(&err, ErrorCode::BadJson, 400);
    }
    let mut keys = device_keys(&user, &device);
    keys["algorithms"] = json!("not a list");
    let err = h.keys.upload_keys(keys_json::upload(&user, &device, json!({"device_keys": keys}))).await.unwrap_err();
    assert_err(&err, ErrorCode::BadJson, 400);
    // Keys that could not be signed (not canonical JSON: a float) are bad JSON too.
    let mut keys = device_keys(&user, &device);
    keys["valid_until_ts"] = json!(1.5);
    let err = h.keys.upload_keys(keys_json::upload(&user, &device, json!({"device_keys": keys}))).await.unwrap_err();
    assert_err(&err, ErrorCode::BadJson, 400);
    // Complete keys of another device are refused for what they claim, not their shape.
    let err =
        h.keys.upload_keys(keys_json::upload(&user, &device, json!({"device_keys": device_keys(&user, "ELSE")}))).await;
    assert_err(&err.unwrap_err(), ErrorCode::InvalidParam, 400);
    h.keys
        .upload_keys(keys_json::upload(&user, &device, json!({"device_keys": device_keys(&user, &device)})))
        .await
        .unwrap();
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
    let upload = |user: &str, _dev: &str, body: Value| h.keys.upload_signing_keys(keys_json::signing_keys(user, body));
    let (a_master, a_master_json) = cross_key(&a, "master", "MSK");
    let (_, a_ssk) = cross_key(&a, "self_signing", "SSK");
    let a_ssk = a_master.signed(&a, &a_ssk);

    let err = upload(&a, &a_dev, json!({"self_signing_key": a_ssk})).await;
    assert_err(&err.unwrap_err(), ErrorCode::MissingParam, 400);
    upload(&a, &a_dev, json!({"master_key": a_master_json})).await.unwrap();
    assert!(changed_for(&h.pool, &b).await.contains(&a), "a new master key is Bob's news");
    let err = upload(&a, &a_dev, json!({"master_key": cross_key(&a, "master", "MSK2").1})).await.unwrap_err();
    assert_eq!(err.status(), 401, "replacing a master key needs UIA: {err}");

    // Bob's master key, so that Alice's user-signing key can sign it.
    let (b_master_key, b_master) = cross_key(&b, "master", "BMSK");
    upload(&b, &b_dev, json!({"master_key": b_master})).await.unwrap();
    let before_bob = changed_for(&h.pool, &b).await.len();
    h.pool.get().await.unwrap().execute("DELETE FROM device_list_changes", &[]).await.unwrap();
    let (a_usk, a_usk_json) = cross_key(&a, "user_signing", "USK");
    upload(&a, &a_dev, json!({"user_signing_key": a_master.signed(&a, &a_usk_json)})).await.unwrap();
    assert_eq!(changed_for(&h.pool, &a).await, vec![a.clone()], "Alice sees her new user-signing key");
    assert!(changed_for(&h.pool, &b).await.is_empty(), "... and Bob does not (was {before_bob})");

    let signed = a_usk.signed(&a, &b_master);
    let sig = signed["signatures"][&a][a_usk.key_id()].clone();
    let b_master_id = b_master_key.public().to_owned();
    let sigs = json!({b.clone(): {b_master_id.clone(): signed}});
    let out = keys_json::signed(h.keys.upload_signatures(keys_json::signatures(&a, sigs)).await.unwrap());
    assert_eq!(out["failures"], json!({}));
    assert_eq!(changed_for(&h.pool, &a).await, vec![a.clone(), b.clone()], "Alice sees Bob's key change");
    assert!(changed_for(&h.pool, &b).await.is_empty(), "Alice's signature is hers alone");
    let query = json!({"device_keys": {b.clone(): []}});
    let seen_by = |user: &str| h.keys.query_keys(keys_json::query(user, query.clone()));
    let alice_view = keys_json::queried(seen_by(&a).await.unwrap());
    assert_eq!(alice_view["master_keys"][&b]["signatures"][&a][a_usk.key_id()], sig, "{alice_view}");
    let bob_view = keys_json::queried(seen_by(&b).await.unwrap());
    assert!(bob_view["master_keys"][&b]["signatures"].get(&a).is_none(), "{bob_view}");
}

/// Signatures are verified: cross-signing keys by the master key on upload, uploaded
/// signatures by the key allowed to make them; a bad one is refused with the spec's errcode
/// and nothing of it is stored, a good one is stored and served.
async fn signatures_are_verified(grpc: bool) {
    let h = KeysHarness::new(config(), grpc).await;
    let alice = register(&h.auth, "alice", "password1").await;
    let bob = register(&h.auth, "bob", "password1").await;
    let (a, a_dev) = (alice.user_id.clone(), alice.device_id.clone().unwrap());
    let (b, b_dev) = (bob.user_id.clone(), bob.device_id.clone().unwrap());
    h.keys.upload_keys(keys_json::upload(&a, &a_dev, json!({"device_keys": device_keys(&a, &a_dev)}))).await.unwrap();
    let upload = |user: &str, _dev: &str, body: Value| h.keys.upload_signing_keys(keys_json::signing_keys(user, body));
    let (master, master_json) = cross_key(&a, "master", "M");
    let (ssk, ssk_json) = cross_key(&a, "self_signing", "S");
    let (usk, usk_json) = cross_key(&a, "user_signing", "U");
    let impostor = SigningKey::from_seed("not alice's master key");

    // A self-signing key signed by another key (under the master key's name), not at all, or
    // with the master key's signature of something else: M_INVALID_SIGNATURE, nothing stored.
    let forged = with_signature(&ssk_json, &a, &master.key_id(), impostor.signature(&a, &ssk_json));
    let misplaced = with_signature(&ssk_json, &a, &master.key_id(), master.signature(&a, &usk_json));
    for ssk in [forged, ssk_json.clone(), misplaced] {
        let err = upload(&a, &a_dev, json!({"master_key": master_json, "self_signing_key": ssk})).await.unwrap_err();
        assert_err(&err, ErrorCode::InvalidSignature, 400);
    }
    let count = "SELECT count(*) FROM cross_signing_keys";
    assert_eq!(h.pool.get().await.unwrap().query_one(count, &[]).await.unwrap().get::<_, i64>(0), 0);
    // Signed by the master key uploaded with it: taken. Later keys are checked against the
    // stored master key.
    let keys = json!({"master_key": master_json, "self_signing_key": master.signed(&a, &ssk_json)});
    upload(&a, &a_dev, keys).await.unwrap();
    let err = upload(&a, &a_dev, json!({"user_signing_key": impostor.signed(&a, &usk_json)})).await.unwrap_err();
    assert_err(&err, ErrorCode::InvalidSignature, 400);
    upload(&a, &a_dev, json!({"user_signing_key": master.signed(&a, &usk_json)})).await.unwrap();
    let (b_master_key, b_master) = cross_key(&b, "master", "BM");
    upload(&b, &b_dev, json!({"master_key": b_master})).await.unwrap();
    let b_master_id = b_master_key.public().to_owned();

    let sign_up = |body: Value| h.keys.upload_signatures(keys_json::signatures(&a, body));
    let failure = |out: &Value, user: &str, key: &str| out["failures"][user][key]["errcode"].clone();
    // Alice's device by her self-signing key: a forged signature, then the real one.
    let device = device_keys(&a, &a_dev);
    let forged = with_signature(&device, &a, &ssk.key_id(), impostor.signature(&a, &device));
    let out = keys_json::signed(sign_up(json!({a.clone(): {a_dev.clone(): forged}})).await.unwrap());
    assert_eq!(failure(&out, &a, &a_dev), "M_INVALID_SIGNATURE", "{out}");
    assert_eq!(out["failures"][&a][&a_dev]["status"], 400, "{out}");
    // The key signed must be the stored one.
    let mut other = device.clone();
    other["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    let out = keys_json::signed(sign_up(json!({a.clone(): {a_dev.clone(): ssk.signed(&a, &other)}})).await.unwrap());
    assert_eq!(failure(&out, &a, &a_dev), "M_INVALID_PARAM", "{out}");
    // Unknown keys are not found.
    let out = keys_json::signed(sign_up(json!({a.clone(): {"NODEVICE": ssk.signed(&a, &device)}})).await.unwrap());
    assert_eq!(failure(&out, &a, "NODEVICE"), "M_NOT_FOUND", "{out}");
    let query = json!({"device_keys": {a.clone(): [], b.clone(): []}});
    let q = keys_json::queried(h.keys.query_keys(keys_json::query(&a, query.clone())).await.unwrap());
    assert!(q["device_keys"][&a][&a_dev]["signatures"][&a].get(ssk.key_id()).is_none(), "{q}");

    // Good signatures, all three kinds: the device by the self-signing key, Bob's master key
    // by the user-signing key, Alice's master key by her device; and one bad one beside them.
    let by_ssk = ssk.signed(&a, &device);
    let by_usk = usk.signed(&a, &b_master);
    let by_device = device_key(&a, &a_dev).signed(&a, &master_json);
    let master_id = master.public().to_owned();
    let body_ = json!({a.clone(): {a_dev.clone(): by_ssk, master_id.clone(): by_device},
                       b.clone(): {b_master_id.clone(): by_usk}});
    let out = keys_json::signed(sign_up(body_).await.unwrap());
    assert_eq!(out["failures"], json!({}), "{out}");
    let bad = with_signature(&b_master, &a, &usk.key_id(), impostor.signature(&a, &b_master));
    let out = keys_json::signed(sign_up(json!({b.clone(): {b_master_id.clone(): bad}})).await.unwrap());
    assert_eq!(failure(&out, &b, &b_master_id), "M_INVALID_SIGNATURE", "{out}");

    let q = keys_json::queried(h.keys.query_keys(keys_json::query(&a, query)).await.unwrap());
    let dev_sigs = &q["device_keys"][&a][&a_dev]["signatures"][&a];
    assert_eq!(dev_sigs[ssk.key_id()], ssk.signature(&a, &device), "{q}");
    assert_eq!(dev_sigs[format!("ed25519:{a_dev}")], device["signatures"][&a][format!("ed25519:{a_dev}")], "{q}");
    let device_sig = device_key(&a, &a_dev).key_id();
    assert!(q["master_keys"][&a]["signatures"][&a].get(&device_sig).is_some(), "{q}");
    let b_sigs = &q["master_keys"][&b]["signatures"][&a];
    assert_eq!(b_sigs[usk.key_id()], usk.signature(&a, &b_master), "{q}");
}

trellis_testkit::contract! {
    setup = crate::common::through_grpc;
    local_users_with_a_port_in_the_server_name,
    device_keys_need_every_field,
    cross_signing_uploads,
    signatures_are_verified,
}
