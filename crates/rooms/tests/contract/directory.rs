//! Aliases and the published room directory.

use serde_json::{Value, json};
use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

fn set_alias(sender: &str, alias: &str, room: &str) -> SetAliasRequest {
    SetAliasRequest { sender: sender.into(), alias: alias.into(), room_id: room.into(), appservice_id: None }
}

pub async fn alias_lifecycle(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    env.svc.set_alias(set_alias(BOB, "#bobs:localhost", &room)).await.unwrap();
    let resolved = env.svc.resolve_alias(ResolveAliasRequest { alias: "#bobs:localhost".into() }).await.unwrap();
    assert_eq!(resolved.room_id, room);
    let err = env.svc.set_alias(set_alias(ALICE, "#bobs:localhost", &room)).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::Unknown, 409), "taken");
    refused(env.svc.set_alias(set_alias(EVE, "#eves:localhost", &room)).await, ErrorCode::Forbidden, "in the room");
    refused(env.svc.set_alias(set_alias(ALICE, "#x:elsewhere.example", &room)).await, ErrorCode::InvalidParam, "local");
    refused(env.svc.set_alias(set_alias(ALICE, "nohash", &room)).await, ErrorCode::InvalidParam, "invalid");
    env.svc.set_alias(set_alias(ALICE, "#alices:localhost", &room)).await.unwrap();

    let listed = env.svc.room_aliases(RoomAliasesRequest { user_id: BOB.into(), room_id: room.clone() }).await.unwrap();
    assert_eq!(listed.aliases, vec!["#alices:localhost", "#bobs:localhost"]);
    let err = env.svc.room_aliases(RoomAliasesRequest { user_id: EVE.into(), room_id: room.clone() }).await;
    assert_eq!(err.unwrap_err().code(), ErrorCode::Forbidden);

    // The canonical alias may only name aliases that point at the room.
    let canonical = |c: Value| state(ALICE, &room, "m.room.canonical_alias", c);
    refused(send(&env, canonical(json!({"alias": "#nowhere:localhost"}))).await, ErrorCode::BadAlias, "does not point");
    refused(
        send(&env, canonical(json!({"alt_aliases": ["bad"]}))).await,
        ErrorCode::InvalidParam,
        "invalid room alias",
    );
    refused(send(&env, canonical(json!({"alias": 5}))).await, ErrorCode::InvalidParam, "string");
    send(&env, canonical(json!({"alias": "#alices:localhost", "alt_aliases": ["#bobs:localhost"]}))).await.unwrap();

    // Bob created #bobs and may delete it; he may not delete Alice's. Deleting takes the
    // alias out of the canonical alias event when the deleter may change it (Bob may not:
    // the alias goes anyway, as the spec recommends).
    let delete = |sender: &str, alias: &str| DeleteAliasRequest { sender: sender.into(), alias: alias.into() };
    refused(env.svc.delete_alias(delete(BOB, "#alices:localhost")).await, ErrorCode::Forbidden, "may not delete");
    env.svc.delete_alias(delete(BOB, "#bobs:localhost")).await.unwrap();
    let err = env.svc.resolve_alias(ResolveAliasRequest { alias: "#bobs:localhost".into() }).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    env.svc.delete_alias(delete(ALICE, "#alices:localhost")).await.unwrap();
    let c = state_of(&env, ALICE, &room).await.into_iter().find(|e| e["type"] == "m.room.canonical_alias").unwrap();
    assert_eq!(c["content"], json!({"alt_aliases": ["#bobs:localhost"]}));
    let err = env.svc.delete_alias(delete(ALICE, "#alices:localhost")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}

pub async fn directory_visibility(env: Env) {
    let room = room_with(&env, "private_chat", &[BOB]).await;
    let get = |room: &str| GetDirectoryVisibilityRequest { room_id: room.into() };
    assert_eq!(env.svc.get_directory_visibility(get(&room)).await.unwrap().visibility, "private");
    let set = |sender: &str, v: &str| SetDirectoryVisibilityRequest {
        sender: sender.into(),
        room_id: room.clone(),
        visibility: v.into(),
    };
    refused(env.svc.set_directory_visibility(set(BOB, "public")).await, ErrorCode::Forbidden, "may not");
    env.svc.set_directory_visibility(set(ALICE, "public")).await.unwrap();
    assert_eq!(env.svc.get_directory_visibility(get(&room)).await.unwrap().visibility, "public");
    refused(env.svc.set_directory_visibility(set(ALICE, "sideways")).await, ErrorCode::InvalidParam, "visibility");
    let err = env.svc.get_directory_visibility(get("!nope:localhost")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}

pub async fn public_rooms_list_search_and_pages(env: Env) {
    let mut rooms = Vec::new();
    for (name, topic, members) in [
        ("Tea room", "leaves", &[BOB, CAROL][..]),
        ("Coffee room", "beans", &[BOB][..]),
        ("Quiet", "tea later", &[][..]),
    ] {
        let mut req = create(ALICE);
        req.visibility = "public".into();
        req.name = Some(name.into());
        req.topic = Some(topic.into());
        let room = env.svc.create_room(req).await.unwrap().room_id;
        for m in members {
            env.svc.change_membership(member(m, &room, MembershipAction::Join, None)).await.unwrap();
        }
        rooms.push(room);
    }
    let mut space = create(ALICE);
    space.visibility = "public".into();
    space.creation_content_json = Some(json!({"type": "m.space"}).to_string());
    let space = env.svc.create_room(space).await.unwrap().room_id;
    env.svc.create_room(create(ALICE)).await.unwrap(); // private: never listed

    let list = |req: PublicRoomsRequest| {
        let env = &env;
        async move {
            let resp = env.svc.public_rooms(req).await.unwrap();
            let chunk = parse_all(&resp.chunk_json);
            (resp, chunk)
        }
    };
    let (all, chunk) = list(PublicRoomsRequest::default()).await;
    assert_eq!(all.total_room_count_estimate, 4);
    assert_eq!(chunk[0]["room_id"], rooms[0].as_str(), "most members first");
    assert_eq!(chunk[0]["num_joined_members"], 3);
    assert_eq!(chunk[0]["name"], "Tea room");
    assert_eq!(chunk[0]["topic"], "leaves");
    assert_eq!(chunk[0]["join_rule"], "public");
    assert_eq!((chunk[0]["world_readable"].clone(), chunk[0]["guest_can_join"].clone()), (json!(false), json!(false)));
    assert!(chunk.iter().any(|c| c["room_id"] == space.as_str() && c["room_type"] == "m.space"));

    let (page1, c1) = list(PublicRoomsRequest { limit: Some(2), ..Default::default() }).await;
    assert_eq!((c1.len(), page1.prev_batch.is_none()), (2, true));
    let (page2, c2) = list(PublicRoomsRequest { limit: Some(2), since: page1.next_batch, ..Default::default() }).await;
    assert_eq!(c2.len(), 2);
    assert!(page2.next_batch.is_none() && page2.prev_batch.is_some());
    assert!(
        c1.iter().chain(&c2).map(|c| c["room_id"].as_str().unwrap()).collect::<std::collections::HashSet<_>>().len()
            == 4
    );

    let (_, found) = list(PublicRoomsRequest { search_term: Some("TEA".into()), ..Default::default() }).await;
    let found: Vec<&str> = found.iter().map(|c| c["room_id"].as_str().unwrap()).collect();
    assert_eq!(found, vec![rooms[0].as_str(), rooms[2].as_str()], "name or topic, case-insensitively");
    let (_, spaces) =
        list(PublicRoomsRequest { filter_room_types: true, room_types: vec!["m.space".into()], ..Default::default() })
            .await;
    assert_eq!(spaces.len(), 1);
    let (_, plain) =
        list(PublicRoomsRequest { filter_room_types: true, room_types: vec![String::new()], ..Default::default() })
            .await;
    assert_eq!(plain.len(), 3);

    let bad = env.svc.public_rooms(PublicRoomsRequest { since: Some("nonsense".into()), ..Default::default() }).await;
    assert_eq!(bad.unwrap_err().code(), ErrorCode::InvalidParam);
    let remote =
        env.svc.public_rooms(PublicRoomsRequest { server: Some("elsewhere.example".into()), ..Default::default() });
    assert_eq!(remote.await.unwrap_err().code(), ErrorCode::NotFound);
}
