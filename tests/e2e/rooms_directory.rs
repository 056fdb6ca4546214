//! Aliases and the room directory over HTTP.

use serde_json::json;
use trellis_testkit::{TestServer, enc};

use crate::rooms_support::room_path;

both_modes!(aliases_and_canonical_alias, published_room_directory);

fn alias_path(alias: &str) -> String {
    format!("/_matrix/client/v3/directory/room/{}", enc(alias))
}

async fn aliases_and_canonical_alias(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;

    bob.put(&alias_path("#bobs:localhost"), json!({"room_id": room})).await.err(403, "M_FORBIDDEN");
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    bob.put(&alias_path("#bobs:localhost"), json!({"room_id": room})).await.ok();
    alice.put(&alias_path("#bobs:localhost"), json!({"room_id": room})).await.err(409, "M_UNKNOWN");
    alice.put(&alias_path("#x:elsewhere.example"), json!({"room_id": room})).await.err(400, "M_INVALID_PARAM");
    alice.put(&alias_path("#main:localhost"), json!({"room_id": room})).await.ok();
    let resolved = alice.get(&alias_path("#main:localhost")).await.ok();
    assert_eq!(resolved, json!({"room_id": room, "servers": ["localhost"]}));
    let listed = bob.get(&room_path(&room, "/aliases")).await.ok();
    assert_eq!(listed["aliases"], json!(["#bobs:localhost", "#main:localhost"]));
    let outsider = server.user("carol").await;
    outsider.get(&room_path(&room, "/aliases")).await.err(403, "M_FORBIDDEN");

    let canonical = room_path(&room, "/state/m.room.canonical_alias");
    alice.put(&canonical, json!({"alias": "#missing:localhost"})).await.err(400, "M_BAD_ALIAS");
    alice.put(&canonical, json!({"alias": "not an alias"})).await.err(400, "M_INVALID_PARAM");
    alice.put(&canonical, json!({"alias": "#main:localhost", "alt_aliases": ["#bobs:localhost"]})).await.ok();

    bob.request("DELETE", &alias_path("#main:localhost"), None).await.err(403, "M_FORBIDDEN");
    alice.request("DELETE", &alias_path("#main:localhost"), None).await.ok();
    alice.get(&alias_path("#main:localhost")).await.err(404, "M_NOT_FOUND");
    alice.request("DELETE", &alias_path("#main:localhost"), None).await.err(404, "M_NOT_FOUND");
    assert_eq!(alice.get(&canonical).await.ok(), json!({"alt_aliases": ["#bobs:localhost"]}));
}

async fn published_room_directory(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let tea = alice
        .create_room(json!({"visibility": "public", "name": "Tea", "topic": "leaves", "room_alias_name": "tea"}))
        .await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&tea)), json!({})).await.ok();
    let hidden = alice.create_room(json!({"preset": "public_chat", "name": "Coffee"})).await;
    let list = |c: &trellis_testkit::Client, path: &'static str| {
        let c = c.clone();
        async move { c.get(path).await.ok() }
    };

    // Unauthenticated GET works; only published rooms are listed.
    let anon = server.client();
    let listing = list(&anon, "/_matrix/client/v3/publicRooms").await;
    assert_eq!(listing["total_room_count_estimate"], 1);
    let entry = &listing["chunk"][0];
    assert_eq!(entry["room_id"], tea.as_str());
    assert_eq!((entry["name"].as_str(), entry["topic"].as_str()), (Some("Tea"), Some("leaves")));
    assert_eq!(
        (entry["canonical_alias"].as_str(), entry["num_joined_members"].as_i64()),
        (Some("#tea:localhost"), Some(2))
    );

    let visibility = format!("/_matrix/client/v3/directory/list/room/{}", enc(&hidden));
    assert_eq!(anon.get(&visibility).await.ok()["visibility"], "private");
    bob.put(&visibility, json!({"visibility": "public"})).await.err(403, "M_FORBIDDEN");
    alice.put(&visibility, json!({"visibility": "public"})).await.ok();
    assert_eq!(anon.get(&visibility).await.ok()["visibility"], "public");
    anon.get("/_matrix/client/v3/directory/list/room/!nope:localhost").await.err(404, "M_NOT_FOUND");

    let page = list(&anon, "/_matrix/client/v3/publicRooms?limit=1").await;
    assert_eq!((page["chunk"].as_array().unwrap().len(), page["total_room_count_estimate"].as_i64()), (1, Some(2)));
    let next = page["next_batch"].as_str().unwrap();
    let rest = anon.get(&format!("/_matrix/client/v3/publicRooms?limit=1&since={next}")).await.ok();
    assert_eq!(rest["chunk"][0]["room_id"], hidden.as_str());
    assert!(rest["prev_batch"].is_string() && rest.get("next_batch").is_none());

    let found = alice
        .post("/_matrix/client/v3/publicRooms", json!({"filter": {"generic_search_term": "coff"}, "limit": 5}))
        .await
        .ok();
    assert_eq!(found["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(found["chunk"][0]["name"], "Coffee");
    anon.post("/_matrix/client/v3/publicRooms", json!({})).await.err(401, "M_MISSING_TOKEN");
    anon.get("/_matrix/client/v3/publicRooms?since=bogus").await.err(400, "M_INVALID_PARAM");
}
