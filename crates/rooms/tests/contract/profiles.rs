//! Profile propagation: a profile change rewrites the member event in every joined room —
//! the first rooms before the call returns, the rest in the background.

use std::time::{Duration, Instant};

use trellis_proto::rooms::*;

use crate::common::*;

pub async fn profile_changes_reach_every_joined_room(env: Env) {
    let mut rooms = Vec::new();
    for _ in 0..25 {
        rooms.push(room_with(&env, "public_chat", &[BOB]).await);
    }
    env.svc.change_membership(member(BOB, &rooms[24], MembershipAction::Leave, None)).await.unwrap();
    let change = ProfileChangedRequest { user_id: BOB.into(), displayname: Some("Bobby".into()), avatar_url: None };
    let resp = env.svc.profile_changed(change).await.unwrap();
    assert_eq!(resp.rooms_updated, 20, "a bounded number of rooms inline; the other four in the background");

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut named = 0;
        for room in &rooms[..24] {
            let st = state_of(&env, ALICE, room).await;
            let bob = st.iter().find(|e| e["state_key"] == BOB).unwrap();
            if bob["content"]["displayname"] == "Bobby" {
                assert_eq!(bob["content"]["membership"], "join");
                named += 1;
            }
        }
        if named == 24 {
            break;
        }
        assert!(Instant::now() < deadline, "only {named} of 24 rooms updated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = state_of(&env, ALICE, &rooms[24]).await;
    let bob = left.iter().find(|e| e["state_key"] == BOB).unwrap();
    assert_eq!(bob["content"]["membership"], "leave", "rooms the user left are not touched");
}
