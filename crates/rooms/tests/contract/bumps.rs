//! Each room's latest bump event (`rooms.bump_pos`, what orders sliding sync lists), kept by
//! the writer with every append.

use serde_json::json;

use crate::common::*;

async fn bump_and_latest(env: &Env, room: &str) -> (Option<i64>, i64) {
    let client = env.db.pool(1).get().await.unwrap();
    let row = client
        .query_one(
            "SELECT r.bump_pos, (SELECT max(pos) FROM events WHERE room_id = r.room_id) FROM rooms r WHERE room_id = $1",
            &[&room],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

pub async fn the_latest_bump_event_is_kept_per_room(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    let (bump, latest) = bump_and_latest(&env, &room).await;
    let create: i64 = env
        .db
        .pool(1)
        .get()
        .await
        .unwrap()
        .query_one("SELECT pos FROM events WHERE room_id = $1 AND type = 'm.room.create'", &[&room])
        .await
        .unwrap()
        .get(0);
    assert_eq!(bump, Some(create), "the create event is the first bump; joins and state are not bumps");
    assert!(latest > create);

    send(&env, message(BOB, &room, "hello", None)).await.unwrap();
    let (bump, latest) = bump_and_latest(&env, &room).await;
    assert_eq!(bump, Some(latest), "a message bumps the room");

    let mut topic = message(ALICE, &room, "", None);
    topic.event_type = "m.room.topic".into();
    topic.state_key = Some(String::new());
    topic.content_json = json!({"topic": "t"}).to_string();
    send(&env, topic).await.unwrap();
    let (after_topic, latest_now) = bump_and_latest(&env, &room).await;
    assert_eq!(after_topic, bump, "state does not bump");
    assert!(latest_now > latest);
}
