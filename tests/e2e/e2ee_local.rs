//! End-to-end encryption details real deployments hit: keys of local users when the server
//! name carries a port, the spec's required DeviceKeys fields, opaque key-backup data, and a
//! device rename reaching the device lists of room members.

use serde_json::json;
use trellis_testkit::{TestServer, enc};

both_modes!(device_keys_need_every_field, key_backup_data_is_opaque, device_rename_reaches_room_members);

const V3: &str = "/_matrix/client/v3";

/// As SyTest runs a server: `127.0.0.1:8448`-like names, with a port.
async fn keys_of_local_users_with_a_port(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    assert_eq!(alice.user_id, "@alice:localhost:8448");
    let upload = json!({"device_keys": alice.device_keys(), "one_time_keys": {"signed_curve25519:K1": {"key": "k1"}}});
    alice.post(&format!("{V3}/keys/upload"), upload).await.ok();

    let query = json!({"device_keys": {alice.user_id.clone(): [], bob.user_id.clone(): []}});
    let found = bob.post(&format!("{V3}/keys/query"), query).await.ok();
    assert_eq!(found["device_keys"][&alice.user_id][&alice.device_id]["keys"], alice.device_keys()["keys"], "{found}");
    // Bob has no keys: he is there, with none.
    assert_eq!(found["device_keys"][&bob.user_id], json!({}), "{found}");

    let claim = json!({"one_time_keys": {alice.user_id.clone(): {alice.device_id.clone(): "signed_curve25519"}}});
    let claimed = bob.post(&format!("{V3}/keys/claim"), claim).await.ok();
    assert_eq!(claimed["one_time_keys"][&alice.user_id][&alice.device_id]["signed_curve25519:K1"]["key"], "k1");
}

fn with_port(c: &mut trellis_testkit::Config) {
    c.server_name = "localhost:8448".into();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_local_users_with_a_port_monolith() {
    keys_of_local_users_with_a_port(TestServer::monolith_configured(with_port).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_local_users_with_a_port_split() {
    keys_of_local_users_with_a_port(TestServer::split_configured(with_port).await).await;
}

async fn device_keys_need_every_field(server: TestServer) {
    let alice = server.user("alice").await;
    for missing in ["algorithms", "keys", "signatures"] {
        let mut keys = alice.device_keys();
        keys.as_object_mut().unwrap().remove(missing);
        let body = json!({"device_keys": keys, "one_time_keys": {"my_algorithm:my_id_1": "KIhHVkAQ"}});
        alice.post(&format!("{V3}/keys/upload"), body).await.err(400, "M_BAD_JSON");
    }
    // Nothing of a refused upload was kept.
    let counts = alice.post(&format!("{V3}/keys/upload"), json!({})).await.ok();
    assert!(counts["one_time_key_counts"].get("my_algorithm").is_none(), "{counts}");
    alice.post(&format!("{V3}/keys/upload"), json!({"device_keys": alice.device_keys()})).await.ok();
}

async fn key_backup_data_is_opaque(server: TestServer) {
    let alice = server.user("alice").await;
    let create = json!({"algorithm": "m.megolm_backup.v1", "auth_data": "anopaquestring"});
    let version = alice.post(&format!("{V3}/room_keys/version"), create).await.ok()["version"].clone();
    let version = version.as_str().unwrap().to_owned();
    let info = alice.get(&format!("{V3}/room_keys/version/{version}")).await.ok();
    assert_eq!(info["auth_data"], "anopaquestring");
    // The body's version may be a number, as older clients send it; a different one is refused.
    let number: u64 = version.parse().unwrap();
    let update = json!({"algorithm": "m.megolm_backup.v1", "auth_data": {"changed": true}, "version": number});
    alice.put(&format!("{V3}/room_keys/version/{version}"), update).await.ok();
    let other = json!({"algorithm": "m.megolm_backup.v1", "auth_data": {}, "version": number + 1});
    alice.put(&format!("{V3}/room_keys/version/{version}"), other).await.err(400, "M_INVALID_PARAM");
    alice.post(&format!("{V3}/room_keys/version"), json!({"algorithm": "x"})).await.err(400, "M_BAD_JSON");

    let key = json!({"first_message_index": 3, "forwarded_count": 0, "is_verified": false,
                     "session_data": "anopaquestring"});
    let path = format!("{V3}/room_keys/keys/{}/1234?version={version}", enc("!abcd:localhost"));
    alice.put(&path, key.clone()).await.ok();
    assert_eq!(alice.get(&path).await.ok(), key);

    // Many versions (Synapse once stopped at ten).
    for _ in 0..11 {
        alice
            .post(&format!("{V3}/room_keys/version"), json!({"algorithm": "m.megolm_backup.v1", "auth_data": {}}))
            .await
            .ok();
    }
}

async fn device_rename_reaches_room_members(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();
    let since = bob.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    let poll = {
        let bob = bob.clone();
        let since = since.clone();
        tokio::spawn(async move { bob.sync(Some(&since), None, 10_000).await })
    };
    // The long-poll is open (waiting on the worker) before anything is sent.
    server.until_metric("trellis_sync_open_longpolls", 1.0).await;
    let started = std::time::Instant::now();
    let path = format!("{V3}/devices/{}", enc(&alice.device_id));
    alice.put(&path, json!({"display_name": "test display name"})).await.ok();
    let woke = poll.await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the long-poll was woken");
    assert_eq!(woke["device_lists"]["changed"], json!([alice.user_id]), "{woke}");
    let to = woke["next_batch"].as_str().unwrap();
    let changes = bob.get(&format!("{V3}/keys/changes?from={}&to={}", enc(&since), enc(to))).await.ok();
    assert_eq!(changes["changed"], json!([alice.user_id]), "{changes}");
}
