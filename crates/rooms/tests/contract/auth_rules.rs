//! The authorization rules of the default room version (11), one scenario per rule, each
//! showing an event the rule allows and one it refuses. ruma's `state_res` does the judging;
//! these prove every rule is applied on the one path events take, and that a refusal carries
//! `M_FORBIDDEN` naming the rule. (The rules on `auth_events`, which no client can choose,
//! are unit tests in `src/auth_events_rules.rs`.)

use serde_json::json;
use trellis_core::ErrorCode::{self, BadJson, Forbidden, UserSuspended};
use trellis_proto::rooms::*;

use crate::common::*;

async fn set_pl(env: &Env, room: &str, pl: serde_json::Value) {
    send(env, state(ALICE, room, "m.room.power_levels", pl)).await.unwrap();
}

async fn join_rules(env: &Env, room: &str, content: serde_json::Value) {
    send(env, state(ALICE, room, "m.room.join_rules", content)).await.unwrap();
}

fn act(sender: &str, room: &str, action: MembershipAction, target: Option<&str>) -> MembershipRequest {
    member(sender, room, action, target)
}

// Rule 1: m.room.create -----------------------------------------------------------------

pub async fn create_has_no_previous_events(env: Env) {
    let room = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    refused(
        send(&env, state(ALICE, &room, "m.room.create", json!({"room_version": "11"}))).await,
        Forbidden,
        "cannot have previous events",
    );
}

pub async fn create_room_id_domain_matches_sender(env: Env) {
    env.svc.create_room(create(ALICE)).await.unwrap();
    refused(env.svc.create_room(create(REMOTE)).await, Forbidden, "server name does not match");
}

pub async fn create_room_version_is_known(env: Env) {
    for v in ["1", "5", "10", "11", "12"] {
        let mut req = create(ALICE);
        req.room_version = Some(v.into());
        env.svc.create_room(req).await.unwrap();
    }
    for v in ["0", "13", "1.0", "banana"] {
        let mut req = create(ALICE);
        req.room_version = Some(v.into());
        refused(env.svc.create_room(req).await, ErrorCode::UnsupportedRoomVersion, "not supported");
    }
}

// Rule 3: m.federate --------------------------------------------------------------------

pub async fn unfederated_rooms_refuse_other_servers(env: Env) {
    let mut req = create(ALICE);
    req.creation_content_json = Some(json!({"m.federate": false}).to_string());
    req.preset = "public_chat".into();
    let room = env.svc.create_room(req).await.unwrap().room_id;
    send(&env, message(ALICE, &room, "local", None)).await.unwrap();
    refused(
        env.svc.change_membership(act(REMOTE, &room, MembershipAction::Join, None)).await,
        Forbidden,
        "not federated",
    );
}

// Rule 4: m.room.member -----------------------------------------------------------------

pub async fn member_events_need_a_membership(env: Env) {
    let room = room_with(&env, "public_chat", &[]).await;
    refused(send(&env, member_state(BOB, &room, BOB, json!({"displayname": "B"}))).await, BadJson, "membership");
    send(&env, member_state(BOB, &room, BOB, json!({"membership": "join"}))).await.unwrap();
    refused(
        send(&env, member_state(BOB, &room, BOB, json!({"membership": "dance"}))).await,
        Forbidden,
        "unknown membership",
    );
}

pub async fn join_only_by_the_user_themself(env: Env) {
    let room = room_with(&env, "public_chat", &[]).await;
    refused(
        send(&env, member_state(ALICE, &room, BOB, json!({"membership": "join"}))).await,
        Forbidden,
        "must match target user",
    );
    send(&env, member_state(BOB, &room, BOB, json!({"membership": "join"}))).await.unwrap();
}

pub async fn join_refused_while_banned(env: Env) {
    let room = room_with(&env, "public_chat", &[]).await;
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Ban, Some(BOB))).await.unwrap();
    refused(env.svc.change_membership(act(BOB, &room, MembershipAction::Join, None)).await, Forbidden, "banned user");
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Unban, Some(BOB))).await.unwrap();
    env.svc.change_membership(act(BOB, &room, MembershipAction::Join, None)).await.unwrap();
}

pub async fn join_invite_rule_needs_an_invite(env: Env) {
    let room = room_with(&env, "private_chat", &[]).await;
    refused(env.svc.change_membership(act(BOB, &room, MembershipAction::Join, None)).await, Forbidden, "not `public`");
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Invite, Some(BOB))).await.unwrap();
    env.svc.change_membership(act(BOB, &room, MembershipAction::Join, None)).await.unwrap();
}

pub async fn join_knock_rule_needs_an_invite(env: Env) {
    let room = room_with(&env, "private_chat", &[]).await;
    join_rules(&env, &room, json!({"join_rule": "knock"})).await;
    refused(env.svc.change_membership(act(BOB, &room, MembershipAction::Join, None)).await, Forbidden, "not `public`");
    env.svc.change_membership(act(BOB, &room, MembershipAction::Knock, None)).await.unwrap();
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Invite, Some(BOB))).await.unwrap();
    env.svc.change_membership(act(BOB, &room, MembershipAction::Join, None)).await.unwrap();
}

async fn restricted(env: &Env, rule: &str) -> (String, String) {
    let space = room_with(env, "public_chat", &[]).await;
    let room = room_with(env, "private_chat", &[]).await;
    join_rules(env, &room, json!({"join_rule": rule, "allow": [{"type": "m.room_membership", "room_id": space}]}))
        .await;
    (space, room)
}

async fn check_restricted_join(env: &Env, space: &str, room: &str) {
    refused(env.svc.change_membership(act(BOB, room, MembershipAction::Join, None)).await, Forbidden, "restricted");
    env.svc.change_membership(act(BOB, space, MembershipAction::Join, None)).await.unwrap();
    env.svc.change_membership(act(BOB, room, MembershipAction::Join, None)).await.unwrap();
    let st = state_of(env, BOB, room).await;
    let bob = st.iter().find(|e| e["state_key"] == BOB).unwrap();
    assert_eq!(bob["content"]["join_authorised_via_users_server"], ALICE, "a member who may invite authorised it");
    // A client cannot name its own authoriser to get in.
    let forged = json!({"membership": "join", "join_authorised_via_users_server": ALICE});
    refused(send(env, member_state(CAROL, room, CAROL, forged)).await, Forbidden, "restricted");
}

pub async fn join_restricted_rule_needs_an_allowed_membership(env: Env) {
    let (space, room) = restricted(&env, "restricted").await;
    check_restricted_join(&env, &space, &room).await;
}

pub async fn join_knock_restricted_rule(env: Env) {
    let (space, room) = restricted(&env, "knock_restricted").await;
    env.svc.change_membership(act(CAROL, &room, MembershipAction::Knock, None)).await.unwrap();
    check_restricted_join(&env, &space, &room).await;
}

pub async fn join_public_rule_admits_anyone(env: Env) {
    let room = room_with(&env, "public_chat", &[]).await;
    env.svc.change_membership(act(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    join_rules(&env, &room, json!({"join_rule": "private"})).await;
    refused(
        env.svc.change_membership(act(CAROL, &room, MembershipAction::Join, None)).await,
        Forbidden,
        "not `public`",
    );
}

pub async fn invite_needs_a_joined_sender(env: Env) {
    let room = room_with(&env, "private_chat", &[]).await;
    refused(
        send(&env, member_state(EVE, &room, BOB, json!({"membership": "invite"}))).await,
        Forbidden,
        "sender is not joined",
    );
    send(&env, member_state(ALICE, &room, BOB, json!({"membership": "invite"}))).await.unwrap();
}

pub async fn invite_refused_for_joined_or_banned_targets(env: Env) {
    let room = room_with(&env, "private_chat", &[BOB]).await;
    let invite = json!({"membership": "invite"});
    refused(send(&env, member_state(ALICE, &room, BOB, invite.clone())).await, Forbidden, "joined or banned");
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Ban, Some(CAROL))).await.unwrap();
    refused(send(&env, member_state(ALICE, &room, CAROL, invite.clone())).await, Forbidden, "joined or banned");
    send(&env, member_state(ALICE, &room, EVE, invite)).await.unwrap();
}

pub async fn invite_needs_the_invite_level(env: Env) {
    let room = room_with(&env, "private_chat", &[BOB]).await;
    set_pl(&env, &room, power_levels(json!({ALICE: 100}), json!({"invite": 50}))).await;
    refused(
        env.svc.change_membership(act(BOB, &room, MembershipAction::Invite, Some(CAROL))).await,
        Forbidden,
        "enough power to invite",
    );
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Invite, Some(CAROL))).await.unwrap();
}

pub async fn leave_by_self_needs_a_membership(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    refused(
        send(&env, member_state(EVE, &room, EVE, json!({"membership": "leave"}))).await,
        Forbidden,
        "not joined, invited or knocked",
    );
    send(&env, member_state(BOB, &room, BOB, json!({"membership": "leave"}))).await.unwrap();
}

pub async fn kick_needs_a_joined_sender(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    refused(
        send(&env, member_state(EVE, &room, BOB, json!({"membership": "leave"}))).await,
        Forbidden,
        "sender is not joined",
    );
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Kick, Some(BOB))).await.unwrap();
}

pub async fn kick_needs_power_over_the_target(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB, CAROL]).await;
    set_pl(&env, &room, power_levels(json!({ALICE: 100, BOB: 50}), json!({}))).await;
    refused(
        env.svc.change_membership(act(CAROL, &room, MembershipAction::Kick, Some(BOB))).await,
        Forbidden,
        "enough power to kick",
    );
    refused(
        env.svc.change_membership(act(BOB, &room, MembershipAction::Kick, Some(ALICE))).await,
        Forbidden,
        "enough power to kick",
    );
    env.svc.change_membership(act(BOB, &room, MembershipAction::Kick, Some(CAROL))).await.unwrap();
}

pub async fn unban_needs_the_ban_level(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    set_pl(&env, &room, power_levels(json!({ALICE: 100, BOB: 50}), json!({"ban": 60, "kick": 50}))).await;
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Ban, Some(CAROL))).await.unwrap();
    refused(
        env.svc.change_membership(act(BOB, &room, MembershipAction::Unban, Some(CAROL))).await,
        Forbidden,
        "enough power to unban",
    );
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Unban, Some(CAROL))).await.unwrap();
}

pub async fn ban_needs_a_joined_sender(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    refused(
        send(&env, member_state(EVE, &room, BOB, json!({"membership": "ban"}))).await,
        Forbidden,
        "cannot ban if sender is not joined",
    );
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Ban, Some(BOB))).await.unwrap();
}

pub async fn ban_needs_power_over_the_target(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB, CAROL]).await;
    set_pl(&env, &room, power_levels(json!({ALICE: 100, BOB: 50}), json!({}))).await;
    refused(
        env.svc.change_membership(act(CAROL, &room, MembershipAction::Ban, Some(BOB))).await,
        Forbidden,
        "enough power to ban",
    );
    refused(
        env.svc.change_membership(act(BOB, &room, MembershipAction::Ban, Some(ALICE))).await,
        Forbidden,
        "enough power to ban",
    );
    env.svc.change_membership(act(BOB, &room, MembershipAction::Ban, Some(CAROL))).await.unwrap();
}

pub async fn knock_needs_a_knock_join_rule(env: Env) {
    let room = room_with(&env, "private_chat", &[]).await;
    refused(
        env.svc.change_membership(act(BOB, &room, MembershipAction::Knock, None)).await,
        Forbidden,
        "knocking is not allowed",
    );
    join_rules(&env, &room, json!({"join_rule": "knock"})).await;
    env.svc.change_membership(act(BOB, &room, MembershipAction::Knock, None)).await.unwrap();
}

pub async fn knock_only_by_the_user_themself(env: Env) {
    let room = room_with(&env, "private_chat", &[]).await;
    join_rules(&env, &room, json!({"join_rule": "knock"})).await;
    refused(
        send(&env, member_state(ALICE, &room, BOB, json!({"membership": "knock"}))).await,
        Forbidden,
        "sender does not match target user",
    );
    send(&env, member_state(BOB, &room, BOB, json!({"membership": "knock"}))).await.unwrap();
}

pub async fn knock_refused_when_banned_invited_or_joined(env: Env) {
    let room = room_with(&env, "private_chat", &[BOB]).await;
    join_rules(&env, &room, json!({"join_rule": "knock"})).await;
    let knock = json!({"membership": "knock"});
    refused(send(&env, member_state(BOB, &room, BOB, knock.clone())).await, Forbidden, "banned, invited or joined");
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Invite, Some(CAROL))).await.unwrap();
    refused(send(&env, member_state(CAROL, &room, CAROL, knock.clone())).await, Forbidden, "banned, invited or joined");
    env.svc.change_membership(act(ALICE, &room, MembershipAction::Ban, Some(EVE))).await.unwrap();
    refused(send(&env, member_state(EVE, &room, EVE, knock.clone())).await, Forbidden, "banned, invited or joined");
    // After leaving, a knock is allowed again.
    env.svc.change_membership(act(BOB, &room, MembershipAction::Leave, None)).await.unwrap();
    send(&env, member_state(BOB, &room, BOB, knock)).await.unwrap();
}

// Rules 5-9: every other event -----------------------------------------------------------

pub async fn events_need_a_joined_sender(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    refused(send(&env, message(EVE, &room, "hi", None)).await, Forbidden, "not `join`");
    send(&env, message(BOB, &room, "hi", None)).await.unwrap();
    env.svc.change_membership(act(BOB, &room, MembershipAction::Leave, None)).await.unwrap();
    refused(send(&env, message(BOB, &room, "bye", None)).await, Forbidden, "not `join`");
}

pub async fn event_types_need_their_power_level(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    refused(
        send(&env, state(BOB, &room, "m.room.name", json!({"name": "n"}))).await,
        Forbidden,
        "enough power to send",
    );
    send(&env, state(ALICE, &room, "m.room.name", json!({"name": "n"}))).await.unwrap();
    set_pl(&env, &room, power_levels(json!({ALICE: 100}), json!({"events_default": 10}))).await;
    refused(send(&env, message(BOB, &room, "quiet", None)).await, Forbidden, "enough power to send");
    send(&env, message(ALICE, &room, "still here", None)).await.unwrap();
}

pub async fn user_state_keys_belong_to_their_user(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    set_pl(&env, &room, power_levels(json!({ALICE: 100}), json!({"events": {"org.example.status": 0}}))).await;
    let status = |key: &str| SendEventRequest {
        state_key: Some(key.into()),
        ..state(BOB, &room, "org.example.status", json!({"status": "busy"}))
    };
    refused(send(&env, status(ALICE)).await, Forbidden, "another user's ID");
    send(&env, status(BOB)).await.unwrap();
}

pub async fn power_levels_must_be_well_formed(env: Env) {
    let room = room_with(&env, "public_chat", &[]).await;
    let bad = [
        json!({"ban": "50"}),
        json!({"events": {"m.room.name": "50"}}),
        json!({"notifications": {"room": "50"}}),
        json!({"users": {ALICE: 100, "not-a-user": 5}}),
        json!({"users": {ALICE: "100"}}),
    ];
    for overrides in bad {
        let pl = power_levels(json!({ALICE: 100}), overrides.clone());
        let err = send(&env, state(ALICE, &room, "m.room.power_levels", pl)).await.unwrap_err();
        assert_eq!(err.code(), Forbidden, "{overrides}: {err:?}");
    }
    set_pl(&env, &room, power_levels(json!({ALICE: 100}), json!({"notifications": {"room": 20}}))).await;
}

pub async fn power_level_changes_stay_within_the_senders_level(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB, CAROL]).await;
    // Bob, a moderator, may send power levels but not beyond his own level of 50.
    let base = |over: serde_json::Value| {
        let mut pl = power_levels(json!({ALICE: 100, BOB: 50}), over);
        pl["events"]["m.room.power_levels"] = json!(50);
        pl
    };
    set_pl(&env, &room, base(json!({}))).await;
    let bob_sets = |pl| state(BOB, &room, "m.room.power_levels", pl);
    refused(send(&env, bob_sets(base(json!({"ban": 60})))).await, Forbidden, "change the power level of `ban`");
    let mut raise_history = base(json!({}));
    raise_history["events"]["m.room.history_visibility"] = json!(50);
    refused(send(&env, bob_sets(raise_history)).await, Forbidden, "m.room.history_visibility");
    send(&env, bob_sets(base(json!({"kick": 40})))).await.unwrap();
}

pub async fn power_level_changes_of_users(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB, CAROL]).await;
    let pl = |users: serde_json::Value| {
        let mut pl = power_levels(users, json!({"kick": 40}));
        pl["events"]["m.room.power_levels"] = json!(50);
        pl
    };
    set_pl(&env, &room, pl(json!({ALICE: 100, BOB: 50}))).await;
    let bob_sets = |users| state(BOB, &room, "m.room.power_levels", pl(users));
    refused(send(&env, bob_sets(json!({ALICE: 100, BOB: 50, CAROL: 60}))).await, Forbidden, "power level");
    refused(send(&env, bob_sets(json!({ALICE: 40, BOB: 50}))).await, Forbidden, "power level");
    send(&env, bob_sets(json!({ALICE: 100, BOB: 50, CAROL: 50}))).await.unwrap();
    // Lowering oneself is always allowed.
    send(&env, bob_sets(json!({ALICE: 100, BOB: 10, CAROL: 50}))).await.unwrap();
}

// Redactions (client-server rule; the v11 auth rules accept every redaction) ------------------

pub async fn redactions_of_others_need_the_redact_level(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    let bobs = send(&env, message(BOB, &room, "mine", None)).await.unwrap();
    let alices = send(&env, message(ALICE, &room, "hers", None)).await.unwrap();
    let redact = |sender: &str, event_id: &str| RedactRequest {
        sender: sender.into(),
        device_id: "DEV".into(),
        room_id: room.clone(),
        event_id: event_id.into(),
        txn_id: None,
        reason: None,
        only_own: false,
    };
    refused(env.svc.redact(redact(BOB, &alices)).await, Forbidden, "permission to redact");
    // A suspended sender (the gateway says so) may take back only its own events, even
    // where the power levels would let it redact others'.
    let suspended = RedactRequest { only_own: true, ..redact(ALICE, &bobs) };
    refused(env.svc.redact(suspended).await, UserSuspended, "suspended");
    env.svc.redact(redact(BOB, &bobs)).await.unwrap();
    let another = send(&env, message(BOB, &room, "again", None)).await.unwrap();
    env.svc.redact(redact(ALICE, &another)).await.unwrap();
}
