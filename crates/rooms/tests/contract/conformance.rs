//! Behaviour SyTest checks and Synapse shows: custom join content, idempotent state,
//! transaction IDs scoped to their request path, redaction across rooms, `/messages` page
//! ends, erased users and self-destructing messages.

use serde_json::{Value, json};
use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

pub async fn join_keeps_custom_content(env: Env) {
    let room = room_with(&env, "public_chat", &[]).await;
    let mut join = member(BOB, &room, MembershipAction::Join, None);
    join.content_json =
        Some(json!({"foo": "bar", "membership": "ban", "join_authorised_via_users_server": ALICE}).to_string());
    env.svc.change_membership(join).await.unwrap();
    let state = state_of(&env, BOB, &room).await;
    let bob = state.iter().find(|e| e["type"] == "m.room.member" && e["state_key"] == BOB).unwrap();
    assert_eq!(bob["content"]["foo"], "bar", "{bob}");
    assert_eq!(bob["content"]["membership"], "join");
    assert!(bob["content"].get("join_authorised_via_users_server").is_none(), "never the client's to choose");

    let mut bad = member(CAROL, &room, MembershipAction::Join, None);
    bad.content_json = Some(r#"{"foo": 1.5}"#.into());
    assert_eq!(code(env.svc.change_membership(bad).await.unwrap_err()), ErrorCode::BadJson);
}

pub async fn identical_state_is_the_event_in_place(env: Env) {
    let room = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    let first = send(&env, state(ALICE, &room, "a.test", json!({"k": "v"}))).await.unwrap();
    let again = send(&env, state(ALICE, &room, "a.test", json!({"k": "v"}))).await.unwrap();
    assert_eq!(first, again);
    let other = send(&env, state(ALICE, &room, "a.test", json!({"k": "w"}))).await.unwrap();
    assert_ne!(first, other);
    let page = messages(&env, ALICE, &room, None, true, 100).await;
    let count = page.chunk_json.iter().filter(|e| e.contains("\"a.test\"")).count();
    assert_eq!(count, 2, "no new event for the repeat");
}

pub async fn transaction_ids_are_scoped_to_their_path(env: Env) {
    let one = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    let two = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    let first = send(&env, message(ALICE, &one, "a", Some("t"))).await.unwrap();
    assert_eq!(send(&env, message(ALICE, &one, "a", Some("t"))).await.unwrap(), first);
    assert_ne!(send(&env, message(ALICE, &two, "a", Some("t"))).await.unwrap(), first, "another room");
    let mut custom = message(ALICE, &one, "a", Some("t"));
    custom.event_type = "m.custom".into();
    assert_ne!(send(&env, custom).await.unwrap(), first, "another event type");

    let mut redact = redaction(ALICE, &one, &first, None);
    redact.txn_id = Some("t".into());
    let redaction_id = env.svc.redact(redact.clone()).await.unwrap().event_id;
    assert_ne!(redaction_id, first, "a redaction is not the message sent with the same ID");
    assert_eq!(env.svc.redact(redact).await.unwrap().event_id, redaction_id, "a retried redaction");
    // The other device of the user has transactions of its own.
    let mut laptop = message(ALICE, &one, "a", Some("t"));
    laptop.device_id = "LAPTOP".into();
    assert_ne!(send(&env, laptop).await.unwrap(), first);
}

pub async fn redaction_of_an_event_in_another_room_is_refused(env: Env) {
    let one = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    let two = env.svc.create_room(create(BOB)).await.unwrap().room_id;
    let event = send(&env, message(ALICE, &one, "mine", None)).await.unwrap();
    refused(env.svc.redact(redaction(BOB, &two, &event, None)).await, ErrorCode::InvalidParam, "another room");
    let unknown = env.svc.redact(redaction(BOB, &two, "$unknown", None)).await;
    assert_eq!(code(unknown.unwrap_err()), ErrorCode::NotFound);
}

pub async fn pages_with_events_have_an_end(env: Env) {
    let room = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    send(&env, message(ALICE, &room, "m", None)).await.unwrap();
    let page = messages(&env, ALICE, &room, None, true, 100).await;
    assert!(!page.chunk_json.is_empty());
    let end = page.end.expect("a page with events has an end, even the last one");
    let next = messages(&env, ALICE, &room, Some(end), true, 100).await;
    assert!(next.chunk_json.is_empty() && next.end.is_none(), "then nothing, and no end");
}

pub async fn erased_senders_are_hidden_from_those_not_there(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    let event = send(&env, message(ALICE, &room, "secret", None)).await.unwrap();
    env.svc.change_membership(member(CAROL, &room, MembershipAction::Join, None)).await.unwrap();
    let client = env.db.pool(1).get().await.unwrap();
    client.execute("INSERT INTO users (user_id, created_ts, erased) VALUES ($1, 0, TRUE)", &[&ALICE]).await.unwrap();

    let body = |resp: &GetMessagesResponse| -> Value {
        let e = resp.chunk_json.iter().map(|e| serde_json::from_str::<Value>(e).unwrap());
        e.into_iter().find(|e| e["event_id"] == event.as_str()).unwrap()["content"].clone()
    };
    assert_eq!(body(&messages(&env, BOB, &room, None, true, 100).await)["body"], "secret", "Bob was there");
    assert_eq!(body(&messages(&env, CAROL, &room, None, true, 100).await), json!({}), "Carol came later");
    let context = env
        .svc
        .get_context(GetContextRequest {
            user_id: CAROL.into(),
            device_id: "DEV".into(),
            room_id: room.clone(),
            event_id: event.clone(),
            limit: 1,
            filter_json: None,
        })
        .await
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&context.event_json).unwrap()["content"], json!({}));
}

pub async fn self_destructing_messages_are_served_empty_once_due(env: Env) {
    let room = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    let mut due = message(ALICE, &room, "gone", None);
    due.content_json = json!({"body": "gone", "org.matrix.self_destruct_after": 1}).to_string();
    let gone = send(&env, due).await.unwrap();
    let got = event(&env, ALICE, &room, &gone).await.unwrap();
    assert_eq!(got["content"], json!({}), "{got}");
}
