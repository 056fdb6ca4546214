//! The registration token admin API (`/_synapse/admin/v1/registration_tokens`): the auth
//! service's registration token operations (the same the CLI uses), for server admins.

use serde_json::json;
use trellis_testkit::TestServer;

use trellis_homeserver::{
    admin::{AdminArea, AdminCommand},
    registration_tokens::TokenCommand,
};

use crate::admin_users::admin;

both_modes!(registration_tokens_managed, only_admins_manage_tokens, the_cli_manages_tokens);

const TOKENS: &str = "/_synapse/admin/v1/registration_tokens";

async fn registration_tokens_managed(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let named = alice.post(&format!("{TOKENS}/new"), json!({"token": "door-1", "uses_allowed": 1})).await.ok();
    assert_eq!(named, json!({"token": "door-1", "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": null}));
    let random = alice.post(&format!("{TOKENS}/new"), json!({"length": 24})).await.ok();
    assert_eq!(random["token"].as_str().unwrap().len(), 24, "{random}");
    assert_eq!(alice.post(&format!("{TOKENS}/new"), json!({})).await.ok()["token"].as_str().unwrap().len(), 16);

    let all = alice.get(TOKENS).await.ok();
    assert_eq!(all["registration_tokens"].as_array().unwrap().len(), 3, "{all}");
    // Used up: listed only as not valid.
    alice.put(&format!("{TOKENS}/door-1"), json!({"uses_allowed": 0})).await.ok();
    let invalid = alice.get(&format!("{TOKENS}?valid=false")).await.ok();
    assert_eq!(invalid["registration_tokens"][0]["token"], "door-1", "{invalid}");
    assert_eq!(
        alice.get(&format!("{TOKENS}?valid=true")).await.ok()["registration_tokens"].as_array().unwrap().len(),
        2
    );
    // `null` is unlimited; a field left out stays.
    let expiry = trellis_core::time::now_ms() + 3_600_000;
    alice.put(&format!("{TOKENS}/door-1"), json!({"expiry_time": expiry})).await.ok();
    let open = alice.put(&format!("{TOKENS}/door-1"), json!({"uses_allowed": null})).await.ok();
    assert_eq!((open["uses_allowed"].clone(), open["expiry_time"].as_i64()), (json!(null), Some(expiry)), "{open}");
    assert_eq!(alice.get(&format!("{TOKENS}/door-1")).await.ok()["token"], "door-1");

    // Bad input.
    alice.post(&format!("{TOKENS}/new"), json!({"token": "door-1"})).await.err(400, "M_INVALID_PARAM");
    alice.post(&format!("{TOKENS}/new"), json!({"token": "no spaces"})).await.err(400, "M_INVALID_PARAM");
    alice.post(&format!("{TOKENS}/new"), json!({"length": 65})).await.err(400, "M_INVALID_PARAM");
    alice.post(&format!("{TOKENS}/new"), json!({"uses_allowed": -1})).await.err(400, "M_INVALID_PARAM");
    alice.post(&format!("{TOKENS}/new"), json!({"expiry_time": 1})).await.err(400, "M_INVALID_PARAM");
    alice.get(&format!("{TOKENS}?valid=maybe")).await.err(400, "M_INVALID_PARAM");

    alice.request("DELETE", &format!("{TOKENS}/door-1"), None).await.ok();
    alice.get(&format!("{TOKENS}/door-1")).await.err(404, "M_NOT_FOUND");
    alice.request("DELETE", &format!("{TOKENS}/door-1"), None).await.err(404, "M_NOT_FOUND");
    alice.put(&format!("{TOKENS}/door-1"), json!({})).await.err(404, "M_NOT_FOUND");
}

async fn only_admins_manage_tokens(server: TestServer) {
    let bob = server.user("bob").await;
    bob.post(&format!("{TOKENS}/new"), json!({})).await.err(403, "M_FORBIDDEN");
    bob.request("DELETE", &format!("{TOKENS}/x"), None).await.err(403, "M_FORBIDDEN");
    server.client().get(TOKENS).await.err(401, "M_MISSING_TOKEN");
}

/// `trellis admin token ...` on the server's database.
async fn cli(server: &TestServer, json: bool, command: TokenCommand) -> String {
    let mut config = trellis_core::config::Config { server_name: "localhost".into(), ..Default::default() };
    config.database.url = server.database_url().to_owned();
    let mut out = Vec::new();
    let command = AdminCommand { json, command: AdminArea::Token(command) };
    trellis_homeserver::admin::run_to(&config, command, &mut out).await.expect("the command succeeds");
    String::from_utf8(out).unwrap()
}

async fn the_cli_manages_tokens(server: TestServer) {
    let create =
        TokenCommand::Create { token: Some("door-2".into()), length: None, uses_allowed: Some(2), expiry_time: None };
    let made: serde_json::Value = serde_json::from_str(cli(&server, true, create).await.trim()).unwrap();
    assert_eq!(made, json!({"token": "door-2", "uses_allowed": 2, "pending": 0, "completed": 0, "expiry_time": null}));
    let table = cli(&server, false, TokenCommand::List { valid: None }).await;
    assert!(table.starts_with("TOKEN") && table.lines().nth(1).unwrap().starts_with("door-2"), "{table}");
    // The server sees it, and then no more.
    let alice = admin(&server, "alice").await;
    assert_eq!(alice.get(&format!("{TOKENS}/door-2")).await.ok()["uses_allowed"], 2);
    cli(&server, false, TokenCommand::Delete { token: "door-2".into() }).await;
    alice.get(&format!("{TOKENS}/door-2")).await.err(404, "M_NOT_FOUND");
    assert_eq!(cli(&server, true, TokenCommand::List { valid: None }).await, "");
}
