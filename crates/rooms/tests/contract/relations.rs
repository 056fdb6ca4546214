//! Relations and threads: `/relations` in both directions with pagination, filters and
//! recursion; bundled `m.replace`, `m.thread` and `m.reference` aggregations; `/threads`;
//! relations a server refuses.

use serde_json::{Value, json};
use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

fn reply(sender: &str, room: &str, root: &str, body: &str) -> SendEventRequest {
    custom(
        sender,
        room,
        json!({"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
    )
}

fn edit(sender: &str, room: &str, original: &str, body: &str) -> SendEventRequest {
    custom(
        sender,
        room,
        json!({"msgtype": "m.text", "body": format!("* {body}"), "m.new_content": {"msgtype": "m.text", "body": body},
               "m.relates_to": {"rel_type": "m.replace", "event_id": original}}),
    )
}

fn relations(user: &str, room: &str, event_id: &str) -> GetRelationsRequest {
    GetRelationsRequest {
        user_id: user.into(),
        device_id: "DEV".into(),
        room_id: room.into(),
        event_id: event_id.into(),
        ..Default::default()
    }
}

fn ids(resp: &GetRelationsResponse) -> Vec<String> {
    parse_all(&resp.chunk_json).iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}

pub async fn relations_paginate_both_ways_with_filters(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    let root = send(&env, message(ALICE, &room, "root", None)).await.unwrap();
    let r1 = send(&env, reply(BOB, &room, &root, "r1")).await.unwrap();
    let e1 = send(&env, edit(ALICE, &room, &root, "root!")).await.unwrap();
    let r2 = send(&env, reply(ALICE, &room, &root, "r2")).await.unwrap();
    let reaction =
        custom(BOB, &room, json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}}));
    let a1 = send(&env, SendEventRequest { event_type: "m.reaction".into(), ..reaction }).await.unwrap();

    let all = env.svc.get_relations(GetRelationsRequest { limit: 10, ..relations(ALICE, &room, &root) }).await.unwrap();
    assert_eq!(ids(&all), vec![a1.clone(), r2.clone(), e1.clone(), r1.clone()], "newest first by default");
    assert_eq!((all.next_batch, all.recursion_depth), (None, None));

    // Pages of two, backwards then forwards, cover everything once.
    let mut seen = Vec::new();
    let mut from = None;
    loop {
        let page = env
            .svc
            .get_relations(GetRelationsRequest { limit: 2, from: from.clone(), ..relations(ALICE, &room, &root) })
            .await
            .unwrap();
        seen.extend(ids(&page));
        match page.next_batch {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, vec![a1.clone(), r2.clone(), e1.clone(), r1.clone()]);
    let fwd = env
        .svc
        .get_relations(GetRelationsRequest { limit: 3, forwards: true, ..relations(ALICE, &room, &root) })
        .await
        .unwrap();
    assert_eq!(ids(&fwd), vec![r1.clone(), e1.clone(), r2.clone()]);
    let rest = env
        .svc
        .get_relations(GetRelationsRequest {
            limit: 3,
            forwards: true,
            from: fwd.next_batch,
            ..relations(ALICE, &room, &root)
        })
        .await
        .unwrap();
    assert_eq!(ids(&rest), vec![a1.clone()]);

    let threads =
        GetRelationsRequest { rel_type: Some("m.thread".into()), limit: 10, ..relations(ALICE, &room, &root) };
    assert_eq!(ids(&env.svc.get_relations(threads.clone()).await.unwrap()), vec![r2.clone(), r1.clone()]);
    let typed =
        GetRelationsRequest { event_type: Some("m.reaction".into()), rel_type: Some("m.annotation".into()), ..threads };
    assert_eq!(ids(&env.svc.get_relations(typed).await.unwrap()), vec![a1]);

    // An edit of a thread reply is found by recursing.
    let e2 = send(&env, edit(BOB, &room, &r1, "r1!")).await.unwrap();
    let deep = GetRelationsRequest {
        recurse: true,
        limit: 10,
        rel_type: Some("m.replace".into()),
        ..relations(ALICE, &room, &root)
    };
    let deep = env.svc.get_relations(deep).await.unwrap();
    assert_eq!(ids(&deep), vec![e2, e1]);
    assert_eq!(deep.recursion_depth, Some(3));

    let err = env.svc.get_relations(relations(ALICE, &room, "$missing")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let err = env.svc.get_relations(relations(EVE, &room, &root)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);
}

pub async fn bundled_aggregations(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB, CAROL]).await;
    let root = send(&env, message(ALICE, &room, "root", None)).await.unwrap();
    send(&env, edit(ALICE, &room, &root, "first edit")).await.unwrap();
    let latest_edit = send(&env, edit(ALICE, &room, &root, "second edit")).await.unwrap();
    send(&env, edit(BOB, &room, &root, "not Bob's to edit")).await.unwrap();
    send(&env, reply(BOB, &room, &root, "r1")).await.unwrap();
    let r2 = send(&env, reply(ALICE, &room, &root, "r2")).await.unwrap();
    let reference =
        custom(CAROL, &room, json!({"body": "see", "m.relates_to": {"rel_type": "m.reference", "event_id": root}}));
    let reference = send(&env, reference).await.unwrap();

    let for_user = |user: &'static str| {
        let env = &env;
        let (room, root) = (room.clone(), root.clone());
        async move { event(env, user, &room, &root).await.unwrap()["unsigned"]["m.relations"].clone() }
    };
    let bob_view: Value = for_user(BOB).await;
    assert_eq!(bob_view["m.replace"]["event_id"], latest_edit.as_str(), "the latest valid edit by the sender");
    assert_eq!(bob_view["m.replace"]["content"]["m.new_content"]["body"], "second edit");
    assert_eq!(bob_view["m.thread"]["count"], 2);
    assert_eq!(bob_view["m.thread"]["latest_event"]["event_id"], r2.as_str());
    assert_eq!(bob_view["m.thread"]["current_user_participated"], true);
    assert_eq!(bob_view["m.reference"]["chunk"], json!([{"event_id": reference}]));
    assert_eq!(for_user(CAROL).await["m.thread"]["current_user_participated"], false);
    assert_eq!(for_user(ALICE).await["m.thread"]["current_user_participated"], true, "the root's sender participates");

    // The same bundle on /messages; redacting the latest reply updates it.
    let page = parse_all(&messages(&env, BOB, &room, None, true, 50).await.chunk_json);
    let in_page = page.iter().find(|e| e["event_id"] == root.as_str()).unwrap();
    assert_eq!(in_page["unsigned"]["m.relations"]["m.thread"]["count"], 2);
    env.svc.redact(redaction(ALICE, &room, &r2, None)).await.unwrap();
    let after = for_user(BOB).await;
    assert_eq!(after["m.thread"]["count"], 1);
    assert_ne!(after["m.thread"]["latest_event"]["event_id"], r2.as_str());
    env.svc.redact(redaction(ALICE, &room, &latest_edit, None)).await.unwrap();
    assert_eq!(for_user(BOB).await["m.replace"]["content"]["m.new_content"]["body"], "first edit");
}

pub async fn threads_list_latest_activity_first(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    let t1 = send(&env, message(ALICE, &room, "t1", None)).await.unwrap();
    let t2 = send(&env, message(BOB, &room, "t2", None)).await.unwrap();
    let t3 = send(&env, message(BOB, &room, "t3", None)).await.unwrap();
    send(&env, reply(BOB, &room, &t1, "on t1")).await.unwrap();
    send(&env, reply(BOB, &room, &t3, "on t3")).await.unwrap();
    send(&env, reply(BOB, &room, &t2, "on t2")).await.unwrap();
    send(&env, reply(ALICE, &room, &t1, "t1 again")).await.unwrap();

    let threads = |user: &str, participated: bool, limit: u32, from: Option<String>| GetThreadsRequest {
        user_id: user.into(),
        device_id: "DEV".into(),
        room_id: room.clone(),
        participated,
        limit,
        from,
    };
    let roots = |resp: &GetThreadsResponse| -> Vec<String> {
        parse_all(&resp.chunk_json).iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
    };
    let all = env.svc.get_threads(threads(ALICE, false, 10, None)).await.unwrap();
    assert_eq!(roots(&all), vec![t1.clone(), t2.clone(), t3.clone()]);
    assert_eq!(all.next_batch, None);
    let first = env.svc.get_threads(threads(ALICE, false, 2, None)).await.unwrap();
    assert_eq!(roots(&first), vec![t1.clone(), t2.clone()]);
    let rest = env.svc.get_threads(threads(ALICE, false, 2, first.next_batch)).await.unwrap();
    assert_eq!(roots(&rest), vec![t3.clone()]);
    let chunk = parse_all(&all.chunk_json);
    assert_eq!(chunk[0]["unsigned"]["m.relations"]["m.thread"]["count"], 2, "roots carry their aggregation");
    let mine = env.svc.get_threads(threads(ALICE, true, 10, None)).await.unwrap();
    assert_eq!(roots(&mine), vec![t1], "Alice started or replied to only t1");
    assert_eq!(roots(&env.svc.get_threads(threads(BOB, true, 10, None)).await.unwrap()).len(), 3);
}

pub async fn invalid_relations_are_refused(env: Env) {
    let room = room_with(&env, "public_chat", &[]).await;
    let other = room_with(&env, "public_chat", &[]).await;
    let root = send(&env, message(ALICE, &room, "root", None)).await.unwrap();
    let r1 = send(&env, reply(ALICE, &room, &root, "r1")).await.unwrap();
    refused(send(&env, reply(ALICE, &room, &r1, "nested")).await, ErrorCode::InvalidParam, "Cannot start threads");
    refused(send(&env, reply(ALICE, &other, &root, "across")).await, ErrorCode::InvalidParam, "same room");
    // Relations to unknown events are kept (their parent may simply not be here yet).
    send(&env, reply(ALICE, &room, "$unknown", "orphan")).await.unwrap();
}
