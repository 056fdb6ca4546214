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
            "SELECT (SELECT count(*) FROM notifications WHERE user_id = $1), \
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
    let rooms_settings = RoomsSettings {
        server_name: ruma::ServerName::parse("localhost").unwrap(),
        database: trellis_storage::Target::new(db.url(), None).unwrap(),
        test_commit_jitter: None,
        appservices: Default::default(),
    };
    let rooms = RoomsHandle(Rooms::start(db.pool(8), bus.clone(), rooms_settings, Shutdown::never()).await.unwrap());
    let (stop, handle) = shutdown::channel();
    let workers: Vec<_> =
        (0..3).map(|_| SyncWorker::new(db.pool(4), bus.clone(), settings(), handle.clone())).collect();

    let req = CreateRoomRequest { sender: ALICE.into(), preset: "public_chat".into(), ..Default::default() };
    let room = rooms.create_room(req).await.unwrap().room_id;
    let join = MembershipRequest {
        sender: BOB.into(),
        room: room.clone(),
        action: MembershipAction::Join as i32,
        target: None,
        reason: None,
        content_json: None,
    };
    rooms.change_membership(join).await.unwrap();
    // A pusher whose gateway never answers: each push stays queued, once.
    let pusher = json!({
        "kind": "http", "app_id": "app", "pushkey": "k", "app_display_name": "A", "device_display_name": "D",
        "lang": "en", "data": {"url": "http://127.0.0.1:9/_matrix/push/v1/notify"},
    });
    let set = PushersRequest {
        requester: BOB.into(),
        user_id: BOB.into(),
        body_json: Some(pusher.to_string()),
        device_id: None,
    };
    workers[0].pushers(set).await.unwrap();

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
