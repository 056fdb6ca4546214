//! The push notifier with several sync workers on one database: every event is evaluated by
//! exactly one of them, once, and a worker started after all others stopped resumes from the
//! stored position.

use std::time::{Duration, Instant};

use serde_json::json;
use trellis_core::shutdown::{self, Shutdown};
use trellis_proto::{rooms::*, sync::*};
use trellis_rooms::{Rooms, RoomsHandle, RoomsSettings};
use trellis_storage::testing::TestDb;
use trellis_sync::{SyncSettings, SyncWorker};

const ALICE: &str = "@alice:localhost";
const BOB: &str = "@bob:localhost";

fn settings() -> SyncSettings {
    SyncSettings {
        max_timeout: Duration::from_secs(30),
        default_timeline_limit: 10,
        degraded_poll: Duration::from_millis(500),
        ephemeral_batch: Duration::from_millis(50),
    }
}

/// The rooms service on the test's database and bus.
async fn rooms_service(db: &TestDb, bus: &std::sync::Arc<trellis_bus::MemoryBus>) -> RoomsHandle {
    let rooms_settings = RoomsSettings {
        server_name: ruma::ServerName::parse("localhost").unwrap(),
        database: trellis_storage::Target::new(db.url(), None).unwrap(),
        test_commit_jitter: None,
        appservices: Default::default(),
        insecure_identity_server_tls: false,
    };
    RoomsHandle(Rooms::start(db.pool(8), bus.clone(), rooms_settings, Shutdown::never()).await.unwrap())
}

async fn join(rooms: &RoomsHandle, room: &str, user: &str) {
    let join = MembershipRequest {
        sender: user.into(),
        room: room.into(),
        action: MembershipAction::Join as i32,
        target: None,
        reason: None,
        content_json: None,
    };
    rooms.change_membership(join).await.unwrap();
}

async fn say(rooms: &RoomsHandle, room: &str, body: &str) {
    rooms
        .send_event(SendEventRequest {
            sender: ALICE.into(),
            device_id: "DEV".into(),
            room_id: room.into(),
            event_type: "m.room.message".into(),
            state_key: None,
            content_json: json!({"msgtype": "m.text", "body": body}).to_string(),
            txn_id: Some(format!("txn-{body}")),
            origin_server_ts: None,
        })
        .await
        .unwrap();
}

/// `(notifications, queued pushes, notifier position, events position)`.
async fn state(db: &TestDb) -> (i64, i64, i64, i64) {
    let client = db.pool(1).get().await.unwrap();
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM user_notifications WHERE user_id = $1), \
               (SELECT count(*) FROM push_outbox WHERE user_id = $1), \
               (SELECT pos FROM push_notifier), (SELECT pos FROM stream_positions WHERE stream = 'events')",
            &[&BOB],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

async fn settle(db: &TestDb, expected: i64) -> (i64, i64, i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = state(db).await;
        if (s.0 >= expected && s.2 == s.3) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_worker_per_event_and_resume_after_restart() {
    let db = TestDb::new().await.expect("test database");
    let bus = trellis_bus::MemoryBus::new();
    let rooms = rooms_service(&db, &bus).await;
    let (stop, handle) = shutdown::channel();
    let workers: Vec<_> =
        (0..3).map(|_| SyncWorker::new(db.pool(4), bus.clone(), settings(), handle.clone())).collect();

    let req = CreateRoomRequest { sender: ALICE.into(), preset: "public_chat".into(), ..Default::default() };
    let room = rooms.create_room(req).await.unwrap().room_id;
    join(&rooms, &room, BOB).await;
    // A pusher whose gateway never answers: each push stays queued, once.
    let pusher = json!({
        "kind": "http", "app_id": "app", "pushkey": "k", "app_display_name": "A", "device_display_name": "D",
        "lang": "en", "data": {"url": "http://127.0.0.1:9/_matrix/push/v1/notify"},
    });
    let text = |key: &str| pusher[key].as_str().map(str::to_owned);
    let set = SetPusherRequest {
        requester: BOB.into(),
        user_id: BOB.into(),
        app_id: text("app_id"),
        pushkey: text("pushkey"),
        kind: text("kind"),
        app_display_name: text("app_display_name"),
        device_display_name: text("device_display_name"),
        lang: text("lang"),
        data: Some(pusher["data"].to_string()),
        ..Default::default()
    };
    workers[0].set_pusher(set).await.unwrap();

    for i in 0..20 {
        say(&rooms, &room, &format!("m{i}")).await;
    }
    let (notes, queued, pos, events) = settle(&db, 20).await;
    assert_eq!((notes, queued), (20, 20), "each message notified bob once, whichever worker ran it");
    assert_eq!(pos, events, "the notifier caught up");

    // Every worker stops; events arrive meanwhile; a new worker picks up where they left off.
    stop.trigger();
    drop(workers);
    // The stopped workers' notifiers see the trigger at their next tick; nothing shows when
    // they have, so they are given time to (the assertion below would catch one still running).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 20..25 {
        say(&rooms, &room, &format!("m{i}")).await;
    }
    // Nothing to wait for: the point is that nothing is evaluated meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(state(&db).await.0, 20, "nobody evaluates while every worker is down");
    let _fresh = SyncWorker::new(db.pool(4), bus.clone(), settings(), Shutdown::never());
    let (notes, queued, pos, events) = settle(&db, 25).await;
    assert_eq!((notes, queued), (25, 25));
    assert_eq!(pos, events);
}

const CAROL: &str = "@carol:localhost";
const DAN: &str = "@dan:localhost";
const ERIN: &str = "@erin:localhost";

/// `(per-event records, per-member rows)` for the room, and each user's notifications and
/// highlights as the view gives them.
async fn rows(db: &TestDb, room: &str) -> ((i64, i64), Vec<(i64, i64)>) {
    let client = db.pool(1).get().await.unwrap();
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM event_notifications WHERE room_id = $1), \
               (SELECT count(*) FROM notifications WHERE room_id = $1)",
            &[&room],
        )
        .await
        .unwrap();
    let mut users = Vec::new();
    for user in [ALICE, BOB, CAROL, DAN, ERIN] {
        let r = client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE highlight) FROM user_notifications \
                 WHERE user_id = $1 AND room_id = $2",
                &[&user, &room],
            )
            .await
            .unwrap();
        users.push((r.get(0), r.get(1)));
    }
    ((row.get(0), row.get(1)), users)
}

/// A message notifies most members alike: it is recorded once, with rows only for the members
/// it notifies otherwise (a mention, a muted room), and each member's notifications (as unread
/// counts read them, through the view) and `/notifications` page are what a row per member
/// gave.
#[tokio::test(flavor = "multi_thread")]
async fn one_record_per_event_and_rows_only_for_members_notified_otherwise() {
    let db = TestDb::new().await.expect("test database");
    let bus = trellis_bus::MemoryBus::new();
    let rooms = rooms_service(&db, &bus).await;
    let worker = SyncWorker::new(db.pool(4), bus.clone(), settings(), Shutdown::never());
    let req = CreateRoomRequest { sender: ALICE.into(), preset: "public_chat".into(), ..Default::default() };
    let room = rooms.create_room(req).await.unwrap().room_id;
    for user in [BOB, CAROL, DAN, ERIN] {
        join(&rooms, &room, user).await;
    }
    // Dan mutes the room.
    let mute = SetPushRuleRequest {
        requester: DAN.into(),
        user_id: DAN.into(),
        kind: "room".into(),
        rule_id: room.clone(),
        actions: Some(json!([]).to_string()),
        ..Default::default()
    };
    worker.set_push_rule(mute).await.unwrap();

    for i in 0..3 {
        say(&rooms, &room, &format!("plain {i}")).await;
    }
    // A mention of Carol.
    rooms
        .send_event(SendEventRequest {
            sender: ALICE.into(),
            device_id: "DEV".into(),
            room_id: room.clone(),
            event_type: "m.room.message".into(),
            state_key: None,
            content_json: json!({"msgtype": "m.text", "body": "carol?", "m.mentions": {"user_ids": [CAROL]}})
                .to_string(),
            txn_id: Some("txn-mention".into()),
            origin_server_ts: None,
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (stored, users) = loop {
        // The notifier's position first: rows read after it has caught up are complete.
        let (_, _, pos, events) = state(&db).await;
        let (stored, users) = rows(&db, &room).await;
        if pos == events || Instant::now() > deadline {
            break (stored, users);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Four messages, one record each (Bob and Erin are notified alike: the most common
    // outcome); Dan's four mutes and Carol's mention are rows of their own.
    assert_eq!(stored.0, 4, "one record per message");
    let per_member = {
        let client = db.pool(1).get().await.unwrap();
        let r = client
            .query_one(
                "SELECT count(*) FILTER (WHERE user_id = $2 AND NOT notify), \
                   count(*) FILTER (WHERE user_id = $3 AND notify AND highlight), count(*) \
                 FROM notifications n WHERE room_id = $1 AND event_pos IN (SELECT event_pos FROM event_notifications)",
                &[&room, &DAN, &CAROL],
            )
            .await
            .unwrap();
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))
    };
    assert_eq!(per_member, (4, 1, 5), "rows only for Dan (muted) and Carol (mentioned)");
    // Alice sent everything: nothing for her. Bob and Erin: four. Carol: four, one highlighted.
    // Dan: none. (The joins notify nobody: a member event for someone else.)
    assert_eq!(users, vec![(0, 0), (4, 0), (4, 1), (0, 0), (4, 0)]);

    // `/notifications` and unread counts read the same.
    let page = |user: &str| NotificationsRequest {
        requester: user.into(),
        user_id: user.into(),
        from: String::new(),
        limit: 10,
        only_highlight: false,
    };
    let carol = worker.notifications(page(CAROL)).await.unwrap();
    let events: Vec<serde_json::Value> =
        carol.notifications.iter().map(|n| serde_json::from_str(&n.event).unwrap()).collect();
    let bodies: Vec<&str> = events.iter().map(|e| e["content"]["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, vec!["carol?", "plain 2", "plain 1", "plain 0"], "newest first");
    let dan = worker.notifications(page(DAN)).await.unwrap();
    assert!(dan.notifications.is_empty(), "{:?}", dan.notifications);
}
