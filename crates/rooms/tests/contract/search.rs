//! `search_events`: the index follows what is stored and redacted, pages continue where
//! they stopped (a group's token within its group), and visibility is never bypassed.

use serde_json::Value;
use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

fn request(user: &str, term: &str) -> SearchEventsRequest {
    SearchEventsRequest {
        user_id: user.into(),
        device_id: "DEV".into(),
        search_term: term.into(),
        order_by_recent: true,
        ..Default::default()
    }
}

fn found(resp: &SearchEventsResponse) -> Vec<String> {
    resp.results
        .iter()
        .map(|h| serde_json::from_str::<Value>(&h.event_json).unwrap()["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

pub async fn search_follows_the_index_and_visibility(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    let other = room_with(&env, "private_chat", &[]).await;
    send(&env, message(ALICE, &room, "cherry one", None)).await.unwrap();
    let two = send(&env, message(BOB, &room, "cherry two", None)).await.unwrap();
    send(&env, message(ALICE, &other, "cherry private", None)).await.unwrap();

    let bobs = env.svc.search_events(request(BOB, "cherries")).await.unwrap();
    assert_eq!(found(&bobs), ["cherry two", "cherry one"], "stemmed; never Alice's private room");
    assert_eq!(bobs.count, 2);
    let mut all = request(ALICE, "cherry");
    all.group_by_sender = true;
    all.filter_json = Some(r#"{"limit": 1}"#.into());
    let first = env.svc.search_events(all.clone()).await.unwrap();
    assert_eq!(found(&first), ["cherry private"]);
    assert!(first.next_batch.is_some());
    let alices = first.groups.iter().find(|g| g.key == "sender" && g.value == ALICE).unwrap();
    // Alice's group continues with her results only, skipping Bob's.
    let mut within = all.clone();
    within.next_batch = alices.next_batch.clone();
    assert_eq!(found(&env.svc.search_events(within).await.unwrap()), ["cherry one"]);

    env.svc.redact(redaction(BOB, &room, &two, None)).await.unwrap();
    assert_eq!(found(&env.svc.search_events(request(BOB, "cherry")).await.unwrap()), ["cherry one"]);

    let mut bad = request(BOB, "cherry");
    bad.next_batch = Some("r0.5_1".into());
    assert_eq!(
        code(env.svc.search_events(bad).await.unwrap_err()),
        ErrorCode::InvalidParam,
        "a rank token for a recent search"
    );
    let mut bad = request(BOB, "cherry");
    bad.keys = vec!["content.url".into()];
    assert_eq!(code(env.svc.search_events(bad).await.unwrap_err()), ErrorCode::InvalidParam);
}
