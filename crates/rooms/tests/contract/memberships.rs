//! What the memberships table keeps beside each user's membership: where their stretch of
//! being joined began (`joined_pos`), which notifications and unread counts start from.

use serde_json::json;
use trellis_proto::rooms::*;

use crate::common::*;

/// `(membership, pos, joined_pos)` of Bob in `room`.
async fn bob(env: &Env, room: &str) -> (String, i64, Option<i64>) {
    let client = env.db.pool(1).get().await.unwrap();
    let row = client
        .query_one(
            "SELECT membership, pos, joined_pos FROM memberships WHERE user_id = $1 AND room_id = $2",
            &[&BOB, &room],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

pub async fn joined_pos_marks_where_the_stretch_of_being_joined_began(env: Env) {
    let room = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(BOB))).await.unwrap();
    let (membership, _, joined) = bob(&env, &room).await;
    assert_eq!((membership.as_str(), joined), ("invite", None), "an invitee has not been joined");

    env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    let (_, join_pos, joined) = bob(&env, &room).await;
    assert_eq!(joined, Some(join_pos), "the join starts the stretch");

    // A new display name is another join: the stretch goes on.
    let rename = member_state(BOB, &room, BOB, json!({"membership": "join", "displayname": "Bobby"}));
    send(&env, rename).await.unwrap();
    let (_, pos, joined) = bob(&env, &room).await;
    assert!(pos > join_pos);
    assert_eq!(joined, Some(join_pos), "a profile change keeps where the stretch began");

    // Leaving keeps where the last stretch began (it bounds notifications of a left room).
    env.svc.change_membership(member(BOB, &room, MembershipAction::Leave, None)).await.unwrap();
    let (membership, _, joined) = bob(&env, &room).await;
    assert_eq!((membership.as_str(), joined), ("leave", Some(join_pos)));

    // Invited and joined again: a new stretch.
    env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(BOB))).await.unwrap();
    env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await.unwrap();
    let (_, rejoin_pos, joined) = bob(&env, &room).await;
    assert!(rejoin_pos > join_pos);
    assert_eq!(joined, Some(rejoin_pos), "a join after leaving starts a new stretch");
}
