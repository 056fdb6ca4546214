//! History visibility in `/messages`, `/context`, `/event` and `/state`; redaction served
//! stripped everywhere, `/sync` included.

use serde_json::json;
use trellis_testkit::{TestServer, enc};

use crate::rooms_support::{bodies, history, room_path, say, v1_path};

both_modes!(history_visibility_everywhere, redaction_everywhere, jump_to_date);

async fn history_visibility_everywhere(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let eve = server.user("eve").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    alice
        .put(&room_path(&room, "/state/m.room.history_visibility"), json!({"history_visibility": "joined"}))
        .await
        .ok();
    let early = say(&alice, &room, "before bob").await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    let topic = alice.put(&room_path(&room, "/state/m.room.topic"), json!({"topic": "while bob"})).await.ok();
    let middle = say(&alice, &room, "with bob").await;
    say(&alice, &room, "also with bob").await;

    assert_eq!(bodies(&history(&bob, &room).await), ["with bob", "also with bob"]);
    assert_eq!(bodies(&history(&alice, &room).await), ["before bob", "with bob", "also with bob"]);
    bob.get(&room_path(&room, &format!("/event/{}", enc(&early)))).await.err(404, "M_NOT_FOUND");
    assert_eq!(
        bob.get(&room_path(&room, &format!("/event/{}", enc(&middle)))).await.ok()["content"]["body"],
        "with bob"
    );
    let ctx = bob.get(&room_path(&room, &format!("/context/{}?limit=10", enc(&middle)))).await.ok();
    assert_eq!(ctx["event"]["event_id"], middle.as_str());
    assert_eq!(bodies(&ctx["events_before"]), Vec::<String>::new(), "'before bob' stays hidden");
    assert_eq!(bodies(&ctx["events_after"]), ["also with bob"]);
    assert!(ctx["start"].is_string() && ctx["end"].is_string());
    assert!(ctx["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.topic"));

    // A user who left sees state as of leaving, and nothing after.
    bob.post(&room_path(&room, "/leave"), json!({})).await.ok();
    alice.put(&room_path(&room, "/state/m.room.topic"), json!({"topic": "after bob"})).await.ok();
    let late = say(&alice, &room, "after bob").await;
    let state = bob.get(&room_path(&room, "/state")).await.ok();
    let seen_topic = state.as_array().unwrap().iter().find(|e| e["type"] == "m.room.topic").unwrap();
    assert_eq!(
        (seen_topic["content"]["topic"].as_str(), seen_topic["event_id"].as_str()),
        (Some("while bob"), topic["event_id"].as_str())
    );
    assert_eq!(bob.get(&room_path(&room, "/state/m.room.topic")).await.ok()["topic"], "while bob");
    assert!(!bodies(&history(&bob, &room).await).contains(&"after bob".to_owned()));
    bob.get(&room_path(&room, &format!("/event/{}", enc(&late)))).await.err(404, "M_NOT_FOUND");

    // world_readable: anyone may read, even without joining.
    eve.get(&room_path(&room, "/messages?dir=b")).await.err(403, "M_FORBIDDEN");
    alice
        .put(&room_path(&room, "/state/m.room.history_visibility"), json!({"history_visibility": "world_readable"}))
        .await
        .ok();
    let open = say(&alice, &room, "for everyone").await;
    assert_eq!(bodies(&history(&eve, &room).await), ["for everyone"]);
    assert_eq!(
        eve.get(&room_path(&room, &format!("/event/{}", enc(&open)))).await.ok()["content"]["body"],
        "for everyone"
    );
    assert_eq!(eve.get(&room_path(&room, "/state/m.room.topic")).await.ok()["topic"], "after bob");
    eve.get(&room_path(&room, &format!("/context/{}", enc(&open)))).await.ok();
}

async fn redaction_everywhere(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    let since = bob.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let secret = say(&bob, &room, "my secret").await;
    let alices = say(&alice, &room, "alice's").await;

    bob.put(&room_path(&room, &format!("/redact/{}/r1", enc(&alices))), json!({})).await.err(403, "M_FORBIDDEN");
    let redaction =
        bob.put(&room_path(&room, &format!("/redact/{}/r2", enc(&secret))), json!({"reason": "oops"})).await.ok();
    let redaction_id = redaction["event_id"].as_str().unwrap();
    let again =
        bob.put(&room_path(&room, &format!("/redact/{}/r2", enc(&secret))), json!({"reason": "oops"})).await.ok();
    assert_eq!(again["event_id"], redaction_id, "idempotent per transaction");
    bob.put(&room_path(&room, &format!("/redact/{}/r3", enc("$nope"))), json!({})).await.err(404, "M_NOT_FOUND");

    let check = |e: &serde_json::Value| {
        assert_eq!(e["content"], json!({}), "{e}");
        assert_eq!(e["unsigned"]["redacted_because"]["event_id"], redaction_id, "{e}");
        assert_eq!(e["unsigned"]["redacted_because"]["content"]["reason"], "oops", "{e}");
    };
    check(&alice.get(&room_path(&room, &format!("/event/{}", enc(&secret)))).await.ok());
    let page = history(&alice, &room).await;
    check(page.as_array().unwrap().iter().find(|e| e["event_id"] == secret.as_str()).unwrap());
    let red = page.as_array().unwrap().iter().find(|e| e["event_id"] == redaction_id).unwrap();
    assert_eq!((red["redacts"].as_str(), red["content"]["redacts"].as_str()), (Some(&*secret), Some(&*secret)));
    let ctx = alice.get(&room_path(&room, &format!("/context/{}", enc(&alices)))).await.ok();
    check(ctx["events_before"].as_array().unwrap().iter().find(|e| e["event_id"] == secret.as_str()).unwrap());

    // The sync workers serve what is stored: stripped, in incremental and initial syncs.
    let incremental = alice.sync(Some(&since), None, 0).await;
    let events = incremental["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap().clone();
    check(events.iter().find(|e| e["event_id"] == secret.as_str()).unwrap());
    let initial = bob.sync(None, None, 0).await;
    let events = initial["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap().clone();
    check(events.iter().find(|e| e["event_id"] == secret.as_str()).unwrap());

    // Moderators may redact anyone's events; redacted state is served stripped.
    alice.put(&room_path(&room, &format!("/redact/{}/a1", enc(&alices))), json!({})).await.ok();
    let topic = alice.put(&room_path(&room, "/state/m.room.topic"), json!({"topic": "gone soon"})).await.ok();
    let topic_id = topic["event_id"].as_str().unwrap();
    alice.put(&room_path(&room, &format!("/redact/{}/a2", enc(topic_id))), json!({})).await.ok();
    assert_eq!(alice.get(&room_path(&room, "/state/m.room.topic")).await.ok(), json!({}));
}

/// `/timestamp_to_event`: the nearest event the user may see, in either direction.
async fn jump_to_date(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    alice
        .put(&room_path(&room, "/state/m.room.history_visibility"), json!({"history_visibility": "joined"}))
        .await
        .ok();
    let hidden = say(&alice, &room, "before bob").await;
    // The clock moves on between the events: distinct timestamps are what the lookup tells
    // apart (these sleeps are the test's, not a wait for the server).
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let first = say(&alice, &room, "one").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = say(&alice, &room, "two").await;
    let ts = |id: &str| {
        let alice = &alice;
        let room = &room;
        let id = id.to_owned();
        async move {
            alice.get(&room_path(room, &format!("/event/{}", enc(&id)))).await.ok()["origin_server_ts"]
                .as_i64()
                .unwrap()
        }
    };
    let (t_hidden, t_first, t_second) = (ts(&hidden).await, ts(&first).await, ts(&second).await);
    let jump = |who: &trellis_testkit::Client, t: i64, dir: &str| {
        let path = v1_path(&room, &format!("/timestamp_to_event?ts={t}&dir={dir}"));
        let who = who.clone();
        async move { who.get(&path).await }
    };
    let got = jump(&alice, t_first, "f").await.ok();
    assert_eq!((got["event_id"].as_str(), got["origin_server_ts"].as_i64()), (Some(first.as_str()), Some(t_first)));
    assert_eq!(jump(&alice, t_first + 1, "f").await.ok()["event_id"], second.as_str());
    assert_eq!(jump(&alice, t_second - 1, "b").await.ok()["event_id"], first.as_str());
    assert_eq!(jump(&alice, t_hidden, "b").await.ok()["event_id"], hidden.as_str());
    // Bob joined after `hidden`, sent under `joined` visibility: going back from it skips it
    // to the room's set-up, sent while the history was still `shared`.
    let behind = jump(&bob, t_hidden, "b").await.ok();
    assert_ne!(behind["event_id"], hidden.as_str());
    assert!(behind["origin_server_ts"].as_i64().unwrap() <= t_hidden);
    let set_up =
        bob.get(&room_path(&room, &format!("/event/{}", enc(behind["event_id"].as_str().unwrap())))).await.ok();
    assert!(set_up["state_key"].is_string(), "{set_up}");
    // Past the last event there is nothing.
    jump(&bob, t_second + 60_000, "f").await.err(404, "M_NOT_FOUND");
    jump(&bob, t_first, "sideways").await.err(400, "M_INVALID_PARAM");
}
