//! Two rooms processes on one machine configured with the same gRPC address: the writer
//! binds it, the standby waits for the event-writer lock without binding, and takes the
//! address over when the writer is killed, so gateways pointed at one address follow it. A
//! standby whose database connection is cut connects again and goes on waiting.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Server, free_port, status, until};
use trellis_storage::testing::TestDb;

fn rooms(db: &TestDb, redis: &str, grpc: &str, ops: &str) -> Server {
    Server(
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["serve", "--roles", "rooms"])
            .env("TRELLIS_DATABASE__URL", db.url())
            .env("TRELLIS_REDIS__URL", redis)
            .env("TRELLIS_BUS__BACKEND", "redis")
            .env("TRELLIS_BUS__CHANNEL_PREFIX", format!("standby-{}", std::process::id()))
            .env("TRELLIS_GRPC__LISTEN", grpc)
            .env("TRELLIS_METRICS__LISTEN", ops)
            .env("TRELLIS_HEALTH__INTERVAL_MS", "200")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A rooms writer serving on a fresh database, ready, and what a standby beside it needs.
struct Writer {
    db: TestDb,
    redis: String,
    grpc: String,
    process: Server,
}

impl Writer {
    async fn ready() -> Writer {
        let db = TestDb::new().await.expect("test database (run with `make test`)");
        let redis = std::env::var("TRELLIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into());
        let grpc = format!("127.0.0.1:{}", free_port());
        let ops = format!("127.0.0.1:{}", free_port());
        let process = rooms(&db, &redis, &grpc, &ops);
        until(&format!("http://{ops}/health/ready"), 200).await;
        Writer { db, redis, grpc, process }
    }

    /// A second rooms process on the same database and gRPC address; its operations address.
    fn standby(&self) -> (Server, String) {
        let ops = format!("127.0.0.1:{}", free_port());
        (rooms(&self.db, &self.redis, &self.grpc, &ops), ops)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_the_writers_grpc_address() {
    let mut writer = Writer::ready().await;
    let (mut standby, ops_b) = writer.standby();
    until(&format!("http://{ops_b}/health/live"), 200).await;
    // Alive and waiting for the lock, not refused for the address the writer holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(standby.0.try_wait().unwrap().is_none(), "the standby exited");
    assert_eq!(status(&format!("http://{ops_b}/health/ready")).await, Some(503));

    writer.process.0.kill().unwrap();
    writer.process.0.wait().unwrap();
    until(&format!("http://{ops_b}/health/ready"), 200).await;
    let grpc = &writer.grpc;
    assert!(std::net::TcpStream::connect(grpc).is_ok(), "the new writer serves gRPC on {grpc}");
    assert!(standby.0.try_wait().unwrap().is_none());
}

/// The sessions waiting for the event-writer lock without holding it (the standby's).
async fn waiting_sessions(db: &TestDb) -> Vec<i32> {
    let client = db.pool(1).get().await.unwrap();
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND query LIKE '%pg_try_advisory_lock%' \
             AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_outlives_its_database_connection() {
    let mut writer = Writer::ready().await;
    let (mut standby, ops_b) = writer.standby();
    let db = &writer.db;

    // The standby's lock session is cut, as a PostgreSQL restart or failover would.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(pid) = waiting_sessions(db).await.first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "the standby never waited for the lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let admin = db.pool(1).get().await.unwrap();
    admin.execute("SELECT pg_terminate_backend($1)", &[&first]).await.unwrap();
    // It waits again on a new session.
    loop {
        if waiting_sessions(db).await.iter().any(|pid| *pid != first) {
            break;
        }
        assert!(standby.0.try_wait().unwrap().is_none(), "the standby exited when its connection was cut");
        assert!(Instant::now() < deadline, "the standby never waited again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    writer.process.0.kill().unwrap();
    writer.process.0.wait().unwrap();
    until(&format!("http://{ops_b}/health/ready"), 200).await;
    assert!(standby.0.try_wait().unwrap().is_none());
}
