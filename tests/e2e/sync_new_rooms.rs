//! A room that became joined since the client's `since` (from an invite, a knock, a leave or
//! nothing) arrives in the incremental sync as an initial sync would send it: the latest
//! events the user may see, `limited` with a `prev_batch` when there are more, and the state
//! as of the timeline's start. This is what lets Element show a message sent before the
//! reader joined.

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc, timeline_bodies};

both_modes!(
    messages_sent_before_an_invitee_joins_are_in_the_join_sync,
    a_rejoined_room_is_sent_whole,
    a_room_joined_without_an_invite_is_sent_whole,
    joined_visibility_still_hides_the_history,
);

/// Long-polls from `since` until `room` shows up as joined; returns that response.
async fn sync_until_joined(client: &Client, since: &str, filter: Option<&Value>, room: &str) -> Value {
    let mut since = since.to_owned();
    for _ in 0..20 {
        let body = client.sync(Some(&since), filter, 10_000).await;
        if body["rooms"]["join"].get(room).is_some() {
            return body;
        }
        since = body["next_batch"].as_str().unwrap().to_owned();
    }
    panic!("{room} never arrived as joined");
}

/// Long-polls from `since` until an invite to `room` arrives; returns the `next_batch` after it.
async fn sync_until_invited(client: &Client, since: &str, room: &str) -> String {
    let mut since = since.to_owned();
    for _ in 0..20 {
        let body = client.sync(Some(&since), None, 10_000).await;
        since = next(&body);
        if body["rooms"]["invite"].get(room).is_some() {
            return since;
        }
    }
    panic!("no invite to {room} arrived");
}

fn next(body: &Value) -> String {
    body["next_batch"].as_str().unwrap().to_owned()
}

fn state_types(body: &Value, room: &str) -> Vec<(String, String)> {
    body["rooms"]["join"][room]["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap().to_owned(), e["state_key"].as_str().unwrap().to_owned()))
        .collect()
}

async fn messages_sent_before_an_invitee_joins_are_in_the_join_sync(server: TestServer) {
    let (alice, bob) = (server.user("alice").await, server.user("bob").await);
    let room = alice.create_room(json!({"preset": "private_chat", "name": "Before"})).await;
    let since = next(&bob.sync(None, None, 0).await);
    alice.post(&format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)), json!({"user_id": bob.user_id})).await.ok();
    let since = sync_until_invited(&bob, &since, &room).await;
    for i in 1..=4 {
        alice.send_text(&room, &format!("t{i}"), &format!("m{i}")).await;
    }
    // Bob's client keeps polling while he has not accepted, so its `since` moves past the
    // messages (here: until it sees a later invite to another room) before he joins.
    let marker = alice.create_room(json!({"invite": [bob.user_id]})).await;
    let since = sync_until_invited(&bob, &since, &marker).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();

    // The default limit holds them all: the messages before the join, then the join.
    let body = sync_until_joined(&bob, &since, None, &room).await;
    let joined = &body["rooms"]["join"][&room];
    assert_eq!(timeline_bodies(&body, &room), ["m1", "m2", "m3", "m4"], "{joined}");
    let events = joined["timeline"]["events"].as_array().unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["state_key"].as_str()),
        (Some("m.room.member"), Some(bob.user_id.as_str()))
    );
    assert!(joined["timeline"]["prev_batch"].is_string(), "{joined}");
    // Everything fits, yet a newly joined room is `limited` (as Synapse sends it): the client
    // had nothing of the room before and may page back.
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    // The state before the timeline is the room's, as in an initial sync (the room's create
    // event is older than the timeline's start here only when limited, so ask for less).
    let limited = json!({"room": {"timeline": {"limit": 2}}});
    let body = sync_until_joined(&bob, &since, Some(&limited), &room).await;
    let joined = &body["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    assert_eq!(timeline_bodies(&body, &room), ["m4"]);
    let state = state_types(&body, &room);
    for kind in ["m.room.create", "m.room.name", "m.room.power_levels", "m.room.join_rules"] {
        assert!(state.iter().any(|(t, _)| t == kind), "{kind} missing from {state:?}");
    }
    assert!(state.contains(&("m.room.member".into(), alice.user_id.clone())), "{state:?}");
    assert_eq!(joined["summary"]["m.joined_member_count"], 2, "{joined}");
    // The client pages back from `prev_batch` to the earlier messages.
    let prev = joined["timeline"]["prev_batch"].as_str().unwrap();
    let page = bob
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10&from={}", enc(&room), enc(prev)))
        .await
        .ok();
    let bodies: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies, ["m3", "m2", "m1"], "{page}");

    // Lazy-loaded members: the senders of the timeline come with it.
    let lazy = json!({"room": {"timeline": {"limit": 2}, "state": {"lazy_load_members": true}}});
    let body = sync_until_joined(&bob, &since, Some(&lazy), &room).await;
    let state = state_types(&body, &room);
    assert!(state.contains(&("m.room.member".into(), alice.user_id.clone())), "{state:?}");
    assert!(state.iter().any(|(t, _)| t == "m.room.create"), "{state:?}");
}

async fn a_rejoined_room_is_sent_whole(server: TestServer) {
    let (alice, bob) = (server.user("alice").await, server.user("bob").await);
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    alice.send_text(&room, "t0", "before").await;
    bob.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), json!({})).await.ok();
    let since = next(&bob.sync(None, None, 0).await);
    alice.send_text(&room, "t1", "while away").await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    // A timeline shorter than the room, so that its start has state before it.
    let short = json!({"room": {"timeline": {"limit": 4}}});
    let body = sync_until_joined(&bob, &since, Some(&short), &room).await;
    // A public room's history is shared: everything since the room began is visible again.
    assert_eq!(timeline_bodies(&body, &room), ["before", "while away"]);
    let state = state_types(&body, &room);
    assert!(state.iter().any(|(t, _)| t == "m.room.create"), "{state:?}");
}

async fn a_room_joined_without_an_invite_is_sent_whole(server: TestServer) {
    let (alice, bob) = (server.user("alice").await, server.user("bob").await);
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    for i in 1..=3 {
        alice.send_text(&room, &format!("t{i}"), &format!("m{i}")).await;
    }
    let since = next(&bob.sync(None, None, 0).await);
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    let filter = json!({"room": {"timeline": {"limit": 3}}});
    let body = sync_until_joined(&bob, &since, Some(&filter), &room).await;
    let joined = &body["rooms"]["join"][&room];
    assert_eq!(timeline_bodies(&body, &room), ["m2", "m3"]);
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    // Nothing new: the next sync does not send the room again.
    let again = bob.sync(Some(&next(&body)), None, 0).await;
    assert!(again["rooms"]["join"].get(&room).is_none(), "{again}");
}

async fn joined_visibility_still_hides_the_history(server: TestServer) {
    let (alice, bob) = (server.user("alice").await, server.user("bob").await);
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}],
        }))
        .await;
    alice.send_text(&room, "t1", "secret").await;
    let since = next(&bob.sync(None, None, 0).await);
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    let body = sync_until_joined(&bob, &since, None, &room).await;
    assert!(timeline_bodies(&body, &room).is_empty(), "{body}");
    let events = body["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap()["state_key"], bob.user_id.as_str());
    assert!(body["rooms"]["join"][&room]["timeline"]["prev_batch"].is_string());
}
