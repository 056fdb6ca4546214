//! OpenID tokens as widgets and Element Call use them (requested by the user, exchanged at
//! the federation userinfo endpoint served on the client listener), `/admin/whois`, and
//! pushers going with the logins that made them.

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

both_modes!(openid_token_exchange, whois_yourself, pushers_go_with_their_device);

const V3: &str = "/_matrix/client/v3";
const USERINFO: &str = "/_matrix/federation/v1/openid/userinfo";

async fn openid_token_exchange(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "secret-a").await;
    let path = format!("{V3}/user/{}/openid/request_token", enc(&alice.user_id));
    let token = alice.post(&path, json!({})).await.ok();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["matrix_server_name"], "localhost");
    assert_eq!(token["expires_in"], 3600);
    let access_token = token["access_token"].as_str().unwrap();

    // The third party has no Matrix login of its own.
    let anonymous = server.client();
    let info = anonymous.get(&format!("{USERINFO}?access_token={}", enc(access_token))).await.ok();
    assert_eq!(info, json!({"sub": alice.user_id}));
    anonymous.get(&format!("{USERINFO}?access_token=an%2Finvalid%2Ftoken")).await.err(401, "M_UNKNOWN_TOKEN");
    anonymous.get(USERINFO).await.err(401, "M_MISSING_TOKEN");
    // An access token is no OpenID token.
    let login_token = alice.token.clone().unwrap();
    anonymous.get(&format!("{USERINFO}?access_token={}", enc(&login_token))).await.err(401, "M_UNKNOWN_TOKEN");

    // Only for yourself.
    let path = format!("{V3}/user/{}/openid/request_token", enc("@bob:localhost"));
    alice.post(&path, json!({})).await.err(403, "M_FORBIDDEN");
    anonymous
        .post(&format!("{V3}/user/{}/openid/request_token", enc(&alice.user_id)), json!({}))
        .await
        .err(401, "M_MISSING_TOKEN");
}

async fn whois_yourself(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "secret-a").await;
    let mut bob = server.client();
    bob.register("bob", "secret-b").await;
    // A second login, never used since: it is listed with where it logged in from.
    let mut laptop = server.client();
    laptop.login("alice", "secret-a").await;
    let devices = alice.get(&format!("{V3}/devices")).await.ok();
    for d in devices["devices"].as_array().unwrap() {
        assert!(d["last_seen_ts"].is_i64() && d["last_seen_ip"].is_string(), "{d}");
    }

    let whois = alice.get(&format!("{V3}/admin/whois/{}", enc(&alice.user_id))).await.ok();
    assert_eq!(whois["user_id"], alice.user_id);
    let devices = whois["devices"].as_object().unwrap();
    assert_eq!(devices.len(), 2, "{whois}");
    for device in devices.values() {
        let connection = &device["sessions"][0]["connections"][0];
        assert!(connection["ip"].is_string() && connection["last_seen"].is_i64(), "{whois}");
        assert!(connection.get("user_agent").is_some(), "{whois}");
    }
    bob.get(&format!("{V3}/admin/whois/{}", enc(&alice.user_id))).await.err(403, "M_FORBIDDEN");
    alice.get(&format!("{V3}/admin/whois/not-a-user")).await.err(400, "M_INVALID_PARAM");
}

fn pusher(key: &str) -> Value {
    json!({"kind": "http", "app_id": "sytest", "app_display_name": "app", "device_display_name": "dev",
           "pushkey": key, "lang": "en", "data": {"url": "https://push.example/_matrix/push/v1/notify"}})
}

async fn pushkeys(c: &Client) -> Vec<String> {
    let list = c.get(&format!("{V3}/pushers")).await.ok();
    let mut keys: Vec<String> =
        list["pushers"].as_array().unwrap().iter().map(|p| p["pushkey"].as_str().unwrap().to_owned()).collect();
    keys.sort();
    keys
}

async fn pushers_go_with_their_device(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "secret-a").await;
    let mut phone = server.client();
    phone.login("alice", "secret-a").await;
    let mut tablet = server.client();
    tablet.login("alice", "secret-a").await;
    alice.post(&format!("{V3}/pushers/set"), pusher("mine")).await.ok();
    phone.post(&format!("{V3}/pushers/set"), pusher("phone")).await.ok();
    tablet.post(&format!("{V3}/pushers/set"), pusher("tablet")).await.ok();

    // Logging out a device deletes its pusher.
    tablet.post(&format!("{V3}/logout"), json!({})).await.ok();
    assert_eq!(pushkeys(&alice).await, ["mine", "phone"]);

    // A password change keeping the other devices keeps their pushers...
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
                      "password": "secret-a"});
    let keep = json!({"new_password": "secret-b", "logout_devices": false, "auth": auth});
    alice.post(&format!("{V3}/account/password"), keep).await.ok();
    assert_eq!(pushkeys(&alice).await, ["mine", "phone"]);
    // ... and one logging them out deletes the pushers they made, not this device's.
    let mut auth = auth;
    auth["password"] = json!("secret-b");
    alice.post(&format!("{V3}/account/password"), json!({"new_password": "secret-c", "auth": auth})).await.ok();
    assert_eq!(pushkeys(&alice).await, ["mine"]);
}
