//! The very first tutorial, as written: `/_matrix/client/api/v1` paths, one-shot registration,
//! `POST .../send`, invites, joins by ID and alias, `/initialSync` and the `/events` stream.

use std::time::Duration;

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

both_modes!(the_first_tutorial);

const V1: &str = "/_matrix/client/api/v1";

async fn register_v1(c: &mut Client, user: &str) {
    let reg = c
        .post(&format!("{V1}/register"), json!({"user": user, "password": "wordpass", "type": "m.login.password"}))
        .await
        .ok();
    assert_eq!(reg["user_id"], format!("@{user}:localhost"));
    let login = c
        .post(&format!("{V1}/login"), json!({"type": "m.login.password", "user": user, "password": "wordpass"}))
        .await
        .ok();
    c.token = login["access_token"].as_str().map(str::to_owned);
    c.user_id = login["user_id"].as_str().unwrap().to_owned();
}

async fn the_first_tutorial(server: TestServer) {
    let mut alice = server.client();
    register_v1(&mut alice, "alice").await;
    let mut bob = server.client();
    register_v1(&mut bob, "bob").await;
    let mut carol = server.client();
    register_v1(&mut carol, "carol").await;

    let room = alice.post(&format!("{V1}/createRoom"), json!({"room_alias_name": "tutorial"})).await.ok()["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice
        .post(&format!("{V1}/rooms/{}/send/m.room.message", enc(&room)), json!({"msgtype": "m.text", "body": "hello"}))
        .await
        .ok();
    alice.post(&format!("{V1}/rooms/{}/invite", enc(&room)), json!({"user_id": "@bob:localhost"})).await.ok();
    bob.post(&format!("{V1}/rooms/{}/join", enc(&room)), json!({})).await.ok();
    alice.post(&format!("{V1}/rooms/{}/invite", enc(&room)), json!({"user_id": "@carol:localhost"})).await.ok();
    carol.post(&format!("{V1}/join/{}", enc("#tutorial:localhost")), json!({})).await.ok();

    let init = bob.get(&format!("{V1}/initialSync?limit=10")).await.ok();
    let rooms = init["rooms"].as_array().unwrap();
    let r = rooms.iter().find(|r| r["room_id"] == room.as_str()).expect("the room");
    assert_eq!(r["membership"], "join");
    let chunk = r["messages"]["chunk"].as_array().unwrap();
    assert!(chunk.iter().any(|e| e["content"]["body"] == "hello" && e["room_id"] == room.as_str()));
    assert!(r["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));
    let end = init["end"].as_str().unwrap().to_owned();

    // The event stream long-polls from `end`.
    let stream = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.get(&format!("{V1}/events?from={}&timeout=20000", enc(&end))).await.ok() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice
        .post(
            &format!("{V1}/rooms/{}/send/m.room.message", enc(&room)),
            json!({"msgtype": "m.text", "body": "streamed"}),
        )
        .await
        .ok();
    let events: Value = tokio::time::timeout(Duration::from_secs(15), stream).await.unwrap().unwrap();
    let chunk = events["chunk"].as_array().unwrap();
    assert!(chunk.iter().any(|e| e["content"]["body"] == "streamed" && e["room_id"] == room.as_str()), "{events}");
    assert!(events["end"].is_string() && events["start"].is_string());

    let per_room = carol.get(&format!("{V1}/rooms/{}/initialSync", enc(&room))).await.ok();
    assert_eq!(per_room["room_id"], room.as_str());
    assert!(per_room["messages"]["chunk"].as_array().unwrap().iter().any(|e| e["content"]["body"] == "streamed"));
    let mut stranger = server.client();
    register_v1(&mut stranger, "dave").await;
    stranger.get(&format!("{V1}/rooms/{}/initialSync", enc(&room))).await.err(403, "M_FORBIDDEN");
}
