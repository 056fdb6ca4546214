//! The rooms two users are both joined to, page by page.

use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

pub async fn mutual_rooms_page_through_shared_rooms(env: Env) {
    let mut shared = Vec::new();
    for _ in 0..105 {
        shared.push(room_with(&env, "public_chat", &[BOB]).await);
    }
    room_with(&env, "public_chat", &[CAROL]).await;
    shared.sort();
    let ask = |from: Option<String>| MutualRoomsRequest { user_id: ALICE.into(), other_user_id: BOB.into(), from };
    let first = env.svc.mutual_rooms(ask(None)).await.unwrap();
    assert_eq!((first.room_ids.len(), first.count), (100, 105));
    let second = env.svc.mutual_rooms(ask(first.next_batch.clone())).await.unwrap();
    assert_eq!((second.room_ids.len(), second.count, second.next_batch), (5, 105, None));
    let all: Vec<String> = first.room_ids.into_iter().chain(second.room_ids).collect();
    assert_eq!(all, shared);
    let me = MutualRoomsRequest { user_id: ALICE.into(), other_user_id: ALICE.into(), from: None };
    assert_eq!(code(env.svc.mutual_rooms(me).await.unwrap_err()), ErrorCode::InvalidParam);
}
