//! Redaction: the stored event is stripped by the room version's algorithm and served with
//! `unsigned.redacted_because` everywhere; redactions name their target as the version says.

use serde_json::json;
use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

pub async fn redacted_events_are_stored_and_served_stripped(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    let secret = send(&env, message(BOB, &room, "secret", None)).await.unwrap();
    let mut req = redaction(ALICE, &room, &secret, Some("spam"));
    req.txn_id = Some("r1".into());
    let redaction_id = env.svc.redact(req.clone()).await.unwrap().event_id;
    assert_eq!(env.svc.redact(req).await.unwrap().event_id, redaction_id, "idempotent per transaction");

    let got = event(&env, BOB, &room, &secret).await.unwrap();
    assert_eq!(got["content"], json!({}));
    let because = &got["unsigned"]["redacted_because"];
    assert_eq!(because["event_id"], redaction_id.as_str());
    assert_eq!(because["content"]["reason"], "spam");
    assert_eq!(because["sender"], ALICE);

    // /messages serves it stripped too; the redaction names its target (v11: in content, and
    // at the top level for clients).
    let page = parse_all(&messages(&env, BOB, &room, None, true, 10).await.chunk_json);
    let stripped = page.iter().find(|e| e["event_id"] == secret.as_str()).unwrap();
    assert_eq!(stripped["content"], json!({}));
    let red = page.iter().find(|e| e["event_id"] == redaction_id.as_str()).unwrap();
    assert_eq!((red["redacts"].as_str(), red["content"]["redacts"].as_str()), (Some(&*secret), Some(&*secret)));

    // What the sync workers read: the stored row itself.
    let client = env.db.pool(1).get().await.unwrap();
    let row =
        client.query_one("SELECT content, pdu, redacted_by FROM events WHERE event_id = $1", &[&secret]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "{}");
    assert!(!row.get::<_, String>(1).contains("secret"), "the stored PDU is redacted");
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some(&*redaction_id));
}

pub async fn redaction_keeps_the_keys_of_the_room_version(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    let topic = send(&env, state(ALICE, &room, "m.room.topic", json!({"topic": "t"}))).await.unwrap();
    env.svc.redact(redaction(ALICE, &room, &topic, None)).await.unwrap();
    let current = state_of(&env, BOB, &room).await;
    let t = current.iter().find(|e| e["type"] == "m.room.topic").unwrap();
    assert_eq!(t["content"], json!({}), "current state serves the stripped event");

    let join =
        send(&env, member_state(BOB, &room, BOB, json!({"membership": "join", "displayname": "Bob"}))).await.unwrap();
    env.svc.redact(redaction(BOB, &room, &join, None)).await.unwrap();
    assert_eq!(event(&env, BOB, &room, &join).await.unwrap()["content"], json!({"membership": "join"}));

    // Redacted power levels keep their levels: the rules still see Alice at 100, Bob at 0.
    let pl = state_of(&env, ALICE, &room).await.into_iter().find(|e| e["type"] == "m.room.power_levels").unwrap();
    env.svc.redact(redaction(ALICE, &room, pl["event_id"].as_str().unwrap(), None)).await.unwrap();
    let after = event(&env, ALICE, &room, pl["event_id"].as_str().unwrap()).await.unwrap();
    assert_eq!(after["content"]["users"][ALICE], 100);
    refused(send(&env, state(BOB, &room, "m.room.name", json!({"name": "x"}))).await, ErrorCode::Forbidden, "power");
    // Bob's membership survives the redaction of his join.
    send(&env, message(BOB, &room, "still here", None)).await.unwrap();
}

pub async fn v10_redactions_name_their_target_at_the_top_level(env: Env) {
    let mut req = create(ALICE);
    req.room_version = Some("10".into());
    let room = env.svc.create_room(req).await.unwrap().room_id;
    let target = send(&env, message(ALICE, &room, "oops", None)).await.unwrap();
    let id = env.svc.redact(redaction(ALICE, &room, &target, None)).await.unwrap().event_id;
    let red = event(&env, ALICE, &room, &id).await.unwrap();
    assert_eq!(red["redacts"], target.as_str());
    assert!(red["content"].get("redacts").is_none());
    assert_eq!(event(&env, ALICE, &room, &target).await.unwrap()["content"], json!({}));
}

pub async fn redaction_errors(env: Env) {
    let room = room_with(&env, "public_chat", &[]).await;
    let other = room_with(&env, "public_chat", &[]).await;
    let elsewhere = send(&env, message(ALICE, &other, "x", None)).await.unwrap();
    let err = env.svc.redact(redaction(ALICE, &room, "$unknown", None)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let err = env.svc.redact(redaction(ALICE, &room, &elsewhere, None)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidParam, "an event of another room is a bad request, as in Synapse");
    let err = env.svc.redact(redaction(ALICE, &room, "not-an-id", None)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidParam);
    // A redaction sent as an ordinary event takes the same path.
    let target = send(&env, message(ALICE, &room, "x", None)).await.unwrap();
    let redaction = SendEventRequest {
        event_type: "m.room.redaction".into(),
        ..custom(ALICE, &room, json!({"redacts": target, "reason": "r"}))
    };
    send(&env, redaction).await.unwrap();
    assert_eq!(event(&env, ALICE, &room, &target).await.unwrap()["content"], json!({}));
    let bare = SendEventRequest { event_type: "m.room.redaction".into(), ..custom(ALICE, &room, json!({})) };
    assert_eq!(send(&env, bare).await.unwrap_err().code(), ErrorCode::BadJson);
}
