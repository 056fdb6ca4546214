//! Room upgrades and knocking.

use serde_json::json;
use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

pub async fn upgrade_replaces_the_room(env: Env) {
    let mut req = create(ALICE);
    req.room_version = Some("10".into());
    req.preset = "public_chat".into();
    req.visibility = "public".into();
    req.name = Some("Old".into());
    req.topic = Some("kept".into());
    req.room_alias_name = Some("hall".into());
    let old = env.svc.create_room(req).await.unwrap().room_id;
    env.svc.change_membership(member(BOB, &old, MembershipAction::Join, None)).await.unwrap();
    env.svc.change_membership(member(ALICE, &old, MembershipAction::Ban, Some(CAROL))).await.unwrap();

    let upgrade = |sender: &str, version: &str| UpgradeRoomRequest {
        sender: sender.into(),
        room_id: old.clone(),
        new_version: version.into(),
        additional_creators: vec![],
    };
    refused(env.svc.upgrade_room(upgrade(BOB, "11")).await, ErrorCode::Forbidden, "power to upgrade");
    refused(env.svc.upgrade_room(upgrade(ALICE, "banana")).await, ErrorCode::UnsupportedRoomVersion, "banana");
    refused(env.svc.upgrade_room(upgrade(EVE, "11")).await, ErrorCode::Forbidden, "not in this room");
    let new = env.svc.upgrade_room(upgrade(ALICE, "11")).await.unwrap().replacement_room;

    let st = state_of(&env, ALICE, &new).await;
    let find = |t: &str, k: &str| st.iter().find(|e| e["type"] == t && e["state_key"] == k).cloned();
    let create_ev = find("m.room.create", "").unwrap();
    assert_eq!(create_ev["content"]["room_version"], "11");
    assert_eq!(create_ev["content"]["predecessor"]["room_id"], old.as_str());
    assert!(create_ev["content"].get("creator").is_none(), "v11 has no creator field");
    assert_eq!(find("m.room.name", "").unwrap()["content"]["name"], "Old");
    assert_eq!(find("m.room.topic", "").unwrap()["content"]["topic"], "kept");
    assert_eq!(find("m.room.join_rules", "").unwrap()["content"]["join_rule"], "public");
    assert_eq!(find("m.room.member", CAROL).unwrap()["content"]["membership"], "ban", "bans carry over");
    assert_eq!(find("m.room.canonical_alias", "").unwrap()["content"]["alias"], "#hall:localhost");
    assert_eq!(find("m.room.power_levels", "").unwrap()["content"]["users"][ALICE], 100);
    let alias = env.svc.resolve_alias(ResolveAliasRequest { alias: "#hall:localhost".into() }).await.unwrap();
    assert_eq!(alias.room_id, new, "local aliases move to the new room");
    let listed = |room: &str| GetDirectoryVisibilityRequest { room_id: room.into() };
    assert_eq!(env.svc.get_directory_visibility(listed(&new)).await.unwrap().visibility, "public");
    assert_eq!(env.svc.get_directory_visibility(listed(&old)).await.unwrap().visibility, "private");

    let old_state = state_of(&env, BOB, &old).await;
    let tombstone = old_state.iter().find(|e| e["type"] == "m.room.tombstone").unwrap();
    assert_eq!(tombstone["content"]["replacement_room"], new.as_str());
    let canonical = old_state.iter().find(|e| e["type"] == "m.room.canonical_alias").unwrap();
    assert_eq!(canonical["content"], json!({}));
    refused(send(&env, message(BOB, &old, "hello?", None)).await, ErrorCode::Forbidden, "power");
    env.svc.change_membership(member(BOB, &new, MembershipAction::Join, None)).await.unwrap();
    send(&env, message(BOB, &new, "hello", None)).await.unwrap();
}

pub async fn upgrade_raises_the_upgraders_power_while_copying(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    // Bob may send tombstones but not, say, encryption or server ACLs.
    let pl = power_levels(
        json!({ALICE: 100, BOB: 50}),
        json!({"events": {"m.room.tombstone": 50, "m.room.server_acl": 100, "m.room.power_levels": 100}}),
    );
    send(&env, state(ALICE, &room, "m.room.power_levels", pl.clone())).await.unwrap();
    let acl = json!({"allow": ["*"], "deny": []});
    send(&env, state(ALICE, &room, "m.room.server_acl", acl.clone())).await.unwrap();
    let req = UpgradeRoomRequest { sender: BOB.into(), room_id: room, new_version: "11".into(), ..Default::default() };
    let new = env.svc.upgrade_room(req).await.unwrap().replacement_room;
    let st = state_of(&env, BOB, &new).await;
    assert_eq!(st.iter().find(|e| e["type"] == "m.room.server_acl").unwrap()["content"], acl);
    let final_pl = &st.iter().find(|e| e["type"] == "m.room.power_levels").unwrap()["content"];
    assert_eq!(final_pl["users"][BOB], 50, "the original levels are restored after copying");
}

pub async fn knocking(env: Env) {
    let mut req = create(ALICE);
    req.room_alias_name = Some("door".into());
    let room = env.svc.create_room(req).await.unwrap().room_id;
    send(&env, state(ALICE, &room, "m.room.join_rules", json!({"join_rule": "knock"}))).await.unwrap();
    let mut knock = member(BOB, "#door:localhost", MembershipAction::Knock, None);
    knock.reason = Some("let me in".into());
    assert_eq!(env.svc.change_membership(knock.clone()).await.unwrap().room_id, room, "by alias");
    env.svc.change_membership(knock).await.unwrap(); // a repeat is a no-op
    let st = state_of(&env, ALICE, &room).await;
    let bob = st.iter().find(|e| e["state_key"] == BOB).unwrap();
    assert_eq!(
        (bob["content"]["membership"].as_str(), bob["content"]["reason"].as_str()),
        (Some("knock"), Some("let me in"))
    );
    // Denied: a kick. Then knocking again and being let in.
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Kick, Some(BOB))).await.unwrap();
    env.svc.change_membership(member(BOB, &room, MembershipAction::Knock, None)).await.unwrap();
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(BOB))).await.unwrap();
    refused(
        env.svc.change_membership(member(BOB, &room, MembershipAction::Knock, None)).await,
        ErrorCode::BadState,
        "invited",
    );
    env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    // Rescinding a knock is a leave.
    env.svc.change_membership(member(CAROL, &room, MembershipAction::Knock, None)).await.unwrap();
    env.svc.change_membership(member(CAROL, &room, MembershipAction::Leave, None)).await.unwrap();
    let err = env.svc.change_membership(member(EVE, "#nowhere:localhost", MembershipAction::Knock, None)).await;
    assert_eq!(err.unwrap_err().code(), ErrorCode::NotFound);
    // v10 and v11 both allow knocking; invite-only rooms do not.
    let private = room_with(&env, "private_chat", &[]).await;
    refused(
        env.svc.change_membership(member(EVE, &private, MembershipAction::Knock, None)).await,
        ErrorCode::Forbidden,
        "knock",
    );
}
