//! The operators' admin API (`/_synapse/admin`, Synapse's paths and shapes) for accounts:
//! only server admins (made at the command line, `trellis admin user make-admin`, or by
//! another admin) may use it; users listed, queried, created, modified, locked, their
//! passwords reset, their devices deleted, a token issued to act as them, deactivated.

use serde_json::{Value, json};
use trellis_homeserver::admin::{AdminArea, AdminCommand, UserCommand};
use trellis_testkit::{Client, PASSWORD, TestServer, enc};

both_modes!(
    only_admins_may_use_it,
    users_listed_created_and_modified,
    locked_accounts_are_refused,
    passwords_devices_and_acting_as_a_user,
    deactivation_leaves_rooms,
    the_cli_manages_accounts
);

const ADMIN: &str = "/_synapse/admin";

/// Runs `trellis admin ...` on the server's database; what it printed.
pub async fn cli(server: &TestServer, json: bool, command: UserCommand) -> String {
    let mut config = trellis_core::config::Config { server_name: "localhost".into(), ..Default::default() };
    config.database.url = server.database_url().to_owned();
    let mut out = Vec::new();
    let command = AdminCommand { json, command: AdminArea::User(command) };
    trellis_homeserver::admin::run_to(&config, command, &mut out).await.expect("the command succeeds");
    String::from_utf8(out).unwrap()
}

/// A new user made a server admin at the command line.
pub async fn admin(server: &TestServer, name: &str) -> Client {
    let client = server.user(name).await;
    cli(server, false, UserCommand::MakeAdmin { user: name.into(), revoke: false }).await;
    client
}

fn user(name: &str) -> String {
    enc(&format!("@{name}:localhost"))
}

async fn only_admins_may_use_it(server: TestServer) {
    let version = server.client().get(&format!("{ADMIN}/v1/server_version")).await.ok();
    assert!(version["server_version"].as_str().unwrap().starts_with("Trellis "), "{version}");

    let alice = server.user("alice").await;
    let list = format!("{ADMIN}/v2/users");
    server.client().get(&list).await.err(401, "M_MISSING_TOKEN");
    for path in [list.clone(), format!("{ADMIN}/v2/users/{}", user("alice")), format!("{ADMIN}/v1/registration_tokens")]
    {
        alice.get(&path).await.err(403, "M_FORBIDDEN");
    }
    alice.put(&format!("{ADMIN}/v2/users/{}", user("alice")), json!({"admin": true})).await.err(403, "M_FORBIDDEN");

    cli(&server, false, UserCommand::MakeAdmin { user: "@alice:localhost".into(), revoke: false }).await;
    let listed = alice.get(&list).await.ok();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["users"][0]["admin"], true, "{listed}");
    assert_eq!(alice.get(&format!("{ADMIN}/v1/users/{}/admin", user("alice"))).await.ok()["admin"], true);

    // An admin makes another; the new one is one at once, and may not demote themself.
    let bob = server.user("bob").await;
    alice.put(&format!("{ADMIN}/v1/users/{}/admin", user("bob")), json!({"admin": true})).await.ok();
    bob.get(&list).await.ok();
    bob.put(&format!("{ADMIN}/v2/users/{}", user("bob")), json!({"admin": false})).await.err(400, "M_INVALID_PARAM");
    bob.put(&format!("{ADMIN}/v2/users/{}", user("alice")), json!({"admin": false})).await.ok();
    alice.get(&list).await.err(403, "M_FORBIDDEN");
}

async fn users_listed_created_and_modified(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let path = |name: &str| format!("{ADMIN}/v2/users/{}", user(name));
    // Created: 201, then modified: 200.
    let created = alice.put(&path("carol"), json!({"password": "carol-pw-1", "displayname": "Carol"})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        (created.body["name"].as_str(), created.body["displayname"].as_str()),
        (Some("@carol:localhost"), Some("Carol"))
    );
    let changed =
        alice.put(&path("carol"), json!({"displayname": "Caroline", "avatar_url": "mxc://localhost/a"})).await.ok();
    assert_eq!(changed["displayname"], "Caroline");
    let mut carol = server.client();
    carol.login("carol", "carol-pw-1").await;
    assert_eq!(carol.get("/_matrix/client/v3/account/whoami").await.ok()["user_id"], "@carol:localhost");

    let details = alice.get(&path("carol")).await.ok();
    for key in ["threepids", "external_ids", "is_guest", "admin", "deactivated", "locked", "creation_ts", "erased"] {
        assert!(details.get(key).is_some(), "{key} in {details}");
    }
    assert_eq!(details["avatar_url"], "mxc://localhost/a");
    assert!(details["creation_ts"].as_i64().unwrap() < 10_000_000_000, "seconds, as Synapse: {details}");

    server.user("dave").await;
    // Paging: a page of one, then the rest.
    let first = alice.get(&format!("{ADMIN}/v2/users?limit=1")).await.ok();
    assert_eq!((first["total"].as_i64(), first["users"].as_array().unwrap().len()), (Some(3), 1), "{first}");
    assert_eq!(first["users"][0]["name"], "@alice:localhost");
    let next = first["next_token"].as_str().unwrap();
    let rest = alice.get(&format!("{ADMIN}/v2/users?limit=5&from={next}")).await.ok();
    let names: Vec<&str> = rest["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["@carol:localhost", "@dave:localhost"]);
    assert!(rest.get("next_token").is_none(), "{rest}");
    let backwards = alice.get(&format!("{ADMIN}/v3/users?order_by=name&dir=b")).await.ok();
    assert_eq!(backwards["users"][0]["name"], "@dave:localhost");
    let by_name = alice.get(&format!("{ADMIN}/v2/users?name=carol")).await.ok();
    assert_eq!(by_name["total"], 1, "{by_name}");
    let admins = alice.get(&format!("{ADMIN}/v2/users?admins=true")).await.ok();
    assert_eq!(admins["users"][0]["name"], "@alice:localhost");
    assert_eq!(admins["total"], 1);

    // Bad input.
    for bad in ["order_by=shoe_size", "dir=sideways", "from=-1", "limit=-5", "from=abc", "guests=perhaps"] {
        alice.get(&format!("{ADMIN}/v2/users?{bad}")).await.err(400, "M_INVALID_PARAM");
    }
    alice.get(&path("nobody")).await.err(404, "M_NOT_FOUND");
    alice.get(&format!("{ADMIN}/v2/users/{}", enc("@carol:elsewhere"))).await.err(400, "M_INVALID_PARAM");
    alice.put(&path("Bad Name"), json!({})).await.err(400, "M_INVALID_USERNAME");
    alice.put(&path("erin"), json!({"admin": "yes"})).await.err(400, "M_BAD_JSON");
}

async fn locked_accounts_are_refused(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let whoami = "/_matrix/client/v3/account/whoami";
    bob.get(whoami).await.ok();
    alice.put(&format!("{ADMIN}/v2/users/{}", user("bob")), json!({"locked": true})).await.ok();
    let refused = bob.get(whoami).await;
    refused.err(401, "M_USER_LOCKED");
    assert_eq!(refused.body["soft_logout"], true);
    let login = server.client().post("/_matrix/client/v3/login", login_body("bob", PASSWORD)).await;
    login.err(401, "M_USER_LOCKED");
    alice.put(&format!("{ADMIN}/v2/users/{}", user("bob")), json!({"locked": false})).await.ok();
    bob.get(whoami).await.ok();
}

fn login_body(user: &str, password: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
}

async fn passwords_devices_and_acting_as_a_user(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let whoami = "/_matrix/client/v3/account/whoami";

    // Acting as bob: a token of his own (not for oneself).
    let as_bob = alice.post(&format!("{ADMIN}/v1/users/{}/login", user("bob")), json!({})).await.ok();
    let mut puppet = server.client();
    puppet.token = Some(as_bob["access_token"].as_str().unwrap().to_owned());
    assert_eq!(puppet.get(whoami).await.ok()["user_id"], "@bob:localhost");
    alice.post(&format!("{ADMIN}/v1/users/{}/login", user("alice")), json!({})).await.err(400, "M_INVALID_PARAM");
    alice.post(&format!("{ADMIN}/v1/users/{}/login", user("nobody")), json!({})).await.err(404, "M_NOT_FOUND");
    alice
        .post(&format!("{ADMIN}/v1/users/{}/login", user("bob")), json!({"valid_until_ms": 1}))
        .await
        .err(400, "M_INVALID_PARAM");

    // Devices: listed, one deleted (its token dies with it).
    let devices = alice.get(&format!("{ADMIN}/v2/users/{}/devices", user("bob"))).await.ok();
    assert_eq!(devices["total"], 2, "{devices}");
    let puppet_device = puppet.get(whoami).await.ok()["device_id"].as_str().unwrap().to_owned();
    alice.request("DELETE", &format!("{ADMIN}/v2/users/{}/devices/{puppet_device}", user("bob")), None).await.ok();
    puppet.get(whoami).await.err(401, "M_UNKNOWN_TOKEN");
    let whois = alice.get(&format!("{ADMIN}/v1/whois/{}", user("bob"))).await.ok();
    assert_eq!(whois["devices"].as_object().unwrap().len(), 1, "{whois}");

    // A password reset logs every device out; the new password works.
    let reset = format!("{ADMIN}/v1/reset_password/{}", user("bob"));
    alice.post(&reset, json!({})).await.err(400, "M_MISSING_PARAM");
    alice.post(&reset, json!({"new_password": "x".repeat(600)})).await.err(400, "M_INVALID_PARAM");
    alice.post(&reset, json!({"new_password": ""})).await.err(400, "M_WEAK_PASSWORD");
    alice.post(&reset, json!({"new_password": "bob-new-pw"})).await.ok();
    bob.get(whoami).await.err(401, "M_UNKNOWN_TOKEN");
    let mut again = server.client();
    again.login("bob", "bob-new-pw").await;
    again.get(whoami).await.ok();
    alice
        .post(&format!("{ADMIN}/v2/users/{}/delete_devices", user("bob")), json!({"devices": [again.device_id]}))
        .await
        .ok();
    again.get(whoami).await.err(401, "M_UNKNOWN_TOKEN");
}

async fn deactivation_leaves_rooms(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let (_, bob, room) = {
        let bob = server.user("bob").await;
        let room = alice.create_room(json!({"preset": "public_chat"})).await;
        bob.join(&room).await;
        ((), bob, room)
    };
    let joined = alice.get(&format!("{ADMIN}/v1/users/{}/joined_rooms", user("bob"))).await.ok();
    assert_eq!(joined, json!({"joined_rooms": [room], "total": 1}));

    let deactivate = |name: &str| format!("{ADMIN}/v1/deactivate/{}", user(name));
    alice.post(&deactivate("nobody"), json!({})).await.err(404, "M_NOT_FOUND");
    alice
        .post(&format!("{ADMIN}/v1/deactivate/{}", enc("@bob:elsewhere")), json!({}))
        .await
        .err(400, "M_INVALID_PARAM");
    let done = alice.post(&deactivate("bob"), json!({"erase": true})).await.ok();
    assert_eq!(done["id_server_unbind_result"], "success");
    bob.get("/_matrix/client/v3/account/whoami").await.err(401, "M_UNKNOWN_TOKEN");
    let joined = alice.get(&format!("{ADMIN}/v1/users/{}/joined_rooms", user("bob"))).await.ok();
    assert_eq!(joined["total"], 0, "{joined}");
    let details = alice.get(&format!("{ADMIN}/v2/users/{}", user("bob"))).await.ok();
    assert_eq!((details["deactivated"].as_bool(), details["erased"].as_bool()), (Some(true), Some(true)));
    // Listed only when asked for (v2), or only them (v3).
    assert_eq!(alice.get(&format!("{ADMIN}/v2/users")).await.ok()["total"], 1);
    assert_eq!(alice.get(&format!("{ADMIN}/v2/users?deactivated=true")).await.ok()["total"], 2);
    assert_eq!(alice.get(&format!("{ADMIN}/v3/users?deactivated=true")).await.ok()["total"], 1);
    let login = server.client().post("/_matrix/client/v3/login", login_body("bob", PASSWORD)).await;
    login.err(403, "M_USER_DEACTIVATED");
    // Reactivating needs a password.
    let path = format!("{ADMIN}/v2/users/{}", user("bob"));
    alice.put(&path, json!({"deactivated": false})).await.err(400, "M_MISSING_PARAM");
    alice.put(&path, json!({"deactivated": false, "password": "back-again"})).await.ok();
    let mut back = server.client();
    back.login("bob", "back-again").await;
}

async fn the_cli_manages_accounts(server: TestServer) {
    let made = cli(
        &server,
        true,
        UserCommand::Create { user: "ops".into(), password: Some("ops-pw-123".into()), displayname: None, admin: true },
    )
    .await;
    let made: Value = serde_json::from_str(made.trim()).unwrap();
    assert_eq!((made["name"].as_str(), made["admin"].as_bool()), (Some("@ops:localhost"), Some(true)));
    let mut ops = server.client();
    ops.login("ops", "ops-pw-123").await;
    ops.get(&format!("{ADMIN}/v2/users")).await.ok();

    server.user("zed").await;
    let list = |deactivated| UserCommand::List { name: None, deactivated, admins: false, from: 0, limit: 100 };
    let table = cli(&server, false, list(false)).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("USER"), "{table}");
    assert!(lines[1].starts_with("@ops:localhost") && lines[1].contains("yes"), "{table}");
    assert!(lines[2].starts_with("@zed:localhost"), "{table}");

    cli(
        &server,
        false,
        UserCommand::ResetPassword { user: "zed".into(), password: "zed-new-pw".into(), keep_devices: false },
    )
    .await;
    let mut zed = server.client();
    zed.login("zed", "zed-new-pw").await;
    cli(&server, false, UserCommand::Deactivate { user: "@zed:localhost".into(), erase: false }).await;
    zed.get("/_matrix/client/v3/account/whoami").await.err(401, "M_UNKNOWN_TOKEN");
    assert_eq!(cli(&server, true, list(false)).await.lines().count(), 1);
    assert_eq!(cli(&server, true, list(true)).await.lines().count(), 2);
}
