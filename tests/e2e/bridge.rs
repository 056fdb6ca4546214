//! A real bridge library drives Trellis: a small bridge written with mautrix-python's
//! appservice library (tests/clients/mautrix_bridge.py) writes its registration file, which
//! Trellis loads; it registers a puppet, signs it in (`m.login.application_service`), pings
//! the homeserver, and exchanges a message each way with a Matrix user; typing, a receipt,
//! presence and a to-device message reach it in transactions; then, while it is in maintenance, Trellis
//! is restarted mid-stream, and the messages sent before and after the restart all reach it,
//! once each and in order.
//!
//! Needs `python3` with `mautrix` (`make test` installs it). Without it the test is skipped
//! with a notice, unless `TRELLIS_REQUIRE_MAUTRIX=1` (set by CI) makes that a failure.

use std::{collections::HashMap, sync::Mutex, thread::ThreadId, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
};
use trellis_core::config::Config;
use trellis_testkit::{TestServer, enc};

both_modes!(configured with_mautrix; a_mautrix_bridge_drives_trellis_through_a_restart);

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/mautrix_bridge.py");
const PUPPET: &str = "@mx_bob:localhost";

/// The registration file each test thread's bridge wrote (None: mautrix is not installed).
static REGISTRATIONS: Mutex<Option<HashMap<ThreadId, Option<std::path::PathBuf>>>> = Mutex::new(None);

fn mautrix_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import mautrix.appservice"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The bridge generates its registration file for a port taken now; Trellis loads it.
fn with_mautrix(config: &mut Config) {
    let registration = mautrix_available().then(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let path = std::env::temp_dir().join(format!("trellis-mautrix-{port}.yaml"));
        let made = std::process::Command::new("python3")
            .arg(SCRIPT)
            .args(["registration", path.to_str().unwrap(), &port.to_string()])
            .status()
            .expect("python3 runs");
        assert!(made.success(), "the bridge wrote its registration");
        config.appservices.registration_files = vec![path.clone()];
        config.appservices.retry_max_ms = 400;
        path
    });
    let mut all = REGISTRATIONS.lock().unwrap();
    all.get_or_insert_with(HashMap::new).insert(std::thread::current().id(), registration);
}

/// The running bridge and the line protocol to it.
struct Bridge {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Bridge {
    async fn start(registration: &std::path::Path, homeserver: &str) -> Bridge {
        let mut child = tokio::process::Command::new("python3")
            .arg(SCRIPT)
            .args(["run", registration.to_str().unwrap(), homeserver])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the bridge starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut bridge = Bridge { _child: child, stdin, stdout };
        let ready = bridge.line().await;
        assert_eq!(ready["ready"], true, "{ready}");
        bridge
    }

    async fn line(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
            .await
            .expect("the bridge answers within a minute")
            .expect("the bridge's output")
            .expect("the bridge is running");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// Sends one command; its result (panics with the bridge's error).
    async fn ask(&mut self, cmd: Value) -> Value {
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        let answer = self.line().await;
        assert_eq!(answer["ok"], true, "bridge command {cmd}: {answer}");
        answer["result"].clone()
    }

    /// The bodies of the messages the bridge received in `room`, once it has `count`.
    async fn bodies(&mut self, room: &str, count: usize) -> Vec<String> {
        let got = self.ask(json!({"cmd": "messages", "room": room, "count": count})).await;
        let got = got.as_array().unwrap();
        let ids: std::collections::HashSet<_> = got.iter().map(|m| m["event_id"].clone()).collect();
        assert_eq!(ids.len(), got.len(), "an event reached the bridge twice: {got:?}");
        got.iter().map(|m| m["body"].as_str().unwrap_or_default().to_owned()).collect()
    }
}

async fn a_mautrix_bridge_drives_trellis_through_a_restart(mut server: TestServer) {
    let registration = REGISTRATIONS.lock().unwrap().as_mut().unwrap().remove(&std::thread::current().id()).unwrap();
    let Some(registration) = registration else {
        assert!(std::env::var("TRELLIS_REQUIRE_MAUTRIX").is_err(), "mautrix is required but cannot be imported");
        eprintln!("skipping: python3 with mautrix is not installed (pip install mautrix)");
        return;
    };
    let mut bridge = Bridge::start(&registration, server.url()).await;

    // The bridge's bot is the appservice's sender user; the homeserver reaches the bridge.
    assert_eq!(bridge.ask(json!({"cmd": "whoami"})).await["user_id"], "@mautrixbot:localhost");
    let ping = bridge.ask(json!({"cmd": "ping", "txn_id": "ping-1"})).await;
    assert!(ping["duration_ms"].as_i64().is_some_and(|ms| ms >= 0), "{ping}");

    // A puppet: registered by the bridge, signed in for a device of its own.
    bridge.ask(json!({"cmd": "register", "user_id": PUPPET})).await;
    let login = bridge.ask(json!({"cmd": "login", "user_id": PUPPET})).await;
    assert_eq!(login["user_id"], PUPPET);
    let device = login["device_id"].as_str().expect("a device").to_owned();

    // A message each way.
    let alice = server.user("alice").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bridge.ask(json!({"cmd": "join", "user_id": PUPPET, "room": room})).await;
    alice.send_text(&room, "a1", "hello bridge").await;
    assert_eq!(bridge.bodies(&room, 1).await, ["hello bridge"]);
    let sent = bridge.ask(json!({"cmd": "send", "user_id": PUPPET, "room": room, "body": "hello alice"})).await;
    let puppet_event = sent["event_id"].as_str().unwrap().to_owned();
    let sync = alice.sync(None, None, 0).await;
    assert!(trellis_testkit::timeline_bodies(&sync, &room).ends_with(&["hello alice".to_owned()]));

    // Ephemeral data of the bridge's rooms, and a to-device message to its puppet's device.
    let typing = format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc("@alice:localhost"));
    alice.put(&typing, json!({"typing": true, "timeout": 30000})).await.ok();
    bridge.ask(json!({"cmd": "ephemeral", "type": "m.typing", "room": room, "contains": "@alice:localhost"})).await;
    let receipt = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&puppet_event));
    alice.post(&receipt, json!({})).await.ok();
    bridge.ask(json!({"cmd": "ephemeral", "type": "m.receipt", "room": room, "contains": puppet_event})).await;
    let presence = format!("/_matrix/client/v3/presence/{}/status", enc("@alice:localhost"));
    alice.put(&presence, json!({"presence": "online", "status_msg": "bridging"})).await.ok();
    bridge.ask(json!({"cmd": "ephemeral", "type": "m.presence", "contains": "bridging"})).await;
    let to_device = json!({"messages": {PUPPET: {&device: {"secret": "for the bridge"}}}});
    alice.put("/_matrix/client/v3/sendToDevice/org.example.hello/td1", to_device).await.ok();
    let got = bridge.ask(json!({"cmd": "to_device", "type": "org.example.hello"})).await;
    assert_eq!(got["content"]["secret"], "for the bridge", "{got}");
    assert_eq!(got["sender"], "@alice:localhost", "{got}");

    // The bridge goes into maintenance; messages wait in Trellis, which restarts mid-stream.
    bridge.ask(json!({"cmd": "down"})).await;
    let before: Vec<String> = (0..3).map(|i| format!("before restart {i}")).collect();
    let mut last = String::new();
    for (i, body) in before.iter().enumerate() {
        last = alice.send_text(&room, &format!("b{i}"), body).await;
    }
    let receipt = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&last));
    alice.post(&receipt, json!({})).await.ok();
    server.restart().await;
    let after: Vec<String> = (0..3).map(|i| format!("after restart {i}")).collect();
    for (i, body) in after.iter().enumerate() {
        alice.send_text(&room, &format!("c{i}"), body).await;
    }
    bridge.ask(json!({"cmd": "up"})).await;
    let mut want = vec!["hello bridge".to_owned(), "hello alice".to_owned()];
    want.extend(before);
    want.extend(after);
    assert_eq!(bridge.bodies(&room, want.len()).await, want, "every message once, in order");

    // The bridge still speaks through the restarted Trellis.
    bridge.ask(json!({"cmd": "send", "user_id": PUPPET, "room": room, "body": "still here"})).await;
    let sync = alice.sync(None, None, 0).await;
    assert!(trellis_testkit::timeline_bodies(&sync, &room).ends_with(&["still here".to_owned()]));
    want.push("still here".to_owned());
    assert_eq!(bridge.bodies(&room, want.len()).await, want, "nothing repeated after the restart");
    // The receipt made while the bridge was away survived the restart, and came once.
    let got =
        bridge.ask(json!({"cmd": "ephemeral", "type": "m.receipt", "room": room, "contains": last, "all": true})).await;
    assert_eq!(got["times"], 1, "{got}");
    assert_eq!(bridge.ask(json!({"cmd": "ping"})).await["duration_ms"].as_i64().map(|ms| ms >= 0), Some(true));
}
