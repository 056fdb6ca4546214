//! Simplified Sliding Sync (MSC4186), rooms in detail: `required_state` sent as deltas (a
//! changed name once, a widened configuration's new state), invites with their stripped state,
//! joining from an invite, leaving, room subscriptions (and none for rooms the user is not in),
//! a wider `timeline_limit` bringing more history, and bad input refused with 400s.

use serde_json::{Value, json};
use trellis_testkit::{TestServer, enc};

use crate::sliding_sync::{bodies, list, pos, user};

both_modes!(
    required_state_is_sent_as_deltas,
    invites_joins_and_leaves_move_through_the_list,
    room_subscriptions_see_only_the_users_rooms,
    list_filters_select_rooms,
    bad_input_is_refused_with_400s,
);

fn state_keys(room: &Value, kind: &str) -> Vec<String> {
    room["required_state"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == kind)
        .map(|e| e["state_key"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn required_state_is_sent_as_deltas(server: TestServer) {
    let alice = user(&server, "alice").await;
    let room = alice.create_room(json!({"name": "before", "topic": "a topic"})).await;
    let narrow = list(json!([[0, 0]]), 1, json!([["m.room.name", ""]]));
    let body = alice.sliding(None, None, narrow.clone()).await.ok();
    assert_eq!(state_keys(&body["rooms"][&room], "m.room.name"), [""]);
    assert!(state_keys(&body["rooms"][&room], "m.room.topic").is_empty(), "not asked for");

    // A new name: the name event, and the `name` field, once.
    alice
        .put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)), json!({"name": "after"}))
        .await
        .ok();
    let next = alice.sliding(Some(&pos(&body)), Some(5_000), narrow.clone()).await.ok();
    let r = &next["rooms"][&room];
    assert_eq!(r["name"], "after", "{r}");
    assert_eq!(state_keys(r, "m.room.name"), [""]);
    assert!(r.get("initial").is_none());

    // Asking for more state sends what is newly asked for, and nothing already sent.
    let wide = list(json!([[0, 0]]), 1, json!([["m.room.name", ""], ["m.room.topic", ""]]));
    let wider = alice.sliding(Some(&pos(&next)), Some(0), wide.clone()).await.ok();
    let r = &wider["rooms"][&room];
    assert_eq!(state_keys(r, "m.room.topic"), [""], "{wider}");
    assert!(state_keys(r, "m.room.name").is_empty(), "the name was sent already: {r}");

    // Everything ("*", "*") on a fresh connection brings every state event, members included.
    let all = list(json!([[0, 0]]), 0, json!([["*", "*"]]));
    let whole = alice.sliding(None, None, json!({"conn_id": "other", "lists": all["lists"]})).await.ok();
    let r = &whole["rooms"][&room];
    for kind in ["m.room.create", "m.room.power_levels", "m.room.topic", "m.room.name", "m.room.join_rules"] {
        assert_eq!(state_keys(r, kind), [""], "{kind} in {r}");
    }
    assert_eq!(state_keys(r, "m.room.member"), std::slice::from_ref(&alice.user_id));
    assert!(r.get("timeline").is_none(), "timeline_limit 0: {r}");
}

async fn invites_joins_and_leaves_move_through_the_list(server: TestServer) {
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let room = alice.create_room(json!({"name": "club"})).await;
    alice.send_text(&room, "t0", "before bob").await;
    let req = list(json!([[0, 9]]), 5, json!([["m.room.name", ""]]));
    let invites = json!({"lists": {
        "all": req["lists"]["all"],
        "invites": {"ranges": [[0, 9]], "timeline_limit": 0, "filters": {"is_invite": true}},
    }});
    let first = bob.sliding(None, None, invites.clone()).await.ok();
    assert_eq!(first["lists"]["all"]["count"], 0);

    alice.post(&format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)), json!({"user_id": bob.user_id})).await.ok();
    let invited = bob.sliding(Some(&pos(&first)), Some(5_000), invites.clone()).await.ok();
    assert_eq!(invited["lists"]["invites"]["count"], 1, "{invited}");
    let r = &invited["rooms"][&room];
    let stripped: Vec<&str> =
        r["invite_state"].as_array().expect("invite_state").iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(stripped.contains(&"m.room.name") && stripped.contains(&"m.room.member"), "{r}");
    assert!(r.get("timeline").is_none(), "an invite shows no timeline: {r}");

    // Joining from the invite: the room is sent whole, history included.
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    let joined = bob.sliding(Some(&pos(&invited)), Some(5_000), invites.clone()).await.ok();
    let r = &joined["rooms"][&room];
    assert_eq!(r["initial"], true, "{joined}");
    assert!(bodies(r).contains(&"before bob".to_owned()), "{r}");
    assert_eq!(joined["lists"]["invites"]["count"], 0);
    assert_eq!(r["joined_count"], 2);

    // Leaving: the leave is sent once, then the room drops out of the list.
    bob.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), json!({})).await.ok();
    let left = bob.sliding(Some(&pos(&joined)), Some(5_000), invites.clone()).await.ok();
    let leave = left["rooms"][&room]["timeline"].as_array().expect("the leave").last().cloned().unwrap();
    assert_eq!(
        (leave["type"].as_str(), leave["content"]["membership"].as_str()),
        (Some("m.room.member"), Some("leave"))
    );
    alice.send_text(&room, "t1", "after bob").await;
    let after = bob.sliding(Some(&pos(&left)), Some(300), invites).await.ok();
    assert_eq!(after["lists"]["all"]["count"], 0, "{after}");
    assert!(after["rooms"].get(&room).is_none(), "nothing after the leave reaches bob: {after}");
}

async fn room_subscriptions_see_only_the_users_rooms(server: TestServer) {
    let alice = user(&server, "alice").await;
    let eve = user(&server, "eve").await;
    let mine = alice.create_room(json!({"name": "mine"})).await;
    for i in 0..8 {
        alice.send_text(&mine, &format!("t{i}"), &format!("m{i}")).await;
    }
    let secret = eve.create_room(json!({"name": "eve's"})).await;
    eve.send_text(&secret, "t", "private").await;

    // The room list shows one event; a subscription to the room asks for five.
    let req = list(json!([[0, 0]]), 1, json!([]));
    let body = alice.sliding(None, None, req.clone()).await.ok();
    assert_eq!(bodies(&body["rooms"][&mine]), ["m7"]);
    let mut sub = req.clone();
    sub["room_subscriptions"] = json!({
        mine.clone(): {"timeline_limit": 5, "required_state": [["m.room.name", ""]]},
        secret.clone(): {"timeline_limit": 5, "required_state": [["*", "*"]]},
    });
    let subscribed = alice.sliding(Some(&pos(&body)), Some(0), sub.clone()).await.ok();
    assert_eq!(bodies(&subscribed["rooms"][&mine]), ["m3", "m4", "m5", "m6", "m7"], "{subscribed}");
    assert!(subscribed["rooms"].get(&secret).is_none(), "eve's room leaks: {subscribed}");
    // A fresh connection subscribing only to eve's room gets nothing of it.
    let only = json!({"conn_id": "peek", "room_subscriptions": {secret.clone(): {"timeline_limit": 5}}});
    let peek = alice.sliding(None, None, only).await.ok();
    assert!(peek["rooms"].as_object().is_none_or(|r| r.is_empty()), "{peek}");
}

async fn list_filters_select_rooms(server: TestServer) {
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let space = alice.create_room(json!({"name": "space", "creation_content": {"type": "m.space"}})).await;
    let child = alice.create_room(json!({"name": "child"})).await;
    let child_path = format!("/_matrix/client/v3/rooms/{}/state/m.space.child/{}", enc(&space), enc(&child));
    alice.put(&child_path, json!({"via": ["localhost"]})).await.ok();
    let dm = alice.create_room(json!({"is_direct": true, "invite": [bob.user_id]})).await;
    let direct = format!("/_matrix/client/v3/user/{}/account_data/m.direct", enc(&alice.user_id));
    alice.put(&direct, json!({bob.user_id.clone(): [dm.clone()]})).await.ok();
    let secret = alice
        .create_room(json!({"name": "secret", "initial_state": [
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]}))
        .await;
    let lists = |filters: Value| json!({"ranges": [[0, 20]], "timeline_limit": 0, "filters": filters});
    let req = json!({"lists": {
        "in_space": lists(json!({"spaces": [space]})),
        "dms": lists(json!({"is_dm": true})),
        "spaces": lists(json!({"room_types": ["m.space"]})),
        "not_spaces": lists(json!({"not_room_types": ["m.space"]})),
        "encrypted": lists(json!({"is_encrypted": true})),
    }});
    let body = alice.sliding(None, None, req).await.ok();
    let count = |name: &str| body["lists"][name]["count"].as_u64().unwrap();
    assert_eq!(
        [count("in_space"), count("dms"), count("spaces"), count("not_spaces"), count("encrypted")],
        [1, 1, 1, 3, 1],
        "{body}"
    );
    assert_eq!(body["rooms"][&dm]["is_dm"], true);
    assert_eq!(body["rooms"][&child]["is_dm"], false);
    assert!(body["rooms"].get(&secret).is_some() && body["rooms"].get(&space).is_some());

    // Bob has no m.direct yet: his invite's `is_direct` makes the room a DM for him, and an
    // invite without it does not.
    let plain_invite = alice.create_room(json!({"invite": [bob.user_id]})).await;
    let req = json!({"lists": {
        "dms": lists(json!({"is_dm": true})),
        "others": lists(json!({"is_dm": false})),
    }});
    let body = bob.sliding(None, None, req).await.ok();
    let count = |name: &str| body["lists"][name]["count"].as_u64().unwrap();
    assert_eq!([count("dms"), count("others")], [1, 1], "{body}");
    assert_eq!(body["rooms"][&dm]["is_dm"], true, "{body}");
    assert_eq!(body["rooms"][&plain_invite]["is_dm"], false, "{body}");
}

async fn bad_input_is_refused_with_400s(server: TestServer) {
    let alice = user(&server, "alice").await;
    let reversed = list(json!([[5, 1]]), 1, json!([]));
    alice.sliding(None, None, reversed).await.err(400, "M_INVALID_PARAM");
    let negative = list(json!([[-1, 3]]), 1, json!([]));
    alice.sliding(None, None, negative).await.err(400, "M_BAD_JSON");
    let malformed = json!({"lists": {"all": {"ranges": "everything", "timeline_limit": 1}}});
    alice.sliding(None, None, malformed).await.err(400, "M_BAD_JSON");
    let huge = list(json!([[0, 1u64 << 60]]), 1, json!([]));
    assert_eq!(alice.sliding(None, None, huge).await.status, 400, "beyond JSON's safe integers");
    let long = json!({"conn_id": "c".repeat(256)});
    alice.sliding(None, None, long).await.err(400, "M_INVALID_PARAM");
    let entries: Vec<Value> = (0..10_000).map(|i| json!(["m.room.member", format!("@u{i}:x")])).collect();
    let heavy = list(json!([[0, 1]]), 1, Value::Array(entries));
    alice.sliding(None, None, heavy).await.err(400, "M_INVALID_PARAM");
    let bad_room = json!({"room_subscriptions": {"not-a-room": {"timeline_limit": 1}}});
    assert_eq!(alice.sliding(None, None, bad_room).await.status, 400);
    // Unknown extensions are ignored, as Synapse ignores them.
    let unknown = json!({"extensions": {"org.example.nothing": {"enabled": true}}});
    alice.sliding(None, None, unknown).await.ok();
    // Without a token: the usual 401.
    let mut anonymous = server.client();
    anonymous.token = None;
    anonymous.sliding(None, None, json!({})).await.err(401, "M_MISSING_TOKEN");
}
