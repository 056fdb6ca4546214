//! A gateway that starts while Redis cannot be reached for a moment (a restart, a busy
//! machine timing out its first read of the sync worker registry) waits for it instead of
//! exiting.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use common::{Server, free_port, until};
use tokio::net::{TcpListener, TcpStream};

/// Forwards every connection to `addr` on `target`, from when it is called.
async fn relay(addr: &str, target: String) {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_waits_for_redis_at_start() {
    let redis = std::env::var("TRELLIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into());
    let target = redis.trim_start_matches("redis://").trim_end_matches('/').to_owned();
    let late = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let ops = format!("127.0.0.1:{}", free_port());
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut gateway = Server(
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["serve", "--roles", "gateway"])
            .env("TRELLIS_REDIS__URL", format!("redis://{late}/"))
            .env("TRELLIS_BUS__CHANNEL_PREFIX", format!("late-{}", std::process::id()))
            .env("TRELLIS_SYNC__DISCOVERY", "redis")
            .env("TRELLIS_HTTP__LISTEN", &http)
            .env("TRELLIS_METRICS__LISTEN", &ops)
            .env("TRELLIS_REMOTE__AUTH", &nowhere)
            .env("TRELLIS_REMOTE__ROOMS", &nowhere)
            .env("TRELLIS_REMOTE__MEDIA", &nowhere)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Redis answers only once the gateway has failed to read the registry.
    let log = BufReader::new(gateway.0.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in log.lines().map_while(Result::ok) {
            if line.contains("Redis unreadable at start") {
                let _ = tx.send(());
            }
        }
    });
    let failed_once = rx.recv_timeout(Duration::from_secs(30));
    assert!(failed_once.is_ok(), "the gateway never said it would try Redis again");
    assert!(gateway.0.try_wait().unwrap().is_none(), "the gateway exited while Redis was away");
    relay(&late, target).await;
    until(&format!("http://{http}/_matrix/client/versions"), 200).await;
    assert!(gateway.0.try_wait().unwrap().is_none());
}
