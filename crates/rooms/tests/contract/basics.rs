//! The basics: createRoom's events, room versions, aliases, idempotent sends, membership
//! transitions, power levels, pagination, former members' view, errors over the hop.

use serde_json::{Value, json};
use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

pub async fn create_room_writes_the_prescribed_events(env: Env) {
    let mut req = create(ALICE);
    req.name = Some("Tea".into());
    req.topic = Some("Leaves".into());
    req.invite = vec![BOB.into()];
    req.is_direct = true;
    req.room_alias_name = Some("tea".into());
    req.initial_state_json =
        vec![json!({"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}).to_string()];
    let room = env.svc.create_room(req).await.unwrap().room_id;
    assert!(room.starts_with('!') && room.ends_with(":localhost"), "{room}");

    let all = messages(&env, ALICE, &room, None, false, 100).await;
    let kinds: Vec<(String, String)> = all
        .chunk_json
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .map(|e| (e["type"].as_str().unwrap().to_owned(), e["state_key"].as_str().unwrap_or("").to_owned()))
        .collect();
    let expected = [
        ("m.room.create", ""),
        ("m.room.member", ALICE),
        ("m.room.power_levels", ""),
        ("m.room.canonical_alias", ""),
        ("m.room.join_rules", ""),
        ("m.room.guest_access", ""),
        ("m.room.history_visibility", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", BOB),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(kinds, expected);

    let st = state_of(&env, ALICE, &room).await;
    let find = |t: &str, k: &str| st.iter().find(|e| e["type"] == t && e["state_key"] == k).cloned().unwrap();
    assert_eq!(find("m.room.join_rules", "")["content"]["join_rule"], "invite");
    assert_eq!(
        find("m.room.history_visibility", "")["content"]["history_visibility"],
        "joined",
        "initial_state wins over the preset"
    );
    assert_eq!(find("m.room.canonical_alias", "")["content"]["alias"], "#tea:localhost");
    assert_eq!(find("m.room.member", BOB)["content"]["membership"], "invite");
    assert_eq!(find("m.room.member", BOB)["content"]["is_direct"], true);
    assert_eq!(find("m.room.power_levels", "")["content"]["users"][ALICE], 100);
    let create_ev = find("m.room.create", "");
    assert_eq!(create_ev["content"]["room_version"], "11");
    // Room v11: the event ID is the URL-safe reference hash.
    let id = create_ev["event_id"].as_str().unwrap();
    assert!(id.starts_with('$') && id.len() == 44 && !id.contains('/') && !id.contains('+'), "{id}");

    let joined = env.svc.joined_rooms(JoinedRoomsRequest { user_id: ALICE.into() }).await.unwrap();
    assert_eq!(joined.room_ids, vec![room.clone()]);
    assert!(env.svc.joined_rooms(JoinedRoomsRequest { user_id: BOB.into() }).await.unwrap().room_ids.is_empty());
}

pub async fn room_versions(env: Env) {
    let mut req = create(ALICE);
    req.room_version = Some("10".into());
    let room = env.svc.create_room(req).await.unwrap().room_id;
    let st = state_of(&env, ALICE, &room).await;
    let c = st.iter().find(|e| e["type"] == "m.room.create").unwrap();
    assert_eq!(c["content"]["room_version"], "10");
    assert_eq!(c["content"]["creator"], ALICE, "v10 create events carry the creator");
    for bad in ["0", "13", "org.matrix.msc2870", "banana"] {
        let mut req = create(ALICE);
        req.room_version = Some(bad.into());
        assert_eq!(code(env.svc.create_room(req).await.unwrap_err()), ErrorCode::UnsupportedRoomVersion, "{bad}");
    }
}

pub async fn aliases(env: Env) {
    let mut req = create(ALICE);
    req.room_alias_name = Some("lobby".into());
    req.visibility = "public".into();
    let room = env.svc.create_room(req.clone()).await.unwrap().room_id;
    let resolved = env.svc.resolve_alias(ResolveAliasRequest { alias: "#lobby:localhost".into() }).await.unwrap();
    assert_eq!(resolved.room_id, room);
    assert_eq!(resolved.servers, vec!["localhost".to_string()]);
    assert_eq!(code(env.svc.create_room(req).await.unwrap_err()), ErrorCode::RoomInUse);
    let err = env.svc.resolve_alias(ResolveAliasRequest { alias: "#nope:localhost".into() }).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::NotFound);
    // Public preset: anyone may join by alias.
    let joined =
        env.svc.change_membership(member(BOB, "#lobby:localhost", MembershipAction::Join, None)).await.unwrap();
    assert_eq!(joined.room_id, room);
    let mut bad = create(ALICE);
    bad.room_alias_name = Some("has space".into());
    assert_eq!(code(env.svc.create_room(bad).await.unwrap_err()), ErrorCode::InvalidParam);
}

pub async fn sending_is_idempotent_per_transaction(env: Env) {
    let room = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    let first = env.svc.send_event(message(ALICE, &room, "once", Some("t1"))).await.unwrap().event_id;
    let again = env.svc.send_event(message(ALICE, &room, "once", Some("t1"))).await.unwrap().event_id;
    assert_eq!(first, again);
    let other = env.svc.send_event(message(ALICE, &room, "twice", Some("t2"))).await.unwrap().event_id;
    assert_ne!(first, other);
    // Concurrent retries of one transaction still store one event.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let svc = env.svc.clone();
        let room = room.clone();
        handles.push(tokio::spawn(async move {
            svc.send_event(message(ALICE, &room, "race", Some("t3"))).await.unwrap().event_id
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one event for one transaction");
    let page = messages(&env, ALICE, &room, None, true, 50).await;
    assert_eq!(bodies(&page), vec!["race", "twice", "once"]);
    let mine: Value = serde_json::from_str(&page.chunk_json[2]).unwrap();
    assert_eq!(mine["unsigned"]["transaction_id"], "t1", "the sending device sees its transaction ID");
}

pub async fn membership_transitions(env: Env) {
    let room = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    // Private room: no join without an invite; no sending while not joined.
    let err = env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::Forbidden);
    assert_eq!(code(env.svc.send_event(message(BOB, &room, "hi", None)).await.unwrap_err()), ErrorCode::Forbidden);
    // A user who is not in the room cannot invite.
    let err = env.svc.change_membership(member(EVE, &room, MembershipAction::Invite, Some(BOB))).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::Forbidden);

    env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(BOB))).await.unwrap();
    env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    // Joining again is a no-op: no new event.
    let before = messages(&env, ALICE, &room, None, true, 100).await.chunk_json.len();
    env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    assert_eq!(messages(&env, ALICE, &room, None, true, 100).await.chunk_json.len(), before);
    env.svc.send_event(message(BOB, &room, "hello", None)).await.unwrap();

    // Bob (power 0) cannot kick Alice; Alice kicks Bob with a reason.
    let err = env.svc.change_membership(member(BOB, &room, MembershipAction::Kick, Some(ALICE))).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::Forbidden);
    let mut kick = member(ALICE, &room, MembershipAction::Kick, Some(BOB));
    kick.reason = Some("tidy".into());
    env.svc.change_membership(kick).await.unwrap();
    let st = state_of(&env, ALICE, &room).await;
    let bob = st.iter().find(|e| e["state_key"] == BOB).unwrap();
    assert_eq!(bob["content"]["membership"], "leave");
    assert_eq!(bob["content"]["reason"], "tidy");
    assert_eq!(bob["sender"], ALICE);

    // Ban: cannot be invited or join until unbanned.
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Ban, Some(BOB))).await.unwrap();
    let err = env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(BOB))).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::Forbidden);
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Unban, Some(BOB))).await.unwrap();
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(BOB))).await.unwrap();
    // Rejecting an invite is a leave.
    env.svc.change_membership(member(BOB, &room, MembershipAction::Leave, None)).await.unwrap();
    let st = state_of(&env, ALICE, &room).await;
    assert_eq!(st.iter().find(|e| e["state_key"] == BOB).unwrap()["content"]["membership"], "leave");
    // Leaving a room one was never in is refused.
    let err = env.svc.change_membership(member(EVE, &room, MembershipAction::Leave, None)).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::Forbidden);
    // Unknown room.
    let err =
        env.svc.change_membership(member(BOB, "!nope:localhost", MembershipAction::Join, None)).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::NotFound);
}

pub async fn power_levels_guard_state(env: Env) {
    let mut req = create(ALICE);
    req.preset = "public_chat".into();
    let room = env.svc.create_room(req).await.unwrap().room_id;
    env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    let err = env.svc.send_event(state(BOB, &room, "m.room.name", json!({"name": "mine"}))).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::Forbidden, "state_default is 50, Bob has 0");
    env.svc.send_event(state(ALICE, &room, "m.room.name", json!({"name": "ours"}))).await.unwrap();
    let got = env
        .svc
        .get_state_event(GetStateEventRequest {
            user_id: BOB.into(),
            room_id: room.clone(),
            event_type: "m.room.name".into(),
            state_key: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&got.content_json).unwrap(), json!({"name": "ours"}));
    let missing = env
        .svc
        .get_state_event(GetStateEventRequest {
            user_id: BOB.into(),
            room_id: room.clone(),
            event_type: "m.room.topic".into(),
            state_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(missing), ErrorCode::NotFound);
    // Raising Bob's power level lets him.
    let pl = json!({"users": {ALICE: 100, BOB: 50}, "state_default": 50, "events_default": 0, "users_default": 0,
                    "ban": 50, "kick": 50, "redact": 50, "invite": 0, "events": {"m.room.power_levels": 100}});
    env.svc.send_event(state(ALICE, &room, "m.room.power_levels", pl)).await.unwrap();
    env.svc.send_event(state(BOB, &room, "m.room.name", json!({"name": "mine"}))).await.unwrap();
    // A creation event cannot be sent into an existing room.
    let err =
        env.svc.send_event(state(ALICE, &room, "m.room.create", json!({"room_version": "11"}))).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::Forbidden);
}

pub async fn history_pagination(env: Env) {
    let room = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    for i in 0..25 {
        env.svc.send_event(message(ALICE, &room, &format!("m{i}"), None)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut from = None;
    loop {
        let page = messages(&env, ALICE, &room, from.clone(), true, 10).await;
        seen.extend(bodies(&page));
        match page.end {
            Some(end) => from = Some(end),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected, "backwards pagination sees every message once, newest first");

    // Forwards from the start, in order.
    let mut fwd = Vec::new();
    let mut from = None;
    loop {
        let page = messages(&env, ALICE, &room, from.clone(), false, 7).await;
        fwd.extend(bodies(&page));
        match page.end {
            Some(end) => from = Some(end),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    assert_eq!(fwd, expected);

    // Filters apply.
    let filtered = env
        .svc
        .get_messages(GetMessagesRequest {
            user_id: ALICE.into(),
            device_id: "DEV".into(),
            room_id: room.clone(),
            backwards: true,
            limit: 100,
            filter_json: Some(json!({"types": ["m.room.mem*"]}).to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.chunk_json.len(), 1, "only the creator's join matches m.room.mem*");
    let bad = env
        .svc
        .get_messages(GetMessagesRequest {
            user_id: ALICE.into(),
            room_id: room.clone(),
            from: Some("garbage".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(code(bad), ErrorCode::InvalidParam);
    let outsider = env
        .svc
        .get_messages(GetMessagesRequest { user_id: EVE.into(), room_id: room.clone(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(code(outsider), ErrorCode::Forbidden);
}

pub async fn former_members_see_state_as_of_leaving(env: Env) {
    let mut req = create(ALICE);
    req.preset = "public_chat".into();
    let room = env.svc.create_room(req).await.unwrap().room_id;
    env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    env.svc.send_event(state(ALICE, &room, "m.room.topic", json!({"topic": "before"}))).await.unwrap();
    env.svc.change_membership(member(BOB, &room, MembershipAction::Leave, None)).await.unwrap();
    env.svc.send_event(state(ALICE, &room, "m.room.topic", json!({"topic": "after"}))).await.unwrap();
    env.svc.send_event(message(ALICE, &room, "secret", None)).await.unwrap();
    let st = state_of(&env, BOB, &room).await;
    let topic = st.iter().find(|e| e["type"] == "m.room.topic").unwrap();
    assert_eq!(topic["content"]["topic"], "before");
    let page = messages(&env, BOB, &room, None, true, 100).await;
    assert!(!bodies(&page).contains(&"secret".to_string()), "nothing after leaving");
}

pub async fn errors_cross_the_hop(env: Env) {
    let err = env.svc.send_event(message(ALICE, "not-a-room", "x", None)).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::InvalidParam, 400));
    let room = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    let mut bad = message(ALICE, &room, "x", None);
    bad.content_json = "{\"a\": 1.5}".into();
    let err = env.svc.send_event(bad).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::BadJson, 400));
    let mut big = message(ALICE, &room, &"x".repeat(70_000), None);
    big.txn_id = None;
    let err = env.svc.send_event(big).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::TooLarge, 413));
}
