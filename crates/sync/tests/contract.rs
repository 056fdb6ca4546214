//! Contract tests of a sync worker, local and over gRPC, fed by a real rooms service.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trellis_core::ErrorCode;
use trellis_proto::{rooms::*, sync::*};

mod common;

use common::*;

trellis_testkit::contract!(
    setup = crate::common::env;
    initial_then_incremental,
    long_poll_wakes_on_new_event,
    long_poll_times_out_with_a_valid_body,
    limited_timeline_and_backfill,
    invite_join_leave_sections,
    stored_filters,
    bad_input,
    room_settings_follow_an_upgrade,
    activity_of_an_active_user_is_kept_but_not_announced,
);

async fn initial_then_incremental(env: Env) {
    let room = create_room(&env, "private_chat").await;
    let first = say(&env, &room, "hello").await;
    let initial = sync(&env, ALICE, None, None, 0).await;
    let joined = &initial["rooms"]["join"][&room];
    assert_eq!(timeline_bodies(&initial, &room), vec!["hello"]);
    let tl = joined["timeline"]["events"].as_array().unwrap();
    let mine = tl.iter().find(|e| e["event_id"] == first.as_str()).unwrap();
    assert_eq!(mine["unsigned"]["transaction_id"], "txn-hello");
    assert!(mine.get("room_id").is_none(), "sync timelines omit room_id");
    assert_eq!(joined["summary"]["m.joined_member_count"], 1);
    // The state block holds the state before the timeline; together they cover the room.
    let state_types: Vec<&str> =
        joined["state"]["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    let tl_types: Vec<&str> = tl.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in ["m.room.create", "m.room.power_levels", "m.room.join_rules"] {
        assert!(state_types.contains(&t) || tl_types.contains(&t), "{t} missing");
    }
    let next = initial["next_batch"].as_str().unwrap().to_owned();

    let nothing = sync(&env, ALICE, Some(&next), None, 0).await;
    assert!(nothing["rooms"]["join"].as_object().unwrap().is_empty());
    assert_eq!(nothing["next_batch"], next.as_str(), "no news, same token");

    say(&env, &room, "again").await;
    let inc = sync(&env, ALICE, Some(&next), None, 0).await;
    assert_eq!(timeline_bodies(&inc, &room), vec!["again"]);
    assert_eq!(inc["rooms"]["join"][&room]["timeline"]["limited"], false);
    assert!(inc["rooms"]["join"][&room]["state"]["events"].as_array().unwrap().is_empty());
    assert!(inc["rooms"]["join"][&room].get("summary").is_none(), "an unchanged summary is left out");
    assert_ne!(inc["next_batch"], next.as_str());
}

async fn long_poll_wakes_on_new_event(env: Env) {
    let room = create_room(&env, "private_chat").await;
    let next = sync(&env, ALICE, None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let poll = {
        let sync_svc = env.sync.clone();
        let next = next.clone();
        tokio::spawn(async move {
            let resp = sync_svc
                .sync(SyncRequest {
                    user_id: ALICE.into(),
                    device_id: "DEV".into(),
                    since: Some(next),
                    timeout_ms: 20_000,
                    ..Default::default()
                })
                .await
                .unwrap();
            serde_json::from_str::<Value>(&resp.body_json).unwrap()
        })
    };
    until_polling().await;
    say(&env, &room, "wake up").await;
    let body = poll.await.unwrap();
    assert_eq!(timeline_bodies(&body, &room), vec!["wake up"]);
    assert!(started.elapsed() < Duration::from_secs(10), "answered on the wake-up, not the timeout");
}

async fn long_poll_times_out_with_a_valid_body(env: Env) {
    create_room(&env, "private_chat").await;
    let next = sync(&env, ALICE, None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let body = sync(&env, ALICE, Some(&next), None, 300).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(290), "waited {waited:?}");
    assert!(waited < Duration::from_secs(5));
    assert_eq!(body["next_batch"], next.as_str());
    assert!(body["rooms"]["join"].as_object().unwrap().is_empty());
}

async fn limited_timeline_and_backfill(env: Env) {
    let room = create_room(&env, "private_chat").await;
    let next = sync(&env, ALICE, None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    for i in 0..5 {
        say(&env, &room, &format!("m{i}")).await;
    }
    env.rooms
        .send_event(SendEventRequest {
            sender: ALICE.into(),
            device_id: "DEV".into(),
            room_id: room.clone(),
            event_type: "m.room.topic".into(),
            state_key: Some(String::new()),
            content_json: json!({"topic": "in the gap"}).to_string(),
            txn_id: None,
            origin_server_ts: None,
        })
        .await
        .unwrap();
    say(&env, &room, "last").await;
    let filter = json!({"room": {"timeline": {"limit": 1}}});
    let body = sync(&env, ALICE, Some(&next), Some(filter), 0).await;
    let joined = &body["rooms"]["join"][&room];
    assert_eq!(timeline_bodies(&body, &room), vec!["last"]);
    assert_eq!(joined["timeline"]["limited"], true);
    let gap_state = joined["state"]["events"].as_array().unwrap();
    assert!(
        gap_state.iter().any(|e| e["type"] == "m.room.topic" && e["content"]["topic"] == "in the gap"),
        "state changed in the gap is sent"
    );

    // prev_batch works as a /messages token and back-fills exactly what was skipped.
    let prev = joined["timeline"]["prev_batch"].as_str().unwrap().to_owned();
    let page = env
        .rooms
        .get_messages(GetMessagesRequest {
            user_id: ALICE.into(),
            device_id: "DEV".into(),
            room_id: room.clone(),
            from: Some(prev),
            to: Some(next.clone()),
            backwards: true,
            limit: 50,
            filter_json: None,
        })
        .await
        .unwrap();
    let back: Vec<String> = page
        .chunk_json
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(back, vec!["m4", "m3", "m2", "m1", "m0"]);
}

async fn invite_join_leave_sections(env: Env) {
    let mut req = CreateRoomRequest { sender: ALICE.into(), name: Some("Den".into()), ..Default::default() };
    req.preset = "private_chat".into();
    let room = env.rooms.create_room(req).await.unwrap().room_id;
    let bob_next = sync(&env, BOB, None, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    // An invite wakes Bob's long-poll through his user channel.
    let poll = {
        let s = env.sync.clone();
        let since = bob_next.clone();
        tokio::spawn(async move {
            let r = s.sync(SyncRequest {
                user_id: BOB.into(),
                device_id: "B".into(),
                since: Some(since),
                timeout_ms: 20_000,
                ..Default::default()
            });
            serde_json::from_str::<Value>(&r.await.unwrap().body_json).unwrap()
        })
    };
    until_polling().await;
    act(&env, ALICE, &room, MembershipAction::Invite, Some(BOB)).await;
    let invited = tokio::time::timeout(Duration::from_secs(10), poll).await.expect("woken by the invite").unwrap();
    let stripped = invited["rooms"]["invite"][&room]["invite_state"]["events"].as_array().unwrap();
    assert!(stripped.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Den"));
    assert!(
        stripped
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == BOB && e["content"]["membership"] == "invite")
    );
    assert!(
        stripped.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == ALICE),
        "the inviter's member event: {stripped:?}"
    );
    assert!(stripped.iter().all(|e| e.get("event_id").is_none()), "stripped state has no event IDs");
    let after_invite = invited["next_batch"].as_str().unwrap().to_owned();

    act(&env, BOB, &room, MembershipAction::Join, None).await;
    say(&env, &room, "welcome").await;
    let joined = sync(&env, BOB, Some(&after_invite), None, 0).await;
    let j = &joined["rooms"]["join"][&room];
    assert_eq!(timeline_bodies(&joined, &room), vec!["welcome"]);
    let all_types: Vec<&str> = j["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(j["timeline"]["events"].as_array().unwrap())
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(all_types.contains(&"m.room.create"), "a newly joined room comes with full state");
    assert_eq!(j["summary"]["m.joined_member_count"], 2, "membership changed: the summary is sent");
    let after_join = joined["next_batch"].as_str().unwrap().to_owned();

    act(&env, BOB, &room, MembershipAction::Leave, None).await;
    say(&env, &room, "after you left").await;
    let left = sync(&env, BOB, Some(&after_join), None, 0).await;
    assert!(left["rooms"]["join"].get(&room).is_none());
    let l = &left["rooms"]["leave"][&room]["timeline"]["events"];
    let last = l.as_array().unwrap().last().unwrap();
    assert_eq!(last["content"]["membership"], "leave", "the leave section ends with the leave");
    assert!(!l.to_string().contains("after you left"));
}

async fn stored_filters(env: Env) {
    let created = env
        .sync
        .create_filter(CreateFilterRequest {
            user_id: ALICE.into(),
            requester: ALICE.into(),
            filter_json: json!({"room": {"timeline": {"limit": 2, "types": ["m.room.message"]}}}).to_string(),
        })
        .await
        .unwrap();
    let got = env
        .sync
        .get_filter(GetFilterRequest {
            user_id: ALICE.into(),
            requester: ALICE.into(),
            filter_id: created.filter_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&got.filter_json).unwrap()["room"]["timeline"]["limit"], 2);
    let err = env
        .sync
        .get_filter(GetFilterRequest {
            user_id: ALICE.into(),
            requester: BOB.into(),
            filter_id: created.filter_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);
    let err = env
        .sync
        .get_filter(GetFilterRequest {
            user_id: BOB.into(),
            requester: BOB.into(),
            filter_id: created.filter_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "filters are per user");

    let room = create_room(&env, "private_chat").await;
    for i in 0..4 {
        say(&env, &room, &format!("f{i}")).await;
    }
    let resp = env
        .sync
        .sync(SyncRequest {
            user_id: ALICE.into(),
            device_id: "D".into(),
            filter: Some(created.filter_id),
            ..Default::default()
        })
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&resp.body_json).unwrap();
    let tl = body["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    assert_eq!(tl.len(), 2);
    assert!(tl.iter().all(|e| e["type"] == "m.room.message"));
    assert_eq!(body["rooms"]["join"][&room]["timeline"]["limited"], true);
}

async fn bad_input(env: Env) {
    let err = env
        .sync
        .sync(SyncRequest { user_id: ALICE.into(), since: Some("nonsense".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::InvalidParam, 400));
    let err = env
        .sync
        .sync(SyncRequest { user_id: ALICE.into(), filter: Some("{\"room\": 5}".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadJson);
    let err = env
        .sync
        .create_filter(CreateFilterRequest { user_id: ALICE.into(), requester: ALICE.into(), filter_json: "{".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotJson);
}

/// Only the upgrader, and only for the room's real successor, may carry the members' tags over.
async fn room_settings_follow_an_upgrade(env: Env) {
    let client = env.db.pool(1).get().await.unwrap();
    for user in [ALICE, BOB] {
        client.execute("INSERT INTO users (user_id, created_ts) VALUES ($1, 0)", &[&user]).await.unwrap();
    }
    let old = create_room(&env, "public_chat").await;
    let unrelated = create_room(&env, "public_chat").await;
    act(&env, BOB, &old, MembershipAction::Join, None).await;
    let tag = |room: &str| UpdateTagRequest {
        requester: BOB.into(),
        user_id: BOB.into(),
        room_id: room.into(),
        tag: "u.work".into(),
        content_json: Some("{}".into()),
    };
    env.sync.update_tag(tag(&old)).await.unwrap();
    let upgrade = UpgradeRoomRequest {
        sender: ALICE.into(),
        room_id: old.clone(),
        new_version: "12".into(),
        ..Default::default()
    };
    let new = env.rooms.upgrade_room(upgrade).await.unwrap().replacement_room;
    let transfer = |user: &str, to: &str| TransferRoomSettingsRequest {
        user_id: user.into(),
        old_room_id: old.clone(),
        new_room_id: to.into(),
    };
    for (user, to) in [(BOB, new.as_str()), (ALICE, unrelated.as_str())] {
        let err = env.sync.transfer_room_settings(transfer(user, to)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Forbidden, "{user} → {to}");
    }
    env.sync.transfer_room_settings(transfer(ALICE, &new)).await.unwrap();
    let tags =
        GetAccountDataRequest { requester: BOB.into(), user_id: BOB.into(), room_id: new, data_type: "m.tag".into() };
    let tags: Value = serde_json::from_str(&env.sync.get_account_data(tags).await.unwrap().content_json).unwrap();
    assert_eq!(tags, json!({"tags": {"u.work": {}}}));
}

/// A syncing user's activity is written once a minute; while they stay online and currently
/// active it takes no presence position (nothing others see changed), but after a quiet spell
/// becoming active again is announced. Time passing is simulated by ageing the stored
/// activity, and a second worker (as after moving to another sync worker) has nothing cached.
async fn activity_of_an_active_user_is_kept_but_not_announced(env: Env) {
    create_room(&env, "private_chat").await;
    sync(&env, ALICE, None, None, 0).await;
    let db = env.db.pool(1).get().await.unwrap();
    let presence_pos = || async {
        db.query_one("SELECT pos FROM sync_streams WHERE stream = 'presence'", &[]).await.unwrap().get::<_, i64>(0)
    };
    let age = |ms: i64| {
        let db = &db;
        async move {
            let sql =
                "UPDATE presence SET last_active_ts = last_active_ts - $2 WHERE user_id = $1 RETURNING last_active_ts";
            db.query_one(sql, &[&ALICE, &ms]).await.unwrap().get::<_, i64>(0)
        }
    };
    let before = presence_pos().await;
    assert!(before > 0, "the first sync announced Alice online");

    // Ninety seconds later, still active: the newer activity is stored, silently.
    let aged = age(90_000).await;
    let other = fresh_worker(&env);
    sync_on(&other, ALICE).await;
    let stored: i64 =
        db.query_one("SELECT last_active_ts FROM presence WHERE user_id = $1", &[&ALICE]).await.unwrap().get(0);
    assert!(stored >= aged + 90_000, "activity refreshed: {aged} -> {stored}");
    assert_eq!(presence_pos().await, before, "a refresh of an active user is no news");

    // Ten minutes without a sync: no longer currently active, so coming back is news.
    age(600_000).await;
    sync_on(&fresh_worker(&env), ALICE).await;
    assert!(presence_pos().await > before, "becoming active again is announced");
}

/// Another sync worker on the same database and bus, with empty caches.
fn fresh_worker(env: &Env) -> std::sync::Arc<trellis_sync::SyncWorker> {
    let settings = trellis_sync::SyncSettings {
        max_timeout: Duration::from_secs(30),
        default_timeline_limit: 10,
        degraded_poll: Duration::from_millis(500),
        ephemeral_batch: Duration::from_millis(50),
    };
    trellis_sync::SyncWorker::new(
        env.db.pool(2),
        trellis_bus::MemoryBus::new(),
        settings,
        trellis_core::shutdown::Shutdown::never(),
    )
}

async fn sync_on(worker: &std::sync::Arc<trellis_sync::SyncWorker>, user: &str) {
    let req = SyncRequest { user_id: user.into(), device_id: "DEV".into(), ..Default::default() };
    SyncService::sync(worker.as_ref(), req).await.unwrap();
}
