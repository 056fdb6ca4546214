//! Devices, user-interactive auth with the password, account management and key backup:
//! what a real client (Element, matrix-js-sdk) does in its settings screens.

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

both_modes!(
    devices_list_rename_and_delete_with_uia,
    password_change_logs_out_other_devices,
    deactivation_ends_the_account,
    key_backup_flow
);

const V3: &str = "/_matrix/client/v3";

/// Logs `user` in again on a device of its own (with a display name).
async fn second_device(server: &TestServer, user: &str, password: &str, device: &str) -> Client {
    let mut c = server.client();
    let body = c
        .post(
            &format!("{V3}/login"),
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                   "password": password, "device_id": device, "initial_device_display_name": "Laptop"}),
        )
        .await
        .ok();
    c.token = body["access_token"].as_str().map(str::to_owned);
    c.user_id = body["user_id"].as_str().unwrap().to_owned();
    c.device_id = body["device_id"].as_str().unwrap().to_owned();
    c
}

fn password_auth(user: &str, password: &str, session: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
           "password": password, "session": session})
}

/// Starts user-interactive auth for a request and returns the session of the challenge.
async fn challenge(c: &Client, method: &str, path: &str, body: Value) -> String {
    let reply = c.request(method, path, Some(body)).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.body["flows"], json!([{"stages": ["m.login.password"]}]));
    assert!(reply.body.get("errcode").is_none(), "{}", reply.body);
    reply.body["session"].as_str().expect("session").to_owned()
}

async fn devices_list_rename_and_delete_with_uia(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "secret-a").await;
    let laptop = second_device(&server, "alice", "secret-a", "LAPTOP").await;
    let mut bob = server.client();
    bob.register("bob", "secret-b").await;

    let list = alice.get(&format!("{V3}/devices")).await.ok();
    let devices = list["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{list}");
    let lap = devices.iter().find(|d| d["device_id"] == "LAPTOP").expect("laptop listed");
    assert_eq!(lap["display_name"], "Laptop");
    assert!(devices.iter().any(|d| d["device_id"] == alice.device_id.as_str()));

    alice.put(&format!("{V3}/devices/LAPTOP"), json!({"display_name": "Work laptop"})).await.ok();
    let one = alice.get(&format!("{V3}/devices/LAPTOP")).await.ok();
    assert_eq!((one["device_id"].as_str(), one["display_name"].as_str()), (Some("LAPTOP"), Some("Work laptop")));
    // Using the laptop records when and from where it was seen (written in the background).
    laptop.get(&format!("{V3}/account/whoami")).await.ok();
    let mut seen = Value::Null;
    for _ in 0..50 {
        seen = alice.get(&format!("{V3}/devices/LAPTOP")).await.ok();
        if seen["last_seen_ts"].as_i64().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen["last_seen_ts"].as_i64().unwrap_or(0) > 0, "{seen}");
    assert_eq!(seen["last_seen_ip"], "127.0.0.1", "{seen}");
    alice.get(&format!("{V3}/devices/NOPE")).await.err(404, "M_NOT_FOUND");
    alice.put(&format!("{V3}/devices/NOPE"), json!({"display_name": "x"})).await.err(404, "M_NOT_FOUND");
    alice.request("DELETE", &format!("{V3}/devices/NOPE"), Some(json!({}))).await.err(404, "M_NOT_FOUND");
    // Bob cannot see Alice's devices.
    bob.get(&format!("{V3}/devices/LAPTOP")).await.err(404, "M_NOT_FOUND");

    let path = format!("{V3}/devices/LAPTOP");
    let session = challenge(&alice, "DELETE", &path, json!({})).await;
    // A wrong password: 401 with M_FORBIDDEN and the flows again.
    let wrong = alice.request("DELETE", &path, Some(json!({"auth": password_auth("alice", "wrong", &session)}))).await;
    assert_eq!((wrong.status, wrong.body["errcode"].as_str()), (401, Some("M_FORBIDDEN")), "{}", wrong.body);
    assert_eq!(wrong.body["session"], session.as_str());
    assert_eq!(wrong.body["flows"], json!([{"stages": ["m.login.password"]}]));
    // Another user's password does not authenticate Alice: right credentials, wrong user, a
    // plain 403 (as Synapse).
    let other = alice.request("DELETE", &path, Some(json!({"auth": password_auth("bob", "secret-b", &session)}))).await;
    other.err(403, "M_FORBIDDEN");
    // Alice's session is no use to Bob, even with his own password.
    let stolen = bob
        .post(
            &format!("{V3}/delete_devices"),
            json!({"devices": [bob.device_id], "auth": password_auth("bob", "secret-b", &session)}),
        )
        .await;
    stolen.err(403, "M_FORBIDDEN");
    bob.get(&format!("{V3}/account/whoami")).await.ok();
    // A session of another purpose is refused too.
    let pw_session = challenge(&alice, "POST", &format!("{V3}/account/password"), json!({"new_password": "n"})).await;
    let wrong_purpose =
        alice.request("DELETE", &path, Some(json!({"auth": password_auth("alice", "secret-a", &pw_session)}))).await;
    wrong_purpose.err(403, "M_FORBIDDEN");

    laptop.get(&format!("{V3}/account/whoami")).await.ok();
    alice.request("DELETE", &path, Some(json!({"auth": password_auth("alice", "secret-a", &session)}))).await.ok();
    // The deleted device's token is dead at once, and the device is gone.
    laptop.get(&format!("{V3}/account/whoami")).await.err(401, "M_UNKNOWN_TOKEN");
    alice.get(&format!("{V3}/devices/LAPTOP")).await.err(404, "M_NOT_FOUND");
    // The used-up session cannot be replayed.
    let replay = alice
        .request(
            "DELETE",
            &format!("{V3}/devices/{}", alice.device_id),
            Some(json!({"auth": password_auth("alice", "secret-a", &session)})),
        )
        .await;
    assert_eq!(replay.status, 400, "{}", replay.body);

    // Bulk deletion, with the legacy `user` field and no prior challenge.
    let p1 = second_device(&server, "alice", "secret-a", "P1").await;
    let p2 = second_device(&server, "alice", "secret-a", "P2").await;
    alice
        .post(
            &format!("{V3}/delete_devices"),
            json!({"devices": ["P1", "P2", "UNKNOWN"], "auth": {"type": "m.login.password", "user": "@alice:localhost", "password": "secret-a"}}),
        )
        .await
        .ok();
    p1.get(&format!("{V3}/account/whoami")).await.err(401, "M_UNKNOWN_TOKEN");
    p2.get(&format!("{V3}/account/whoami")).await.err(401, "M_UNKNOWN_TOKEN");
    let left = alice.get(&format!("{V3}/devices")).await.ok();
    let ids: Vec<&str> = left["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![alice.device_id.as_str()]);
}

async fn password_change_logs_out_other_devices(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "old-password").await;
    let other = second_device(&server, "alice", "old-password", "OTHER").await;
    let path = format!("{V3}/account/password");
    let session = challenge(&alice, "POST", &path, json!({"new_password": "new-password"})).await;
    let wrong = alice
        .post(&path, json!({"new_password": "new-password", "auth": password_auth("alice", "nope", &session)}))
        .await;
    assert_eq!((wrong.status, wrong.body["errcode"].as_str()), (401, Some("M_FORBIDDEN")), "{}", wrong.body);
    alice
        .post(&path, json!({"new_password": "new-password", "auth": password_auth("alice", "old-password", &session)}))
        .await
        .ok();
    // The requesting device stays; every other one is logged out.
    alice.get(&format!("{V3}/account/whoami")).await.ok();
    other.get(&format!("{V3}/account/whoami")).await.err(401, "M_UNKNOWN_TOKEN");
    let devices = alice.get(&format!("{V3}/devices")).await.ok();
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1, "{devices}");

    let login = |password: &'static str| {
        let c = server.client();
        async move {
            c.post(
                &format!("{V3}/login"),
                json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": password}),
            )
            .await
        }
    };
    login("old-password").await.err(403, "M_FORBIDDEN");
    login("new-password").await.ok();

    // logout_devices: false keeps the other devices.
    let kept = second_device(&server, "alice", "new-password", "KEPT").await;
    let auth = json!({"type": "m.login.password", "user": "alice", "password": "new-password"});
    alice.post(&path, json!({"new_password": "third-one", "logout_devices": false, "auth": auth})).await.ok();
    kept.get(&format!("{V3}/account/whoami")).await.ok();
    login("third-one").await.ok();
}

async fn deactivation_ends_the_account(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "secret-a").await;
    let mut bob = server.client();
    bob.register("bob", "secret-b").await;
    let joined = bob.create_room(json!({"preset": "public_chat"})).await;
    let invited = bob.create_room(json!({})).await;
    alice.post(&format!("{V3}/join/{}", enc(&joined)), json!({})).await.ok();
    bob.post(&format!("{V3}/rooms/{}/invite", enc(&invited)), json!({"user_id": "@alice:localhost"})).await.ok();
    let laptop = second_device(&server, "alice", "secret-a", "LAPTOP").await;

    assert_eq!(alice.get(&format!("{V3}/account/3pid")).await.ok(), json!({"threepids": []}));
    let path = format!("{V3}/account/deactivate");
    let session = challenge(&alice, "POST", &path, json!({})).await;
    let wrong = alice.post(&path, json!({"auth": password_auth("alice", "nope", &session)})).await;
    assert_eq!((wrong.status, wrong.body["errcode"].as_str()), (401, Some("M_FORBIDDEN")), "{}", wrong.body);
    let done = alice.post(&path, json!({"auth": password_auth("alice", "secret-a", &session)})).await.ok();
    // Nothing was bound on an identity server, so everything bound was unbound (as Synapse).
    assert_eq!(done["id_server_unbind_result"], "success");

    alice.get(&format!("{V3}/account/whoami")).await.err(401, "M_UNKNOWN_TOKEN");
    laptop.get(&format!("{V3}/account/whoami")).await.err(401, "M_UNKNOWN_TOKEN");
    let login = server
        .client()
        .post(
            &format!("{V3}/login"),
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "secret-a"}),
        )
        .await;
    login.err(403, "M_USER_DEACTIVATED");
    // Both rooms see her leave.
    for room in [&joined, &invited] {
        let member =
            bob.get(&format!("{V3}/rooms/{}/state/m.room.member/{}", enc(room), enc("@alice:localhost"))).await.ok();
        assert_eq!(member["membership"], "leave", "{room}");
    }
    let members = bob.get(&format!("{V3}/rooms/{}/joined_members", enc(&joined))).await.ok();
    assert!(members["joined"].get("@alice:localhost").is_none(), "{members}");
}

async fn key_backup_flow(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "secret-a").await;
    let mut bob = server.client();
    bob.register("bob", "secret-b").await;
    alice.get(&format!("{V3}/room_keys/version")).await.err(404, "M_NOT_FOUND");
    let algorithm = "m.megolm_backup.v1.curve25519-aes-sha2";
    let v1 = alice
        .post(&format!("{V3}/room_keys/version"), json!({"algorithm": algorithm, "auth_data": {"public_key": "abc"}}))
        .await
        .ok()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let info = alice.get(&format!("{V3}/room_keys/version")).await.ok();
    assert_eq!(info["version"], v1.as_str());
    assert_eq!(info["algorithm"], algorithm);
    assert_eq!(info["auth_data"], json!({"public_key": "abc"}));
    assert_eq!(info["count"], 0);
    let etag0 = info["etag"].as_str().unwrap().to_owned();
    bob.get(&format!("{V3}/room_keys/version")).await.err(404, "M_NOT_FOUND");
    bob.get(&format!("{V3}/room_keys/version/{v1}")).await.err(404, "M_NOT_FOUND");

    let key = |index: u64, forwarded: u64, verified: bool, tag: &str| {
        json!({"first_message_index": index, "forwarded_count": forwarded, "is_verified": verified,
               "session_data": {"ciphertext": tag}})
    };
    let room = "!room:localhost";
    let put = alice
        .put(
            &format!("{V3}/room_keys/keys?version={v1}"),
            json!({"rooms": {room: {"sessions": {"s1": key(5, 1, false, "a"), "s2": key(0, 0, false, "b")}}}}),
        )
        .await
        .ok();
    assert_eq!(put["count"], 2);
    let etag1 = put["etag"].as_str().unwrap().to_owned();
    assert_ne!(etag1, etag0);

    // A worse key does not replace the stored one: nothing changes, the etag stays.
    let same =
        alice.put(&format!("{V3}/room_keys/keys/{}/s1?version={v1}", enc(room)), key(7, 0, false, "worse")).await.ok();
    assert_eq!((same["count"].as_i64(), same["etag"].as_str()), (Some(2), Some(etag1.as_str())));
    let s1 = alice.get(&format!("{V3}/room_keys/keys/{}/s1?version={v1}", enc(room))).await.ok();
    assert_eq!(s1["session_data"]["ciphertext"], "a");
    // A verified key is better; then a lower first_message_index.
    let better = alice
        .put(
            &format!("{V3}/room_keys/keys/{}?version={v1}", enc(room)),
            json!({"sessions": {"s1": key(9, 3, true, "c")}}),
        )
        .await
        .ok();
    assert_ne!(better["etag"].as_str(), Some(etag1.as_str()));
    let s1 = alice.get(&format!("{V3}/room_keys/keys/{}/s1?version={v1}", enc(room))).await.ok();
    assert_eq!(s1, key(9, 3, true, "c"));
    let all = alice.get(&format!("{V3}/room_keys/keys?version={v1}")).await.ok();
    assert_eq!(all["rooms"][room]["sessions"]["s2"], key(0, 0, false, "b"));
    let in_room = alice.get(&format!("{V3}/room_keys/keys/{}?version={v1}", enc(room))).await.ok();
    assert_eq!(in_room["sessions"].as_object().unwrap().len(), 2);
    alice.get(&format!("{V3}/room_keys/keys/{}/nope?version={v1}", enc(room))).await.err(404, "M_NOT_FOUND");
    let info = alice.get(&format!("{V3}/room_keys/version/{v1}")).await.ok();
    assert_eq!(info["count"], 2);
    assert_eq!(info["etag"], better["etag"]);

    // Updating auth_data keeps the algorithm.
    alice
        .put(
            &format!("{V3}/room_keys/version/{v1}"),
            json!({"algorithm": algorithm, "auth_data": {"public_key": "def"}}),
        )
        .await
        .ok();
    alice
        .put(&format!("{V3}/room_keys/version/{v1}"), json!({"algorithm": "other", "auth_data": {}}))
        .await
        .err(400, "M_INVALID_PARAM");
    assert_eq!(alice.get(&format!("{V3}/room_keys/version")).await.ok()["auth_data"]["public_key"], "def");

    // Deleting one session.
    let del = alice.request("DELETE", &format!("{V3}/room_keys/keys/{}/s2?version={v1}", enc(room)), None).await.ok();
    assert_eq!(del["count"], 1);

    // A new version becomes current; uploads to the old one are refused with the current one.
    let v2 = alice
        .post(&format!("{V3}/room_keys/version"), json!({"algorithm": algorithm, "auth_data": {"public_key": "x"}}))
        .await
        .ok()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(v1, v2);
    let stale = alice
        .put(
            &format!("{V3}/room_keys/keys?version={v1}"),
            json!({"rooms": {room: {"sessions": {"s9": key(0, 0, true, "z")}}}}),
        )
        .await;
    stale.err(403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(stale.body["current_version"], v2.as_str());
    alice.get(&format!("{V3}/room_keys/keys?version=12345")).await.err(404, "M_NOT_FOUND");
    alice.get(&format!("{V3}/room_keys/keys")).await.err(400, "M_MISSING_PARAM");

    alice.request("DELETE", &format!("{V3}/room_keys/version/{v2}"), None).await.ok();
    alice.get(&format!("{V3}/room_keys/version/{v2}")).await.err(404, "M_NOT_FOUND");
    // v1 is current again once v2 is gone; a new version never reuses v2's number.
    assert_eq!(alice.get(&format!("{V3}/room_keys/version")).await.ok()["version"], v1.as_str());
    let v3 = alice
        .post(&format!("{V3}/room_keys/version"), json!({"algorithm": algorithm, "auth_data": {}}))
        .await
        .ok()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(v3 != v1 && v3 != v2, "{v1} {v2} {v3}");
}
