//! Profiles: a display name or avatar change is visible in `/profile` and rewrites the
//! user's member event in every joined room.

use serde_json::json;
use trellis_testkit::{TestServer, enc};

both_modes!(profile_changes_reach_member_events);

async fn profile_changes_reach_member_events(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let mut bob = server.client();
    bob.register("bob", "pw").await;
    let profile = alice.get("/_matrix/client/v3/profile/@alice:localhost").await.ok();
    assert_eq!(profile["displayname"], "alice", "the localpart is the default display name");

    let room_a = alice.create_room(json!({"preset": "public_chat"})).await;
    let room_b = alice.create_room(json!({})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room_a)), json!({})).await.ok();
    let since = bob.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    alice.put("/_matrix/client/v3/profile/@alice:localhost/displayname", json!({"displayname": "Alice A."})).await.ok();
    alice
        .put("/_matrix/client/r0/profile/@alice:localhost/avatar_url", json!({"avatar_url": "mxc://localhost/abc"}))
        .await
        .ok();
    let p = bob.get("/_matrix/client/v3/profile/@alice:localhost").await.ok();
    assert_eq!(p, json!({"displayname": "Alice A.", "avatar_url": "mxc://localhost/abc"}));
    assert_eq!(
        bob.get("/_matrix/client/v3/profile/@alice:localhost/displayname").await.ok()["displayname"],
        "Alice A."
    );

    for room in [&room_a, &room_b] {
        let member = alice
            .get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(room), enc("@alice:localhost")))
            .await
            .ok();
        assert_eq!(member["displayname"], "Alice A.");
        assert_eq!(member["avatar_url"], "mxc://localhost/abc");
        assert_eq!(member["membership"], "join");
    }
    // Bob sees the new member events in sync.
    let body = bob.sync(Some(&since), None, 0).await;
    let events = body["rooms"]["join"][&room_a]["timeline"]["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "m.room.member" && e["content"]["displayname"] == "Alice A."));

    // Only the user changes their profile; unknown users are 404.
    bob.put("/_matrix/client/v3/profile/@alice:localhost/displayname", json!({"displayname": "pwned"}))
        .await
        .err(403, "M_FORBIDDEN");
    bob.get("/_matrix/client/v3/profile/@nobody:localhost").await.err(404, "M_NOT_FOUND");
}
