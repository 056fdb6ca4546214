//! Reading as history visibility allows: `/messages`, `/event`, `/context`, `/state` and
//! `/members` for members, newcomers, former members, invitees and outsiders; forgetting.

use serde_json::json;
use trellis_core::{ErrorCode, StreamToken};
use trellis_proto::rooms::*;

use crate::common::*;

async fn bodies_for(env: &Env, user: &str, room: &str) -> Vec<String> {
    message_bodies(&parse_all(&messages(env, user, room, None, false, 100).await.chunk_json))
}

pub async fn joined_visibility_hides_what_came_before(env: Env) {
    let room = room_with(&env, "private_chat", &[]).await;
    visibility(&env, &room, "joined").await;
    let before = send(&env, message(ALICE, &room, "before", None)).await.unwrap();
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(BOB))).await.unwrap();
    send(&env, message(ALICE, &room, "while invited", None)).await.unwrap();
    env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    let after = send(&env, message(ALICE, &room, "after", None)).await.unwrap();
    assert_eq!(bodies_for(&env, BOB, &room).await, vec!["after"]);
    assert_eq!(bodies_for(&env, ALICE, &room).await, vec!["before", "while invited", "after"]);
    assert_eq!(event(&env, BOB, &room, &before).await.unwrap_err().code(), ErrorCode::NotFound);
    assert_eq!(event(&env, BOB, &room, &after).await.unwrap()["content"]["body"], "after");
    // Bob sees his own join (his membership after it allows it), not his invite.
    let page = parse_all(&messages(&env, BOB, &room, None, false, 100).await.chunk_json);
    let own: Vec<&str> = page
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["state_key"] == BOB)
        .map(|e| e["content"]["membership"].as_str().unwrap())
        .collect();
    assert_eq!(own, vec!["join"]);
}

pub async fn invited_and_shared_visibility(env: Env) {
    let room = room_with(&env, "private_chat", &[]).await;
    visibility(&env, &room, "invited").await;
    send(&env, message(ALICE, &room, "before invite", None)).await.unwrap();
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(BOB))).await.unwrap();
    send(&env, message(ALICE, &room, "after invite", None)).await.unwrap();
    env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    assert_eq!(bodies_for(&env, BOB, &room).await, vec!["after invite"]);

    visibility(&env, &room, "shared").await;
    send(&env, message(ALICE, &room, "shared", None)).await.unwrap();
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(CAROL))).await.unwrap();
    env.svc.change_membership(member(CAROL, &room, MembershipAction::Join, None)).await.unwrap();
    assert_eq!(bodies_for(&env, CAROL, &room).await, vec!["shared"], "shared history, not the earlier invited-only");
}

pub async fn world_readable_rooms_are_readable_by_anyone(env: Env) {
    let room = room_with(&env, "public_chat", &[]).await;
    let refused_state = env.svc.get_state(GetStateRequest { user_id: EVE.into(), room_id: room.clone() }).await;
    assert_eq!(refused_state.unwrap_err().code(), ErrorCode::Forbidden, "shared rooms are for members");
    visibility(&env, &room, "world_readable").await;
    let open = send(&env, message(ALICE, &room, "open", None)).await.unwrap();
    assert_eq!(bodies_for(&env, EVE, &room).await, vec!["open"]);
    assert_eq!(event(&env, EVE, &room, &open).await.unwrap()["content"]["body"], "open");
    assert!(!state_of(&env, EVE, &room).await.is_empty());
    visibility(&env, &room, "joined").await;
    send(&env, message(ALICE, &room, "closed", None)).await.unwrap();
    // The room is no longer world-readable: outsiders may not read it at all now.
    let err =
        env.svc.get_messages(GetMessagesRequest { user_id: EVE.into(), room_id: room.clone(), ..Default::default() });
    assert_eq!(err.await.unwrap_err().code(), ErrorCode::Forbidden);
}

pub async fn former_members_read_until_they_left_then_forget(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    send(&env, message(ALICE, &room, "together", None)).await.unwrap();
    let err = env.svc.forget(ForgetRequest { user_id: BOB.into(), room_id: room.clone() }).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::Unknown, 400), "leave before forgetting");
    env.svc.change_membership(member(BOB, &room, MembershipAction::Leave, None)).await.unwrap();
    let later = send(&env, message(ALICE, &room, "later", None)).await.unwrap();
    assert_eq!(bodies_for(&env, BOB, &room).await, vec!["together"]);
    assert_eq!(event(&env, BOB, &room, &later).await.unwrap_err().code(), ErrorCode::NotFound);

    env.svc.forget(ForgetRequest { user_id: BOB.into(), room_id: room.clone() }).await.unwrap();
    let err =
        env.svc.get_messages(GetMessagesRequest { user_id: BOB.into(), room_id: room.clone(), ..Default::default() });
    assert_eq!(err.await.unwrap_err().code(), ErrorCode::Forbidden, "a forgotten room is no longer readable");
    // Joining again un-forgets it.
    env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    assert_eq!(bodies_for(&env, BOB, &room).await, vec!["together", "later"]);
}

pub async fn context_around_an_event(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    let mut ids = Vec::new();
    for i in 0..9 {
        let sender = if i % 2 == 0 { ALICE } else { BOB };
        ids.push(send(&env, message(sender, &room, &format!("m{i}"), None)).await.unwrap());
    }
    let ctx = |limit: u32, filter: Option<serde_json::Value>| GetContextRequest {
        user_id: ALICE.into(),
        device_id: "DEV".into(),
        room_id: room.clone(),
        event_id: ids[4].clone(),
        limit,
        filter_json: filter.map(|f| f.to_string()),
    };
    let c = env.svc.get_context(ctx(4, None)).await.unwrap();
    let event: serde_json::Value = serde_json::from_str(&c.event_json).unwrap();
    assert_eq!(event["content"]["body"], "m4");
    assert_eq!(message_bodies(&parse_all(&c.events_before_json)), vec!["m3", "m2"], "newest first");
    assert_eq!(message_bodies(&parse_all(&c.events_after_json)), vec!["m5", "m6"]);
    let state = parse_all(&c.state_json);
    assert!(state.iter().any(|e| e["type"] == "m.room.create") && state.iter().any(|e| e["state_key"] == BOB));
    // The tokens continue in /messages from either edge.
    let back = messages(&env, ALICE, &room, Some(c.start.clone()), true, 2).await;
    assert_eq!(message_bodies(&parse_all(&back.chunk_json)), vec!["m1", "m0"]);
    let fwd = messages(&env, ALICE, &room, Some(c.end.clone()), false, 2).await;
    assert_eq!(message_bodies(&parse_all(&fwd.chunk_json)), vec!["m7", "m8"]);

    // A filter narrows the surrounding events and the state, never the event itself.
    let only_bob = json!({"senders": [BOB], "lazy_load_members": true});
    let c = env.svc.get_context(ctx(4, Some(only_bob))).await.unwrap();
    assert_eq!(message_bodies(&parse_all(&c.events_before_json)), vec!["m3", "m1"]);
    assert_eq!(message_bodies(&parse_all(&c.events_after_json)), vec!["m5", "m7"]);
    let members: Vec<String> =
        parse_all(&c.state_json).iter().map(|e| e["state_key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(members, vec![BOB.to_string()], "lazy-loaded: only the members the filtered events need");
    let c = env.svc.get_context(ctx(0, None)).await.unwrap();
    assert!(c.events_before_json.is_empty() && c.events_after_json.is_empty() && !c.event_json.is_empty());

    let mut missing = ctx(4, None);
    missing.event_id = "$nope".into();
    assert_eq!(env.svc.get_context(missing).await.unwrap_err().code(), ErrorCode::NotFound);
    let mut outsider = ctx(4, None);
    outsider.user_id = EVE.into();
    assert_eq!(env.svc.get_context(outsider).await.unwrap_err().code(), ErrorCode::Forbidden);
}

pub async fn members_and_joined_members(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    send(&env, member_state(BOB, &room, BOB, json!({"membership": "join", "displayname": "Bobby"}))).await.unwrap();
    let before_carol = messages(&env, ALICE, &room, None, true, 1).await.start;
    env.svc.change_membership(member(CAROL, &room, MembershipAction::Join, None)).await.unwrap();
    env.svc.change_membership(member(CAROL, &room, MembershipAction::Leave, None)).await.unwrap();
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(EVE))).await.unwrap();

    let members = |membership: Option<&str>, not: Option<&str>, at: Option<String>| GetMembersRequest {
        user_id: BOB.into(),
        room_id: room.clone(),
        at,
        membership: membership.map(Into::into),
        not_membership: not.map(Into::into),
    };
    let keys = |list: EventList| -> Vec<String> {
        let mut k: Vec<String> =
            parse_all(&list.events_json).iter().map(|e| e["state_key"].as_str().unwrap().to_owned()).collect();
        k.sort();
        k
    };
    assert_eq!(keys(env.svc.get_members(members(None, None, None)).await.unwrap()), vec![ALICE, BOB, CAROL, EVE]);
    assert_eq!(keys(env.svc.get_members(members(Some("join"), None, None)).await.unwrap()), vec![ALICE, BOB]);
    assert_eq!(keys(env.svc.get_members(members(None, Some("leave"), None)).await.unwrap()), vec![ALICE, BOB, EVE]);
    assert_eq!(keys(env.svc.get_members(members(Some("invite"), None, None)).await.unwrap()), vec![EVE]);
    assert_eq!(keys(env.svc.get_members(members(None, None, Some(before_carol))).await.unwrap()), vec![ALICE, BOB]);
    let bad = env.svc.get_members(members(Some("dancing"), None, None)).await.unwrap_err();
    assert_eq!(bad.code(), ErrorCode::InvalidParam);
    let bad = env.svc.get_members(members(None, None, Some("garbage".into()))).await.unwrap_err();
    assert_eq!(bad.code(), ErrorCode::InvalidParam);
    let future = StreamToken::new(i64::MAX / 2).to_string();
    assert_eq!(keys(env.svc.get_members(members(Some("join"), None, Some(future))).await.unwrap()), vec![ALICE, BOB]);

    let joined =
        env.svc.joined_members(JoinedMembersRequest { user_id: BOB.into(), room_id: room.clone() }).await.unwrap();
    let mut names: Vec<(String, Option<String>)> =
        joined.members.into_iter().map(|m| (m.user_id, m.display_name)).collect();
    names.sort();
    assert_eq!(names, vec![(ALICE.into(), None), (BOB.into(), Some("Bobby".into()))]);
    let err = env.svc.joined_members(JoinedMembersRequest { user_id: CAROL.into(), room_id: room.clone() }).await;
    assert!(err.is_ok(), "a former member sees the members as of leaving");
    let err = env.svc.joined_members(JoinedMembersRequest { user_id: "@nobody:localhost".into(), room_id: room }).await;
    assert_eq!(err.unwrap_err().code(), ErrorCode::Forbidden);
}
