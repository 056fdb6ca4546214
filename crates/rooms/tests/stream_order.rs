//! Tokens never skip an event, even when transactions commit out of order.
//!
//! Writers in several rooms commit with random delays, so later positions often commit
//! before earlier ones. A reader follows `stream_positions` (what tokens are built from) and
//! reads the events up to it; it must end up with every event exactly once. A naive reader
//! that trusts `max(pos)` instead is run alongside to show the hazard is real.

mod common;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use common::{create, message};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn announced_positions_never_skip_a_late_commit() {
    let common::Env { svc, db, .. } = common::local_with(24, Some(Duration::from_millis(25))).await;
    let pool = db.pool(4);

    let mut room_ids = Vec::new();
    for i in 0..8 {
        room_ids.push(svc.create_room(create(&format!("@w{i}:localhost"))).await.unwrap().room_id);
    }

    let done = Arc::new(tokio::sync::Notify::new());
    let reader = {
        let pool = pool.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let client = pool.get().await.unwrap();
            let (mut safe_last, mut naive_last) = (0i64, 0i64);
            let (mut safe_seen, mut naive_seen) = (Vec::new(), Vec::new());
            let mut finishing = false;
            loop {
                let w: i64 = client
                    .query_one("SELECT pos FROM stream_positions WHERE stream = 'events'", &[])
                    .await
                    .unwrap()
                    .get(0);
                for r in client
                    .query("SELECT pos FROM events WHERE pos > $1 AND pos <= $2", &[&safe_last, &w])
                    .await
                    .unwrap()
                {
                    safe_seen.push(r.get::<_, i64>(0));
                }
                safe_last = safe_last.max(w);
                let n: i64 = client.query_one("SELECT COALESCE(max(pos), 0) FROM events", &[]).await.unwrap().get(0);
                for r in client
                    .query("SELECT pos FROM events WHERE pos > $1 AND pos <= $2", &[&naive_last, &n])
                    .await
                    .unwrap()
                {
                    naive_seen.push(r.get::<_, i64>(0));
                }
                naive_last = naive_last.max(n);
                if finishing {
                    return (safe_seen, naive_seen);
                }
                tokio::select! {
                    _ = done.notified() => finishing = true,
                    _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                }
            }
        })
    };

    let mut writers = Vec::new();
    for (i, room) in room_ids.iter().enumerate() {
        let svc = svc.clone();
        let room = room.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..20 {
                svc.send_event(message(&format!("@w{i}:localhost"), &room, &n.to_string(), None)).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.notify_one();
    let (safe, naive) = reader.await.unwrap();

    let client = pool.get().await.unwrap();
    let all: BTreeSet<i64> =
        client.query("SELECT pos FROM events", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    let safe_set: BTreeSet<i64> = safe.iter().copied().collect();
    assert_eq!(safe.len(), safe_set.len(), "no event seen twice");
    assert_eq!(safe_set, all, "following the announced position sees every event");
    let naive_set: BTreeSet<i64> = naive.iter().copied().collect();
    eprintln!(
        "{} events; a reader trusting max(pos) would have missed {}",
        all.len(),
        all.difference(&naive_set).count()
    );
}

/// More concurrent writers (in different rooms) than the pool has connections: each send
/// waits for its position to be announced, and the announcer needs a connection from the same
/// pool, so a writer that kept its connection while waiting would stall every send until the
/// announcement wait timed out (10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_writers_than_connections_do_not_stall() {
    let common::Env { svc, db: _db, .. } = common::local_with(4, None).await;
    let mut room_ids = Vec::new();
    for _ in 0..16 {
        room_ids.push(svc.create_room(create("@w:localhost")).await.unwrap().room_id);
    }
    let started = std::time::Instant::now();
    let writers: Vec<_> = room_ids
        .into_iter()
        .map(|room| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for n in 0..5 {
                    let txn = format!("{room}-{n}");
                    svc.send_event(message("@w:localhost", &room, &n.to_string(), Some(&txn))).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    // 80 sends take well under a second when nothing stalls; one stall costs 10 s.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "80 sends in 16 rooms over 4 connections took {took:?}");
}

/// A writer that takes over wakes the channels of its predecessor's latest events: the old
/// writer may have stopped after committing (or announcing) them but before publishing, and a
/// sync worker hearing only later batches would answer past them.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_writer_wakes_the_channels_of_the_last_writers_latest_events() {
    let common::Env { svc, rooms, db } = common::local().await;
    let room = svc.create_room(create(common::ALICE)).await.unwrap().room_id;
    svc.send_event(message(common::ALICE, &room, "last words", None)).await.unwrap();
    // The writer's lock session ends (as at a PostgreSQL restart); a successor takes over.
    let admin = db.pool(1).get().await.unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap();
    drop((svc, rooms));

    let bus = trellis_bus::MemoryBus::new();
    let sub = trellis_bus::Bus::subscribe(&*bus, &[trellis_bus::Channel::Room(room.clone())]).await.unwrap();
    let settings = trellis_rooms::RoomsSettings {
        server_name: ruma::ServerName::parse("localhost").unwrap(),
        database: trellis_storage::Target::new(db.url(), None).unwrap(),
        test_commit_jitter: None,
        appservices: Default::default(),
        insecure_identity_server_tls: false,
    };
    let start = trellis_rooms::Rooms::start(db.pool(4), bus, settings, trellis_core::shutdown::Shutdown::never());
    let _rooms = tokio::time::timeout(Duration::from_secs(10), start).await.expect("lock released").unwrap();
    tokio::time::timeout(Duration::from_secs(5), sub.wait()).await.expect("the room's channel is woken");
    let max: i64 = db.pool(1).get().await.unwrap().query_one("SELECT max(pos) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(sub.announced().events, max);
}

/// A writer that lost its lock session (a PostgreSQL restart, a killed backend) commits
/// nothing more: a successor may already be handing out the same positions.
#[tokio::test(flavor = "multi_thread")]
async fn a_writer_without_its_lock_commits_nothing() {
    let common::Env { svc, rooms, db } = common::local().await;
    let room = svc.create_room(create(common::ALICE)).await.unwrap().room_id;
    let client = db.pool(1).get().await.unwrap();
    let count = || async { client.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get::<_, i64>(0) };
    let before = count().await;
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the writer's lock session");
    tokio::time::timeout(Duration::from_secs(5), async {
        while rooms.holds_writer_lock() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the lost session is noticed");
    let announced = || async {
        client
            .query_one("SELECT pos FROM stream_positions WHERE stream = 'events'", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let position = announced().await;
    for i in 0..5 {
        let err = svc.send_event(message(common::ALICE, &room, &format!("too late {i}"), None)).await.unwrap_err();
        assert_eq!(err.status(), 503);
    }
    assert_eq!(count().await, before, "nothing committed");
    // The refused sends' positions count as aborted; announcing past them would move every
    // reader beyond positions a successor is about to fill. Its announcer gets a moment to
    // (wrongly) do so: there is no event to wait for when nothing may happen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(announced().await, position, "a writer without its lock announces nothing");
}
