//! Two auth processes sharing one gRPC address (`grpc.reuse_port`), as two replicas behind a
//! Kubernetes Service: killing either one (kill -9) under a steady stream of authenticated
//! requests costs no client an error, because the gateway validates again on a new
//! connection, which reaches the replica still running.

mod common;

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Server, free_port, until};
use serde_json::{Value, json};
use trellis_storage::testing::TestDb;

fn trellis(db: &TestDb, roles: &str, envs: &[(&str, String)]) -> Server {
    let redis = std::env::var("TRELLIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trellis"));
    cmd.args(["serve", "--roles", roles])
        .env("TRELLIS_DATABASE__URL", db.url())
        .env("TRELLIS_REDIS__URL", redis)
        .env("TRELLIS_BUS__BACKEND", "redis")
        .env("TRELLIS_BUS__CHANNEL_PREFIX", format!("replicas-{}", std::process::id()))
        .env("TRELLIS_SERVER_NAME", "replicas.test")
        .env("TRELLIS_REGISTRATION__ENABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Server(cmd.spawn().unwrap())
}

fn auth(db: &TestDb, grpc: &str) -> (Server, String) {
    let ops = format!("127.0.0.1:{}", free_port());
    let envs = [
        ("TRELLIS_GRPC__LISTEN", grpc.to_owned()),
        ("TRELLIS_GRPC__REUSE_PORT", "true".to_owned()),
        ("TRELLIS_METRICS__LISTEN", ops.clone()),
    ];
    (trellis(db, "auth", &envs), ops)
}

/// Requests answered other than 200 while `requests` authenticated `/whoami` loops run.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, token: &str, requests: usize) -> Load {
        let (stop, ok, failed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::default());
        let tasks = (0..requests)
            .map(|_| {
                let (stop, ok, failed): (_, _, Arc<std::sync::Mutex<Vec<String>>>) =
                    (stop.clone(), ok.clone(), Arc::clone(&failed));
                let url = format!("{base}/_matrix/client/v3/account/whoami");
                let token = token.to_owned();
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    while !stop.load(Ordering::SeqCst) {
                        match http.get(&url).bearer_auth(&token).send().await {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(r) => {
                                let line = format!("{}: {}", r.status(), r.text().await.unwrap_or_default());
                                failed.lock().unwrap().push(line);
                            }
                            Err(e) => failed.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load { stop, ok, failed, tasks }
    }

    /// Waits until `more` further requests have succeeded.
    async fn answered(&self, more: u64) {
        let target = self.ok.load(Ordering::SeqCst) + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ok.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "requests stopped succeeding: {:?}", self.failed.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.failed.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_either_auth_replica_fails_no_request() {
    let db = TestDb::new().await.expect("test database (run with `make test`)");
    let grpc = format!("127.0.0.1:{}", free_port());
    let (mut first, first_ops) = auth(&db, &grpc);
    until(&format!("http://{first_ops}/health/ready"), 200).await;
    let (mut second, second_ops) = auth(&db, &grpc);
    until(&format!("http://{second_ops}/health/ready"), 200).await;

    // A gateway whose every request asks auth (no token cache); the other services it would
    // call are never reached by what this test sends.
    let http = format!("127.0.0.1:{}", free_port());
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let _gateway = trellis(
        &db,
        "gateway",
        &[
            ("TRELLIS_HTTP__LISTEN", http.clone()),
            ("TRELLIS_HTTP__TOKEN_CACHE_MS", "0".into()),
            ("TRELLIS_REMOTE__AUTH", format!("http://{grpc}")),
            ("TRELLIS_REMOTE__ROOMS", nowhere.clone()),
            ("TRELLIS_REMOTE__MEDIA", nowhere.clone()),
            ("TRELLIS_REMOTE__SYNC", format!("[\"{nowhere}\"]")),
            ("TRELLIS_METRICS__LISTEN", format!("127.0.0.1:{}", free_port())),
        ],
    );
    let base = format!("http://{http}");
    until(&format!("{base}/_matrix/client/versions"), 200).await;
    let body = json!({"username": "ada", "password": "correct horse battery", "auth": {"type": "m.login.dummy"}});
    let registered: Value = reqwest::Client::new()
        .post(format!("{base}/_matrix/client/v3/register"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = registered["access_token"].as_str().unwrap_or_else(|| panic!("{registered}"));

    let load = Load::start(&base, token, 4);
    load.answered(50).await;
    // The gateway's one connection reaches one of the two; killing each in turn hits it.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    load.answered(200).await;
    let (_restarted, restarted_ops) = auth(&db, &grpc);
    until(&format!("http://{restarted_ops}/health/ready"), 200).await;
    second.0.kill().unwrap();
    second.0.wait().unwrap();
    load.answered(200).await;
    let failed = load.finish().await;
    assert!(failed.is_empty(), "{} requests failed: {failed:?}", failed.len());
}
