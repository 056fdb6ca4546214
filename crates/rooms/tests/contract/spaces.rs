//! Spaces: the hierarchy below a space and room summaries, through the service contract.

use serde_json::json;
use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

pub async fn hierarchy_and_summaries(env: Env) {
    let mut req = create(ALICE);
    req.preset = "public_chat".into();
    req.name = Some("Space".into());
    req.creation_content_json = Some(json!({"type": "m.space"}).to_string());
    let space = env.svc.create_room(req).await.unwrap().room_id;
    let child = room_with(&env, "private_chat", &[]).await;
    let mut link = state(ALICE, &space, "m.space.child", json!({"via": ["localhost"]}));
    link.state_key = Some(child.clone());
    send(&env, link).await.unwrap();

    let walk = |user: &str| HierarchyRequest { user_id: user.into(), room_id: space.clone(), ..Default::default() };
    let alices = env.svc.get_hierarchy(walk(ALICE)).await.unwrap();
    let ids: Vec<String> = alices.rooms.iter().map(|r| r.summary.clone().unwrap().room_id).collect();
    assert_eq!(ids, [space.clone(), child.clone()]);
    let top = alices.rooms[0].summary.clone().unwrap();
    assert_eq!(
        (top.name.as_deref(), top.room_type.as_deref(), top.join_rule.as_str()),
        (Some("Space"), Some("m.space"), "public")
    );
    assert_eq!(alices.rooms[0].children_state_json.len(), 1);
    let bobs = env.svc.get_hierarchy(walk(BOB)).await.unwrap();
    assert_eq!(bobs.rooms.len(), 1, "the private child is not Bob's to see");

    let summary =
        |user: Option<&str>, room: &str| RoomSummaryRequest { user_id: user.map(Into::into), room: room.into() };
    let anonymous = env.svc.get_room_summary(summary(None, &space)).await.unwrap();
    assert_eq!((anonymous.summary.unwrap().num_joined_members, anonymous.membership), (1, None));
    let err = env.svc.get_room_summary(summary(Some(BOB), &child)).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::NotFound);
    let mine = env.svc.get_room_summary(summary(Some(ALICE), &child)).await.unwrap();
    assert_eq!(mine.membership.as_deref(), Some("join"));
}
