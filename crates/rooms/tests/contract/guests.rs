//! Guests (accounts the auth service marked `is_guest`) in rooms: they join only rooms whose
//! `m.room.guest_access` is `can_join`, their member event says `kind: guest`, and they leave
//! when the room stops allowing guests; full members stay.

use serde_json::{Value, json};
use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

const GUEST: &str = "@1:localhost";

/// Registers GUEST as a guest account, as the auth service would.
async fn add_guest(env: &Env) {
    let client = env.db.pool(1).get().await.unwrap();
    client.execute("INSERT INTO users (user_id, is_guest, created_ts) VALUES ($1, TRUE, 0)", &[&GUEST]).await.unwrap();
}

async fn member_event(env: &Env, room: &str, user: &str) -> Value {
    let req = GetStateEventRequest {
        user_id: ALICE.into(),
        room_id: room.into(),
        event_type: "m.room.member".into(),
        state_key: user.into(),
    };
    serde_json::from_str(&env.svc.get_state_event(req).await.unwrap().content_json).unwrap()
}

pub async fn guests_join_only_where_allowed_and_leave_when_revoked(env: Env) {
    add_guest(&env).await;
    let room = room_with(&env, "public_chat", &[BOB]).await;
    let join = || member(GUEST, &room, MembershipAction::Join, None);
    let err = env.svc.change_membership(join()).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::Forbidden, 403));
    // Nor through a member event sent as state.
    let err = env.svc.send_event(member_state(GUEST, &room, GUEST, json!({"membership": "join"}))).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::Forbidden);

    env.svc.send_event(state(ALICE, &room, "m.room.guest_access", json!({"guest_access": "can_join"}))).await.unwrap();
    env.svc.change_membership(join()).await.unwrap();
    assert_eq!(member_event(&env, &room, GUEST).await, json!({"membership": "join", "kind": "guest"}));
    assert!(member_event(&env, &room, BOB).await.get("kind").is_none(), "full members are not marked");

    // Another change that still allows guests leaves them be; revoking removes them.
    env.svc.send_event(state(ALICE, &room, "m.room.topic", json!({"topic": "t"}))).await.unwrap();
    env.svc.send_event(state(ALICE, &room, "m.room.guest_access", json!({"guest_access": "can_join"}))).await.unwrap();
    assert_eq!(member_event(&env, &room, GUEST).await["membership"], "join");
    env.svc.send_event(state(ALICE, &room, "m.room.guest_access", json!({"guest_access": "forbidden"}))).await.unwrap();
    assert_eq!(member_event(&env, &room, GUEST).await["membership"], "leave");
    assert_eq!(member_event(&env, &room, BOB).await["membership"], "join");
}
