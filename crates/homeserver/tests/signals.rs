//! The `trellis` binary itself: on SIGTERM it reports not ready for `health.drain_ms` while it
//! goes on serving, then stops cleanly; `trellis health` asks the operations port.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Server, free_port, status, until};
use trellis_storage::testing::TestDb;

/// `trellis health` against the operations port at `ops`: its exit status.
fn health_command(ops: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .arg("health")
        .env("TRELLIS_METRICS__LISTEN", ops)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_stops() {
    let db = TestDb::new().await.expect("test database (run with `make test`)");
    let (http, ops) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let media = std::env::temp_dir().join(format!("trellis-signals-{}", std::process::id()));
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .arg("serve")
            .env("TRELLIS_DATABASE__URL", db.url())
            .env("TRELLIS_HTTP__LISTEN", &http)
            .env("TRELLIS_METRICS__LISTEN", &ops)
            .env("TRELLIS_HEALTH__DRAIN_MS", "3000")
            .env("TRELLIS_HEALTH__INTERVAL_MS", "200")
            .env("TRELLIS_MEDIA__PATH", &media)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until(&format!("http://{ops}/health/ready"), 200).await;
    assert!(health_command(&ops), "trellis health: ready");

    let term = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(term.success());
    until(&format!("http://{ops}/health/ready"), 503).await;
    assert!(!health_command(&ops), "trellis health: draining is not ready");
    assert_eq!(status(&format!("http://{ops}/health/live")).await, Some(200));
    // Still serving clients while load balancers take it out.
    assert_eq!(status(&format!("http://{http}/_matrix/client/versions")).await, Some(200));

    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = server.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "still running 20 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit}");
    assert_eq!(status(&format!("http://{http}/_matrix/client/versions")).await, None, "stopped");
    let _ = std::fs::remove_dir_all(media);
}
