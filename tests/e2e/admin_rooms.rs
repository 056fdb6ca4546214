//! The operators' admin API for rooms (`/_synapse/admin/v1|v2/rooms...`) and event reports
//! (`/_synapse/admin/v1/event_reports`), and `trellis admin room`: for server admins only;
//! rooms listed, inspected whatever their visibility, blocked, an admin raised in a room;
//! rooms deleted (members out, aliases and directory entry gone, blocked) and purged from
//! every table that names them.

use serde_json::{Value, json};
use trellis_homeserver::{
    admin::{AdminArea, AdminCommand},
    admin_rooms::RoomCommand,
};
use trellis_testkit::{Client, TestServer, enc};

use crate::{
    admin_users::admin,
    rooms_support::{room_path, say},
};

both_modes!(
    only_admins_and_good_input,
    rooms_listed_and_inspected,
    blocking_and_making_room_admins,
    deletion_purges_every_row,
    deletion_moves_members_to_a_new_room,
    event_reports_listed_shown_and_deleted,
    the_cli_lists_and_deletes_rooms
);

const ROOMS: &str = "/_synapse/admin/v1/rooms";

fn room_admin(room: &str, rest: &str) -> String {
    format!("{ROOMS}/{}{rest}", enc(room))
}

async fn delete(client: &Client, path: &str, body: Value) -> trellis_testkit::Reply {
    client.request("DELETE", path, Some(body)).await
}

/// Waits until the deletion `delete_id` has finished; its last status.
async fn finished(admin: &Client, delete_id: &str) -> Value {
    let path = format!("/_synapse/admin/v2/rooms/delete_status/{delete_id}");
    for _ in 0..1200 {
        let status = admin.get(&path).await.ok();
        if status["status"] == "complete" || status["status"] == "failed" {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the deletion {delete_id} never finished");
}

async fn only_admins_and_good_input(server: TestServer) {
    let bob = server.user("bob").await;
    let room = bob.create_room(json!({})).await;
    for path in [
        ROOMS.to_owned(),
        room_admin(&room, ""),
        room_admin(&room, "/members"),
        room_admin(&room, "/state"),
        room_admin(&room, "/messages"),
        room_admin(&room, "/block"),
        format!("/_synapse/admin/v2/rooms/{}/delete_status", enc(&room)),
        "/_synapse/admin/v1/event_reports".to_owned(),
        "/_synapse/admin/v1/event_reports/1".to_owned(),
    ] {
        bob.get(&path).await.err(403, "M_FORBIDDEN");
    }
    bob.put(&room_admin(&room, "/block"), json!({"block": true})).await.err(403, "M_FORBIDDEN");
    bob.post(&room_admin(&room, "/make_room_admin"), json!({})).await.err(403, "M_FORBIDDEN");
    delete(&bob, &format!("/_synapse/admin/v2/rooms/{}", enc(&room)), json!({})).await.err(403, "M_FORBIDDEN");
    delete(&bob, &room_admin(&room, ""), json!({})).await.err(403, "M_FORBIDDEN");
    server.client().get(ROOMS).await.err(401, "M_MISSING_TOKEN");
    // Nothing was deleted by the refused request.
    assert_eq!(bob.get("/_matrix/client/v3/joined_rooms").await.ok()["joined_rooms"], json!([room]));

    let alice = admin(&server, "alice").await;
    for path in [room_admin("not-a-room", ""), room_admin("not-a-room", "/members"), room_admin("not-a-room", "/block")]
    {
        alice.get(&path).await.err(400, "M_INVALID_PARAM");
    }
    delete(&alice, "/_synapse/admin/v2/rooms/not-a-room", json!({})).await.err(400, "M_INVALID_PARAM");
    let unknown = "!unknown:localhost";
    for rest in ["", "/members", "/state", "/messages?dir=b"] {
        alice.get(&room_admin(unknown, rest)).await.err(404, "M_NOT_FOUND");
    }
    delete(&alice, &format!("/_synapse/admin/v2/rooms/{}", enc(unknown)), json!({})).await.err(404, "M_NOT_FOUND");
    alice.get(&format!("/_synapse/admin/v2/rooms/{}/delete_status", enc(unknown))).await.err(404, "M_NOT_FOUND");
    alice.get("/_synapse/admin/v2/rooms/delete_status/nope").await.err(404, "M_NOT_FOUND");
    alice.get(&format!("{ROOMS}?order_by=colour")).await.err(400, "M_INVALID_PARAM");
    alice.get(&format!("{ROOMS}?dir=x")).await.err(400, "M_INVALID_PARAM");
    alice.get(&format!("{ROOMS}?limit=-1")).await.err(400, "M_INVALID_PARAM");
    alice.get("/_synapse/admin/v1/event_reports/abc").await.err(400, "M_INVALID_PARAM");
    alice.get("/_synapse/admin/v1/event_reports/12345").await.err(404, "M_NOT_FOUND");
    delete(&alice, "/_synapse/admin/v1/event_reports/12345", json!({})).await.err(404, "M_NOT_FOUND");
    let to = json!({"user_id": "@someone:example.org"});
    alice.post(&room_admin(&room, "/make_room_admin"), to).await.err(400, "M_INVALID_PARAM");
    let new_room = json!({"new_room_user_id": "@someone:example.org"});
    delete(&alice, &format!("/_synapse/admin/v2/rooms/{}", enc(&room)), new_room).await.err(400, "M_INVALID_PARAM");
}

async fn rooms_listed_and_inspected(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let alpha = bob.create_room(json!({"name": "Alpha", "preset": "public_chat", "visibility": "public"})).await;
    carol.join(&alpha).await;
    let beta = bob.create_room(json!({"name": "Beta", "room_alias_name": "beta"})).await;
    let secret = say(&bob, &beta, "only for members").await;

    let listed = alice.get(ROOMS).await.ok();
    assert_eq!(listed["total_rooms"], 2, "{listed}");
    assert_eq!(listed["offset"], 0);
    assert!(listed.get("next_batch").is_none() && listed.get("prev_batch").is_none(), "{listed}");
    let names: Vec<&str> = listed["rooms"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Alpha", "Beta"]);
    let first = &listed["rooms"][0];
    assert_eq!((first["room_id"].as_str(), first["joined_members"].as_i64()), (Some(alpha.as_str()), Some(2)));
    assert_eq!((first["joined_local_members"].as_i64(), first["public"].as_bool()), (Some(2), Some(true)));
    assert_eq!((first["creator"].as_str(), first["join_rules"].as_str()), (Some(bob.user_id.as_str()), Some("public")));
    assert_eq!(listed["rooms"][1]["canonical_alias"], "#beta:localhost");

    let by_size = alice.get(&format!("{ROOMS}?order_by=joined_members&dir=b")).await.ok();
    assert_eq!(by_size["rooms"][0]["room_id"], beta.as_str(), "{by_size}");
    let page = alice.get(&format!("{ROOMS}?limit=1&from=1")).await.ok();
    assert_eq!((page["rooms"][0]["name"].as_str(), page["total_rooms"].as_i64()), (Some("Beta"), Some(2)));
    assert_eq!(page["prev_batch"], 0, "{page}");
    assert_eq!(alice.get(&format!("{ROOMS}?limit=1")).await.ok()["next_batch"], 1);
    let found = alice.get(&format!("{ROOMS}?search_term=ALP")).await.ok();
    assert_eq!((found["total_rooms"].as_i64(), found["rooms"][0]["name"].as_str()), (Some(1), Some("Alpha")));
    assert_eq!(alice.get(&format!("{ROOMS}?search_term=beta:local")).await.ok()["total_rooms"], 1);

    let details = alice.get(&room_admin(&alpha, "")).await.ok();
    assert_eq!((details["name"].as_str(), details["joined_members"].as_i64()), (Some("Alpha"), Some(2)));
    assert!(details["joined_local_devices"].as_i64().unwrap() >= 2, "{details}");
    assert!(details["state_events"].as_i64().unwrap() >= 5, "{details}");
    let members = alice.get(&room_admin(&alpha, "/members")).await.ok();
    let mut want = vec![bob.user_id.clone(), carol.user_id.clone()];
    want.sort();
    assert_eq!((members["members"].clone(), members["total"].as_i64()), (json!(want), Some(2)));
    let state = alice.get(&room_admin(&beta, "/state")).await.ok();
    assert!(state["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"), "{state}");

    // The admin reads a room it is not in, whatever its history visibility.
    alice.get(&room_path(&beta, "/messages?dir=b")).await.err(403, "M_FORBIDDEN");
    let history = alice.get(&room_admin(&beta, "/messages?dir=b&limit=5")).await.ok();
    assert_eq!(history["chunk"][0]["event_id"], secret.as_str(), "{history}");
    assert!(history["end"].is_string());
    let filtered = alice
        .get(&room_admin(&beta, &format!("/messages?dir=b&filter={}", enc(r#"{"types":["m.room.create"]}"#))))
        .await
        .ok();
    assert_eq!(filtered["chunk"].as_array().unwrap().len(), 1, "{filtered}");
}

async fn blocking_and_making_room_admins(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = bob.create_room(json!({"preset": "public_chat"})).await;
    assert_eq!(alice.get(&room_admin(&room, "/block")).await.ok(), json!({"block": false}));
    assert_eq!(alice.put(&room_admin(&room, "/block"), json!({"block": true})).await.ok(), json!({"block": true}));
    assert_eq!(alice.get(&room_admin(&room, "/block")).await.ok(), json!({"block": true, "user_id": alice.user_id}));
    carol.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.err(403, "M_FORBIDDEN");
    bob.post(&room_path(&room, "/invite"), json!({"user_id": carol.user_id})).await.err(403, "M_FORBIDDEN");
    assert_eq!(alice.put(&room_admin(&room, "/block"), json!({"block": false})).await.ok(), json!({"block": false}));
    carol.join(&room).await;
    // A room never seen may be blocked ahead of time.
    let later = "!later:localhost";
    alice.put(&room_admin(later, "/block"), json!({"block": true})).await.ok();
    assert_eq!(alice.get(&room_admin(later, "/block")).await.ok()["block"], true);

    // The admin is raised to the power of the room's most powerful local member.
    alice.post(&room_admin(&room, "/make_room_admin"), json!({})).await.ok();
    let levels = bob.get(&room_path(&room, "/state/m.room.power_levels/")).await.ok();
    assert_eq!(levels["users"][&alice.user_id], levels["users"][&bob.user_id], "{levels}");
    let joined = alice.get("/_matrix/client/v3/joined_rooms").await.ok();
    assert_eq!(joined["joined_rooms"], json!([room]));
    // In a private room, by alias, for another user: they are invited and raised.
    let private = bob.create_room(json!({"room_alias_name": "private"})).await;
    let by_alias = format!("{ROOMS}/{}/make_room_admin", enc("#private:localhost"));
    alice.post(&by_alias, json!({"user_id": carol.user_id})).await.ok();
    let levels = bob.get(&room_path(&private, "/state/m.room.power_levels/")).await.ok();
    assert_eq!(levels["users"][&carol.user_id], levels["users"][&bob.user_id], "{levels}");
    let member = bob.get(&room_path(&private, &format!("/state/m.room.member/{}", enc(&carol.user_id)))).await.ok();
    assert_eq!(member["membership"], "invite");
}

/// Every table with a `room_id` column, as the database lists them, and how many rows of
/// `room` each holds (the tables that keep a deleted room's block and record left out).
async fn rows_naming(server: &TestServer, room: &str, events: &[String]) -> Vec<(String, i64)> {
    let pool = trellis_storage::Target::new(server.database_url(), None).unwrap().pool(1).unwrap();
    let client = pool.get().await.unwrap();
    let tables = client
        .query(
            "SELECT c.table_name::text, EXISTS (SELECT 1 FROM information_schema.columns r \
               WHERE r.table_schema = c.table_schema AND r.table_name = c.table_name AND r.column_name = 'room_id') \
             FROM information_schema.columns c JOIN information_schema.tables t \
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
               AND c.column_name IN ('room_id', 'event_id') GROUP BY c.table_schema, c.table_name ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let mut counts = Vec::new();
    for row in tables {
        let (table, has_room): (String, bool) = (row.get(0), row.get(1));
        if table == "blocked_rooms" || table == "room_deletions" {
            continue;
        }
        let count: i64 = if has_room {
            client.query_one(&format!("SELECT count(*) FROM \"{table}\" WHERE room_id = $1"), &[&room]).await.unwrap()
        } else {
            client
                .query_one(&format!("SELECT count(*) FROM \"{table}\" WHERE event_id = ANY($1)"), &[&events])
                .await
                .unwrap()
        }
        .get(0);
        counts.push((table, count));
    }
    counts
}

async fn deletion_purges_every_row(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room =
        bob.create_room(json!({"preset": "public_chat", "visibility": "public", "room_alias_name": "doomed"})).await;
    carol.join(&room).await;
    // A few thousand events, and a row in each kind of table that names a room.
    let mut events = Vec::new();
    for batch in 0..25 {
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..100 {
            let (bob, room) = (bob.clone(), room.clone());
            sends.spawn(async move { say(&bob, &room, &format!("message {batch}-{i} for @carol")).await });
        }
        events.extend(sends.join_all().await);
    }
    let root = events[0].clone();
    let reply =
        json!({"msgtype": "m.text", "body": "in a thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
    carol.put(&room_path(&room, "/send/m.room.message/t1"), reply).await.ok();
    let reaction = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}});
    carol.put(&room_path(&room, "/send/m.reaction/t2"), reaction).await.ok();
    carol.post(&room_path(&room, &format!("/receipt/m.read/{}", enc(&root))), json!({})).await.ok();
    carol
        .put(
            &format!("/_matrix/client/v3/user/{}/rooms/{}/account_data/x.tag", enc(&carol.user_id), enc(&room)),
            json!({"a": 1}),
        )
        .await
        .ok();
    carol
        .put(&room_path(&room, &format!("/typing/{}", enc(&carol.user_id))), json!({"typing": true, "timeout": 30000}))
        .await
        .ok();
    carol.post(&room_path(&room, &format!("/report/{}", enc(&root))), json!({"reason": "spam"})).await.ok();
    let sync = carol.sync(None, None, 0).await;
    let since = sync["next_batch"].as_str().unwrap().to_owned();
    let before = rows_naming(&server, &room, &events).await;
    let filled: Vec<&str> = before.iter().filter(|(_, n)| *n > 0).map(|(t, _)| t.as_str()).collect();
    for table in [
        "events",
        "current_state",
        "memberships",
        "event_relations",
        "threads",
        "receipts",
        "content_reports",
        "event_search",
        "room_aliases",
        "rooms",
    ] {
        assert!(filled.contains(&table), "{table} holds no row of the room before the purge: {before:?}");
    }

    let started =
        delete(&alice, &format!("/_synapse/admin/v2/rooms/{}", enc(&room)), json!({"block": true})).await.ok();
    let delete_id = started["delete_id"].as_str().unwrap().to_owned();
    // The server keeps serving while the purge runs.
    alice.get("/_matrix/client/v3/account/whoami").await.ok();
    let status = finished(&alice, &delete_id).await;
    assert_eq!(status["status"], "complete", "{status}");
    let mut kicked: Vec<String> = serde_json::from_value(status["shutdown_room"]["kicked_users"].clone()).unwrap();
    kicked.sort();
    assert_eq!(kicked, [bob.user_id.clone(), carol.user_id.clone()]);
    assert_eq!(status["shutdown_room"]["local_aliases"], json!(["#doomed:localhost"]));
    let by_room = alice.get(&format!("/_synapse/admin/v2/rooms/{}/delete_status", enc(&room))).await.ok();
    assert_eq!(
        (by_room["results"][0]["delete_id"].as_str(), by_room["results"][0]["status"].as_str()),
        (Some(delete_id.as_str()), Some("complete"))
    );

    let left: Vec<(String, i64)> =
        rows_naming(&server, &room, &events).await.into_iter().filter(|(_, n)| *n > 0).collect();
    assert!(left.is_empty(), "rows of the purged room remain: {left:?}");

    // The room is gone everywhere (its leave events with it) and stays blocked.
    let after = carol.sync(Some(&since), None, 0).await;
    assert!(after["rooms"]["join"].get(&room).is_none(), "{after}");
    let fresh = carol.sync(None, None, 0).await;
    assert!(fresh["rooms"]["join"].get(&room).is_none() && fresh["rooms"]["leave"].get(&room).is_none(), "{fresh}");
    assert_eq!(bob.get("/_matrix/client/v3/joined_rooms").await.ok()["joined_rooms"], json!([]));
    bob.get(&format!("/_matrix/client/v3/directory/room/{}", enc("#doomed:localhost"))).await.err(404, "M_NOT_FOUND");
    let public = bob.get("/_matrix/client/v3/publicRooms").await.ok();
    assert_eq!(public["chunk"], json!([]), "{public}");
    alice.get(&room_admin(&room, "")).await.err(404, "M_NOT_FOUND");
    assert_eq!(alice.get(ROOMS).await.ok()["total_rooms"], 0);
    assert_eq!(alice.get(&room_admin(&room, "/block")).await.ok()["block"], true);
    carol.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.err(403, "M_FORBIDDEN");
    // The server goes on creating and using rooms.
    let next_room = bob.create_room(json!({})).await;
    say(&bob, &next_room, "still here").await;
}

async fn deletion_moves_members_to_a_new_room(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = bob.create_room(json!({"preset": "public_chat", "room_alias_name": "moving"})).await;
    carol.join(&room).await;
    say(&carol, &room, "hello").await;
    // v1 answers once done; without purge the history stays.
    let body =
        json!({"new_room_user_id": alice.user_id, "room_name": "Closed", "message": "Moved here", "purge": false});
    let done = delete(&alice, &room_admin(&room, ""), body).await.ok();
    let mut kicked: Vec<String> = serde_json::from_value(done["kicked_users"].clone()).unwrap();
    kicked.sort();
    assert_eq!(kicked, [bob.user_id.clone(), carol.user_id.clone()], "{done}");
    assert_eq!(done["failed_to_kick_users"], json!([]));
    assert_eq!(done["local_aliases"], json!(["#moving:localhost"]));
    let new_room = done["new_room_id"].as_str().unwrap().to_owned();
    assert_eq!(carol.get("/_matrix/client/v3/joined_rooms").await.ok()["joined_rooms"], json!([new_room]));
    let name = carol.get(&room_path(&new_room, "/state/m.room.name/")).await.ok();
    assert_eq!(name["name"], "Closed");
    let history = carol.get(&room_path(&new_room, "/messages?dir=b")).await.ok();
    assert!(history["chunk"].as_array().unwrap().iter().any(|e| e["content"]["body"] == "Moved here"), "{history}");
    // The alias now leads to the new room; the old room is kept, with nobody in it.
    let alias = bob.get(&format!("/_matrix/client/v3/directory/room/{}", enc("#moving:localhost"))).await.ok();
    assert_eq!(alias["room_id"], new_room.as_str());
    let details = alice.get(&room_admin(&room, "")).await.ok();
    assert_eq!(details["joined_members"], 0, "{details}");
    assert!(
        alice.get(&room_admin(&room, "/messages?dir=b")).await.ok()["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["content"]["body"] == "hello")
    );
    // Not blocked: bob may come back.
    bob.join(&room).await;
}

async fn event_reports_listed_shown_and_deleted(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = bob.create_room(json!({"preset": "public_chat", "name": "Reported"})).await;
    carol.join(&room).await;
    let rude = say(&bob, &room, "rude").await;
    let ruder = say(&bob, &room, "ruder").await;
    carol.post(&room_path(&room, &format!("/report/{}", enc(&rude))), json!({"reason": "first"})).await.ok();
    bob.post(&room_path(&room, &format!("/report/{}", enc(&ruder))), json!({"reason": "second"})).await.ok();
    // Reports of rooms and users are not event reports.
    carol.post(&room_path(&room, "/report"), json!({"reason": "room"})).await.ok();

    const REPORTS: &str = "/_synapse/admin/v1/event_reports";
    let listed = alice.get(REPORTS).await.ok();
    assert_eq!(listed["total"], 2, "{listed}");
    assert!(listed.get("next_token").is_none(), "{listed}");
    // Newest first by default.
    let newest = &listed["event_reports"][0];
    assert_eq!((newest["event_id"].as_str(), newest["reason"].as_str()), (Some(ruder.as_str()), Some("second")));
    assert_eq!(
        (newest["user_id"].as_str(), newest["sender"].as_str()),
        (Some(bob.user_id.as_str()), Some(bob.user_id.as_str()))
    );
    assert_eq!((newest["room_id"].as_str(), newest["name"].as_str()), (Some(room.as_str()), Some("Reported")));
    let oldest = alice.get(&format!("{REPORTS}?dir=f&limit=1")).await.ok();
    assert_eq!(
        (oldest["event_reports"][0]["event_id"].as_str(), oldest["next_token"].as_i64()),
        (Some(rude.as_str()), Some(1))
    );
    let by_carol = alice.get(&format!("{REPORTS}?user_id={}", enc(&carol.user_id))).await.ok();
    assert_eq!((by_carol["total"].as_i64(), by_carol["event_reports"][0]["reason"].as_str()), (Some(1), Some("first")));
    assert_eq!(alice.get(&format!("{REPORTS}?room_id={}", enc("!other:localhost"))).await.ok()["total"], 0);

    let id = by_carol["event_reports"][0]["id"].as_i64().unwrap();
    let shown = alice.get(&format!("{REPORTS}/{id}")).await.ok();
    assert_eq!(
        (shown["reason"].as_str(), shown["event_json"]["content"]["body"].as_str()),
        (Some("first"), Some("rude"))
    );
    assert_eq!(delete(&alice, &format!("{REPORTS}/{id}"), json!({})).await.ok(), json!({}));
    alice.get(&format!("{REPORTS}/{id}")).await.err(404, "M_NOT_FOUND");
    assert_eq!(alice.get(REPORTS).await.ok()["total"], 1);
}

/// Runs `trellis admin room ...` on the server's database (and its rooms service, when
/// given); what it printed, or its error.
async fn cli(
    server: &TestServer,
    json: bool,
    command: RoomCommand,
    rooms_url: Option<String>,
) -> Result<String, String> {
    let mut config = trellis_core::config::Config { server_name: "localhost".into(), ..Default::default() };
    config.database.url = server.database_url().to_owned();
    config.remote.rooms = rooms_url;
    let mut out = Vec::new();
    let command = AdminCommand { json, command: AdminArea::Room(command) };
    trellis_homeserver::admin::run_to(&config, command, &mut out).await.map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8(out).unwrap())
}

async fn the_cli_lists_and_deletes_rooms(server: TestServer) {
    let bob = server.user("bob").await;
    let garden = bob.create_room(json!({"name": "Garden"})).await;
    bob.create_room(json!({"name": "Kitchen"})).await;
    for i in 0..50 {
        say(&bob, &garden, &format!("leaf {i}")).await;
    }
    let list = |search: Option<&str>| RoomCommand::List {
        search: search.map(str::to_owned),
        order_by: None,
        from: 0,
        limit: 100,
    };
    let table = cli(&server, false, list(None), None).await.unwrap();
    assert!(table.starts_with("ROOM") && table.contains("Garden") && table.contains("Kitchen"), "{table}");
    let lines = cli(&server, true, list(Some("gar")), None).await.unwrap();
    let found: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(found.len(), 1, "{lines}");
    assert_eq!((found[0]["room_id"].as_str(), found[0]["joined_members"].as_i64()), (Some(garden.as_str()), Some(1)));
    let bad = RoomCommand::List { search: None, order_by: Some("colour".into()), from: 0, limit: 10 };
    assert!(cli(&server, false, bad, None).await.unwrap_err().contains("order_by"));

    let deleting = || RoomCommand::Delete { room: garden.clone(), no_purge: false, block: true, force_purge: false };
    // Deleting needs the running rooms service.
    let refused = cli(&server, false, deleting(), None).await.unwrap_err();
    assert!(refused.contains("remote.rooms"), "{refused}");
    if !server.node_names().iter().any(|n| n == "rooms") {
        return;
    }
    let url = Some(server.grpc_url("rooms"));
    let done = cli(&server, true, deleting(), url.clone()).await.unwrap();
    let done: Value = serde_json::from_str(done.trim()).unwrap();
    assert_eq!(
        (done["status"].as_str(), done["kicked_users"].clone()),
        (Some("complete"), json!([bob.user_id])),
        "{done}"
    );
    assert!(done["purged_rows"].as_i64().unwrap() > 50, "{done}");
    let lines = cli(&server, true, list(None), None).await.unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    let unknown =
        RoomCommand::Delete { room: "!gone:localhost".into(), no_purge: false, block: false, force_purge: false };
    let refused = cli(&server, false, unknown, url).await.unwrap_err();
    assert!(refused.contains("not found"), "{refused}");
}

/// A purge of 100,000 events, measured by hand (the figure is in `docs/admin.md`):
/// `cargo nextest run -p trellis-e2e --run-ignored only -E 'test(/purge_of_100k/)' --no-capture`.
/// The events are copies of one real message planted behind the server's back (with their
/// search rows); the server is asked `whoami` all along to show it keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn purge_of_100k_events_measured() {
    use std::time::{Duration, Instant};
    let server = TestServer::monolith().await;
    let alice = admin(&server, "alice").await;
    let room = alice.create_room(json!({})).await;
    let seed = say(&alice, &room, "seed").await;
    let planted = server
        .sql(&format!(
            "INSERT INTO events (pos, event_id, room_id, sender, type, depth, origin_server_ts, content, unsigned_json, pdu) \
             SELECT 1000000000 + g, '$planted' || g, room_id, sender, type, depth + g, origin_server_ts, content, \
               unsigned_json, pdu FROM events, generate_series(1, 100000) g WHERE event_id = '{seed}'"
        ))
        .await;
    server
        .sql(&format!(
            "INSERT INTO event_search (event_id, room_id, pos, key, value, vector) \
             SELECT '$planted' || g, room_id, 1000000000 + g, key, value, vector \
             FROM event_search, generate_series(1, 100000) g WHERE event_id = '{seed}'"
        ))
        .await;
    assert_eq!(planted, 100_000);

    let started = Instant::now();
    let body = json!({"force_purge": true});
    let delete_id = delete(&alice, &format!("/_synapse/admin/v2/rooms/{}", enc(&room)), body).await.ok()["delete_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut slowest, mut asked) = (Duration::ZERO, 0);
    let status = loop {
        let t = Instant::now();
        alice.get("/_matrix/client/v3/account/whoami").await.ok();
        slowest = slowest.max(t.elapsed());
        asked += 1;
        let status = alice.get(&format!("/_synapse/admin/v2/rooms/delete_status/{delete_id}")).await.ok();
        if status["status"] == "complete" || status["status"] == "failed" {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = started.elapsed();
    assert_eq!(status["status"], "complete", "{status}");
    let left = rows_naming(&server, &room, &[seed]).await.into_iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>();
    assert!(left.is_empty(), "{left:?}");
    eprintln!("purged 100,000 events in {took:?}; {asked} whoami requests meanwhile, the slowest {slowest:?}");
}
