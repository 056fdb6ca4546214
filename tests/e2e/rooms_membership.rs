//! Every membership transition over HTTP: invite, join (by ID and alias), reject, leave,
//! kick and ban with a reason, unban, knock, forget; `/joined_rooms`, `/members` and
//! `/joined_members`.

use serde_json::json;
use trellis_testkit::{TestServer, enc};

use crate::rooms_support::{room_path, say};

both_modes!(membership_transitions, knocking_and_member_lists);

async fn membership_transitions(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice.create_room(json!({"room_alias_name": "club"})).await;

    // Reject an invite, then accept the next one through the alias (server_name ignored).
    alice.post(&room_path(&room, "/invite"), json!({"user_id": "@bob:localhost", "reason": "join us"})).await.ok();
    let invite = alice.get(&room_path(&room, "/state/m.room.member/@bob:localhost")).await.ok();
    assert_eq!((invite["membership"].as_str(), invite["reason"].as_str()), (Some("invite"), Some("join us")));
    bob.post(&room_path(&room, "/leave"), json!({"reason": "not now"})).await.ok();
    assert_eq!(alice.get(&room_path(&room, "/state/m.room.member/@bob:localhost")).await.ok()["membership"], "leave");
    alice.post(&room_path(&room, "/invite"), json!({"user_id": "@bob:localhost"})).await.ok();
    let joined = bob
        .post(&format!("/_matrix/client/v3/join/{}?server_name=elsewhere.example", enc("#club:localhost")), json!({}))
        .await
        .ok();
    assert_eq!(joined["room_id"], room.as_str());
    let before = bob.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    bob.post(&room_path(&room, "/join"), json!({})).await.ok();
    let after = bob.sync(Some(&before), None, 0).await;
    assert!(after["rooms"]["join"].get(&room).is_none(), "a repeated join is a no-op: no new event");
    assert_eq!(bob.get("/_matrix/client/v3/joined_rooms").await.ok()["joined_rooms"], json!([room]));

    // Kick and ban with reasons; unban; the banned cannot return until unbanned.
    alice.post(&room_path(&room, "/kick"), json!({"user_id": "@bob:localhost", "reason": "noise"})).await.ok();
    let kicked = alice.get(&room_path(&room, "/state/m.room.member/@bob:localhost")).await.ok();
    assert_eq!((kicked["membership"].as_str(), kicked["reason"].as_str()), (Some("leave"), Some("noise")));
    assert_eq!(bob.get("/_matrix/client/v3/joined_rooms").await.ok()["joined_rooms"], json!([]));
    alice.post(&room_path(&room, "/ban"), json!({"user_id": "@bob:localhost", "reason": "spam"})).await.ok();
    let banned = alice.get(&room_path(&room, "/state/m.room.member/@bob:localhost")).await.ok();
    assert_eq!((banned["membership"].as_str(), banned["reason"].as_str()), (Some("ban"), Some("spam")));
    alice.post(&room_path(&room, "/invite"), json!({"user_id": "@bob:localhost"})).await.err(403, "M_FORBIDDEN");
    bob.post(&room_path(&room, "/join"), json!({})).await.err(403, "M_FORBIDDEN");
    alice.post(&room_path(&room, "/unban"), json!({"user_id": "@bob:localhost"})).await.ok();
    alice.post(&room_path(&room, "/invite"), json!({"user_id": "@bob:localhost"})).await.ok();
    bob.post(&room_path(&room, "/join"), json!({})).await.ok();
    carol.post(&room_path(&room, "/kick"), json!({"user_id": "@bob:localhost"})).await.err(403, "M_FORBIDDEN");

    // Forget: only after leaving; then the room's history is gone for the user.
    say(&alice, &room, "history").await;
    bob.post(&room_path(&room, "/forget"), json!({})).await.err(400, "M_UNKNOWN");
    bob.post(&room_path(&room, "/leave"), json!({})).await.ok();
    bob.get(&room_path(&room, "/messages?dir=b")).await.ok();
    bob.post(&room_path(&room, "/forget"), json!({})).await.ok();
    bob.get(&room_path(&room, "/messages?dir=b")).await.err(403, "M_FORBIDDEN");
}

async fn knocking_and_member_lists(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice.create_room(json!({"room_alias_name": "door", "name": "Door"})).await;
    alice.put(&room_path(&room, "/state/m.room.join_rules"), json!({"join_rule": "knock"})).await.ok();

    let knocked =
        bob.post(&format!("/_matrix/client/v3/knock/{}", enc("#door:localhost")), json!({"reason": "hi"})).await;
    assert_eq!(knocked.ok()["room_id"], room.as_str());
    bob.post(&room_path(&room, "/join"), json!({})).await.err(403, "M_FORBIDDEN");
    alice.post(&room_path(&room, "/invite"), json!({"user_id": "@bob:localhost"})).await.ok();
    bob.post(&room_path(&room, "/join"), json!({})).await.ok();
    let invite_only = alice.create_room(json!({})).await;
    carol.post(&format!("/_matrix/client/v3/knock/{}", enc(&invite_only)), json!({})).await.err(403, "M_FORBIDDEN");
    carol.post(&format!("/_matrix/client/v3/knock/{}", enc(&room)), json!({})).await.ok();

    let at = bob.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    bob.put("/_matrix/client/v3/profile/@bob:localhost/displayname", json!({"displayname": "Bobby"})).await.ok();
    carol.post(&room_path(&room, "/leave"), json!({})).await.ok();

    let chunk = |path: String| {
        let alice = alice.clone();
        async move {
            let mut users: Vec<String> = alice.get(&path).await.ok()["chunk"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    format!("{}={}", e["state_key"].as_str().unwrap(), e["content"]["membership"].as_str().unwrap())
                })
                .collect();
            users.sort();
            users
        }
    };
    assert_eq!(
        chunk(room_path(&room, "/members")).await,
        ["@alice:localhost=join", "@bob:localhost=join", "@carol:localhost=leave"]
    );
    assert_eq!(
        chunk(room_path(&room, "/members?membership=join")).await,
        ["@alice:localhost=join", "@bob:localhost=join"]
    );
    assert_eq!(chunk(room_path(&room, "/members?not_membership=join")).await, ["@carol:localhost=leave"]);
    assert_eq!(
        chunk(room_path(&room, &format!("/members?at={}", enc(&at)))).await,
        ["@alice:localhost=join", "@bob:localhost=join", "@carol:localhost=knock"],
        "as of the token"
    );
    let joined = alice.get(&room_path(&room, "/joined_members")).await.ok();
    assert_eq!(joined["joined"]["@bob:localhost"]["display_name"], "Bobby");
    assert_eq!(joined["joined"].as_object().unwrap().len(), 2);
    let outsider = server.user("dave").await;
    outsider.get(&room_path(&room, "/members")).await.err(403, "M_FORBIDDEN");
    outsider.get(&room_path(&room, "/joined_members")).await.err(403, "M_FORBIDDEN");
}
