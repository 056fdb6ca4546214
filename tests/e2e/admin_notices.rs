//! Server notices (Synapse's `POST /_synapse/admin/v1/send_server_notice`): with
//! `[server_notices]` configured, an admin's notice reaches the user from the system user in
//! a private room tagged `m.server_notice`, where the user reads but may not write; later
//! notices go to the same room; a transaction ID makes a retry harmless. Off unless
//! configured; only admins; bad input refused.

use serde_json::{Value, json};
use trellis_core::config::Config;
use trellis_homeserver::{
    admin::{AdminArea, AdminCommand},
    admin_notices::NoticeCommand,
};
use trellis_testkit::{TestServer, enc};

use super::admin_users::admin;

fn notices_on(config: &mut Config) {
    config.server_notices.system_mxid_localpart = Some("notices".into());
    config.server_notices.system_mxid_display_name = Some("Server Notices".into());
}

both_modes!(configured notices_on; notices_reach_the_user, the_cli_sends_notices);

const SEND: &str = "/_synapse/admin/v1/send_server_notice";
const V3: &str = "/_matrix/client/v3";

fn text(body: &str) -> serde_json::Value {
    json!({"user_id": "@bob:localhost", "content": {"msgtype": "m.text", "body": body}})
}

async fn notices_reach_the_user(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    bob.post(SEND, text("hi")).await.err(403, "M_FORBIDDEN");

    let first = alice.post(SEND, text("Maintenance at five")).await.ok();
    let event_id = first["event_id"].as_str().unwrap().to_owned();
    let synced = bob.sync(None, None, 0).await;
    let invites = synced["rooms"]["invite"].as_object().unwrap();
    assert_eq!(invites.len(), 1, "{synced}");
    let room = invites.keys().next().unwrap().clone();
    let tags = bob.get(&format!("{V3}/user/{}/rooms/{}/tags", enc("@bob:localhost"), enc(&room))).await.ok();
    assert!(tags["tags"].get("m.server_notice").is_some(), "{tags}");
    bob.join(&room).await;
    let notice = bob.get(&format!("{V3}/rooms/{}/event/{}", enc(&room), enc(&event_id))).await.ok();
    assert_eq!(
        (notice["sender"].as_str(), notice["content"]["body"].as_str()),
        (Some("@notices:localhost"), Some("Maintenance at five"))
    );
    let name = bob.get(&format!("{V3}/rooms/{}/state/m.room.name/", enc(&room))).await.ok();
    assert_eq!(name["name"], "Server Notices");
    // The user reads but does not write there.
    let send = format!("{V3}/rooms/{}/send/m.room.message/t1", enc(&room));
    bob.put(&send, json!({"msgtype": "m.text", "body": "no"})).await.err(403, "M_FORBIDDEN");

    // The next notice goes to the same room; a retried transaction is the same event.
    let txn = format!("{SEND}/txn-1");
    let second = alice.put(&txn, text("Done")).await.ok();
    assert_eq!(alice.put(&txn, text("Done")).await.ok(), second);
    let event =
        bob.get(&format!("{V3}/rooms/{}/event/{}", enc(&room), enc(second["event_id"].as_str().unwrap()))).await;
    assert_eq!(event.ok()["content"]["body"], "Done");

    // Bad input.
    let unknown = json!({"user_id": "@nobody:localhost", "content": {"body": "x"}});
    alice.post(SEND, unknown).await.err(404, "M_NOT_FOUND");
    let remote = json!({"user_id": "@bob:elsewhere", "content": {"body": "x"}});
    alice.post(SEND, remote).await.err(400, "M_INVALID_PARAM");
    alice.post(SEND, json!({"user_id": "@bob:localhost", "content": "text"})).await.err(400, "M_BAD_JSON");
    alice.post(SEND, json!({"content": {"body": "x"}})).await.err(400, "M_BAD_JSON");
}

/// `trellis admin notice send` against the server's rooms service at `rooms_url`.
async fn cli(
    server: &TestServer,
    json: bool,
    user: &str,
    message: &str,
    rooms_url: Option<String>,
) -> Result<String, String> {
    let mut config = Config { server_name: "localhost".into(), ..Default::default() };
    config.database.url = server.database_url().to_owned();
    config.remote.rooms = rooms_url;
    let mut out = Vec::new();
    let send = NoticeCommand::Send { user: user.into(), message: message.into() };
    let command = AdminCommand { json, command: AdminArea::Notice(send) };
    trellis_homeserver::admin::run_to(&config, command, &mut out).await.map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8(out).unwrap())
}

async fn the_cli_sends_notices(server: TestServer) {
    let bob = server.user("bob").await;
    // It needs the running server's rooms service.
    let refused = cli(&server, false, "bob", "hi", None).await.unwrap_err();
    assert!(refused.contains("remote.rooms"), "{refused}");
    if !server.node_names().iter().any(|n| n == "rooms") {
        return;
    }
    let url = Some(server.grpc_url("rooms"));
    let first = cli(&server, true, "bob", "Upgrade tonight", url.clone()).await.unwrap();
    let first: Value = serde_json::from_str(first.trim()).unwrap();
    assert_eq!((first["user_id"].as_str(), first["created_room"].as_bool()), (Some("@bob:localhost"), Some(true)));
    let room = first["room_id"].as_str().unwrap().to_owned();
    // The same room, tagged for bob, with the notice from the system user.
    let tags = bob.get(&format!("{V3}/user/{}/rooms/{}/tags", enc("@bob:localhost"), enc(&room))).await.ok();
    assert!(tags["tags"].get("m.server_notice").is_some(), "{tags}");
    bob.join(&room).await;
    let event = first["event_id"].as_str().unwrap();
    let notice = bob.get(&format!("{V3}/rooms/{}/event/{}", enc(&room), enc(event))).await.ok();
    assert_eq!(
        (notice["sender"].as_str(), notice["content"]["body"].as_str()),
        (Some("@notices:localhost"), Some("Upgrade tonight"))
    );
    let line = cli(&server, false, "@bob:localhost", "Done", url.clone()).await.unwrap();
    assert!(line.starts_with("Sent $") && line.contains(&format!("the notices room {room}")), "{line}");
    // An unknown user.
    let refused = cli(&server, false, "nobody", "hi", url).await.unwrap_err();
    assert!(refused.to_lowercase().contains("not found"), "{refused}");
}

mod off {
    use super::*;

    both_modes!(notices_are_off_unless_configured);

    async fn notices_are_off_unless_configured(server: TestServer) {
        let alice = admin(&server, "alice").await;
        server.user("bob").await;
        alice.post(SEND, text("hi")).await.err(400, "M_UNKNOWN");
    }
}
