//! What admin actions on a user's sessions do beyond the auth service's tables: a password
//! set through `PUT /_synapse/admin/v2/users/{userId}` logs the devices out as a reset does
//! (their pushers go too), a login token made before a lock signs nobody in, and a session
//! opened by an admin (`POST .../login`) is a device-list change like any login.

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

use super::admin_users::admin;

both_modes!(password_set_by_admin_logs_out, login_token_of_locked_account, admin_login_is_a_device_change);

const ADMIN: &str = "/_synapse/admin";
const V3: &str = "/_matrix/client/v3";

fn pusher(key: &str) -> Value {
    json!({"kind": "http", "app_id": "trellis.test", "app_display_name": "app", "device_display_name": "dev",
           "pushkey": key, "lang": "en", "data": {"url": "https://push.example/_matrix/push/v1/notify"}})
}

async fn pushkeys(c: &Client) -> Vec<String> {
    let list = c.get(&format!("{V3}/pushers")).await.ok();
    list["pushers"].as_array().unwrap().iter().map(|p| p["pushkey"].as_str().unwrap().to_owned()).collect()
}

async fn password_set_by_admin_logs_out(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    bob.post(&format!("{V3}/pushers/set"), pusher("bobs-phone")).await.ok();
    let path = format!("{ADMIN}/v2/users/{}", enc("@bob:localhost"));

    // Keeping the devices keeps their pushers.
    alice.put(&path, json!({"password": "bob-pw-2", "logout_devices": false})).await.ok();
    assert_eq!(pushkeys(&bob).await, ["bobs-phone"]);
    // By default every device is logged out, and the pushers they made are deleted.
    alice.put(&path, json!({"password": "bob-pw-3"})).await.ok();
    bob.get(&format!("{V3}/account/whoami")).await.err(401, "M_UNKNOWN_TOKEN");
    let mut again = server.client();
    again.login("bob", "bob-pw-3").await;
    assert_eq!(pushkeys(&again).await, Vec::<String>::new());
}

async fn login_token_of_locked_account(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let get_token = "/_matrix/client/v1/login/get_token";
    let challenge = bob.post(get_token, json!({})).await;
    let session = challenge.body["session"].as_str().unwrap();
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
                      "password": trellis_testkit::PASSWORD, "session": session});
    let issued = bob.post(get_token, json!({"auth": auth})).await.ok();
    let token = issued["login_token"].as_str().unwrap();

    alice.put(&format!("{ADMIN}/v2/users/{}", enc("@bob:localhost")), json!({"locked": true})).await.ok();
    let login = server.client().post(&format!("{V3}/login"), json!({"type": "m.login.token", "token": token})).await;
    login.err(401, "M_USER_LOCKED");
    assert_eq!(login.body["soft_logout"], true, "{}", login.body);
}

async fn admin_login_is_a_device_change(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = bob.create_room(json!({"preset": "public_chat"})).await;
    carol.join(&room).await;
    let first = carol.sync(None, None, 0).await;
    let since = first["next_batch"].as_str().unwrap();

    // Carol long-polls; an admin's session as bob is a new device of his: she is woken.
    let poll = server.open_long_poll(&carol, since).await;
    let started = std::time::Instant::now();
    alice.post(&format!("{ADMIN}/v1/users/{}/login", enc("@bob:localhost")), json!({})).await.ok();
    let woke = poll.await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the long-poll was woken");
    assert_eq!(woke["device_lists"]["changed"], json!(["@bob:localhost"]), "{woke}");
}
