//! Custom profile fields (spec 1.16): `m.tz` and namespaced keys beside the name and avatar,
//! read one by one or with the whole profile, removed with `DELETE`, within the spec's
//! limits on keys and size.

use serde_json::{Value, json};
use trellis_testkit::{TestServer, enc};

both_modes!(custom_profile_fields, profile_field_limits_and_permissions);

fn field(user: &str, key: &str) -> String {
    format!("/_matrix/client/v3/profile/{}/{}", enc(user), enc(key))
}

async fn custom_profile_fields(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice.put(&field(&alice.user_id, "m.tz"), json!({"m.tz": "Europe/Paris"})).await.ok();
    alice
        .put(&field(&alice.user_id, "com.example.pronouns"), json!({"com.example.pronouns": {"en": ["she"]}}))
        .await
        .ok();
    alice.put(&field(&alice.user_id, "org.example.empty"), json!({"org.example.empty": null})).await.ok();

    assert_eq!(bob.get(&field(&alice.user_id, "m.tz")).await.ok(), json!({"m.tz": "Europe/Paris"}));
    assert_eq!(
        bob.get(&field(&alice.user_id, "com.example.pronouns")).await.ok(),
        json!({"com.example.pronouns": {"en": ["she"]}})
    );
    let whole = bob.get(&format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id))).await.ok();
    assert_eq!(whole["displayname"], "alice", "{whole}");
    assert_eq!(whole["m.tz"], "Europe/Paris");
    assert_eq!(whole["org.example.empty"], Value::Null, "null is kept, not a deletion");
    assert!(whole.as_object().unwrap().contains_key("org.example.empty"));

    // The name goes through the same endpoint, and still reaches the rooms.
    let room = alice.create_room(json!({})).await;
    alice.put(&field(&alice.user_id, "displayname"), json!({"displayname": "Alice A."})).await.ok();
    let unstable = format!("/_matrix/client/unstable/uk.tcpip.msc4133/profile/{}/displayname", enc(&alice.user_id));
    assert_eq!(bob.get(&unstable).await.ok(), json!({"displayname": "Alice A."}));
    let member = alice
        .get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc(&alice.user_id)))
        .await
        .ok();
    assert_eq!(member["displayname"], "Alice A.");

    alice.request("DELETE", &field(&alice.user_id, "m.tz"), None).await.ok();
    bob.get(&field(&alice.user_id, "m.tz")).await.err(404, "M_NOT_FOUND");
    alice.request("DELETE", &field(&alice.user_id, "m.tz"), None).await.ok();
    alice.request("DELETE", &field(&alice.user_id, "displayname"), None).await.ok();
    let whole = bob.get(&format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id))).await.ok();
    assert!(whole.get("displayname").is_none() && whole.get("m.tz").is_none(), "{whole}");
    assert_eq!(whole["com.example.pronouns"]["en"][0], "she");
    bob.get(&field("@nobody:localhost", "m.tz")).await.err(404, "M_NOT_FOUND");
    let caps = bob.get("/_matrix/client/v3/capabilities").await.ok();
    assert_eq!(caps["capabilities"]["m.profile_fields"]["enabled"], true, "{caps}");
}

async fn profile_field_limits_and_permissions(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let me = alice.user_id.clone();
    bob.put(&field(&me, "m.tz"), json!({"m.tz": "UTC"})).await.err(403, "M_FORBIDDEN");
    bob.request("DELETE", &field(&me, "m.tz"), None).await.err(403, "M_FORBIDDEN");
    alice.put(&field(&me, "m.tz"), json!({"other": "UTC"})).await.err(400, "M_MISSING_PARAM");
    alice.put(&field(&me, "m.tz"), json!({"m.tz": 5})).await.err(400, "M_BAD_JSON");
    alice.put(&field(&me, "NotNamespaced"), json!({"NotNamespaced": 1})).await.err(400, "M_INVALID_PARAM");
    alice.put(&field(&me, "m.unknown"), json!({"m.unknown": 1})).await.err(400, "M_INVALID_PARAM");
    let long = format!("com.{}", "a".repeat(300));
    alice.put(&field(&me, &long), json!({ long.clone(): 1 })).await.err(400, "M_KEY_TOO_LARGE");
    let big = "x".repeat(40 * 1024);
    alice.put(&field(&me, "com.example.one"), json!({"com.example.one": big})).await.ok();
    alice.put(&field(&me, "com.example.two"), json!({"com.example.two": big})).await.err(400, "M_PROFILE_TOO_LARGE");
    // The refused field was not stored.
    alice.get(&field(&me, "com.example.two")).await.err(404, "M_NOT_FOUND");
    server.client().put(&field(&me, "m.tz"), json!({"m.tz": "UTC"})).await.err(401, "M_MISSING_TOKEN");
}
