//! The harness of the sync worker's contract tests: a sync worker and a real rooms service
//! on a fresh database, called in process or over gRPC, and the calls the tests share.

#![allow(dead_code)] // each test binary uses its own part of it

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use trellis_core::shutdown::Shutdown;
use trellis_proto::{rooms::*, sync::*};
use trellis_rooms::{Rooms, RoomsHandle, RoomsSettings};
use trellis_storage::testing::TestDb;
use trellis_sync::{SyncSettings, SyncWorker};
use trellis_testkit::contract::{Via, reach};

pub struct Env {
    pub rooms: Arc<dyn RoomsService>,
    pub sync: Arc<dyn SyncService>,
    pub db: TestDb,
}

pub async fn local() -> Env {
    // The worker's metrics are recorded from the start: `until_polling` reads them.
    trellis_core::telemetry::metrics_handle();
    let db = TestDb::new().await.expect("test database");
    let bus = trellis_bus::MemoryBus::new();
    let settings = RoomsSettings {
        server_name: ruma::ServerName::parse("localhost").unwrap(),
        database: trellis_storage::Target::new(db.url(), None).unwrap(),
        test_commit_jitter: None,
        appservices: Default::default(),
        insecure_identity_server_tls: false,
    };
    let rooms = Rooms::start(db.pool(8), bus.clone(), settings, Shutdown::never()).await.unwrap();
    let sync_settings = SyncSettings {
        max_timeout: Duration::from_secs(30),
        default_timeline_limit: 10,
        degraded_poll: Duration::from_millis(500),
        ephemeral_batch: Duration::from_millis(50),
    };
    let sync = SyncWorker::new(db.pool(8), bus, sync_settings, Shutdown::never());
    Env { rooms: Arc::new(RoomsHandle(rooms)), sync, db }
}

/// The contract suite's setup: a worker and a rooms service, the worker reached `via` its
/// trait or gRPC.
pub async fn env(via: Via, _: Option<()>) -> Env {
    let env = local().await;
    Env { sync: reach(via, env.sync.clone()).await, ..env }
}

/// Waits (up to 10 s) until the worker holds a long-poll (`trellis_sync_open_longpolls`):
/// whatever the test does next happens while the poll waits.
pub async fn until_polling() {
    let metrics = trellis_core::telemetry::metrics_handle();
    for _ in 0..1000 {
        let open = metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("trellis_sync_open_longpolls "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if open >= 1.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the worker never held the long-poll");
}

pub const ALICE: &str = "@alice:localhost";
pub const BOB: &str = "@bob:localhost";

pub async fn sync(env: &Env, user: &str, since: Option<&str>, filter: Option<Value>, timeout_ms: u64) -> Value {
    let resp = env
        .sync
        .sync(SyncRequest {
            user_id: user.into(),
            device_id: "DEV".into(),
            since: since.map(Into::into),
            filter: filter.map(|f| f.to_string()),
            timeout_ms,
            full_state: false,
            set_presence: String::new(),
        })
        .await
        .unwrap();
    serde_json::from_str(&resp.body_json).unwrap()
}

pub async fn create_room(env: &Env, preset: &str) -> String {
    env.rooms
        .create_room(CreateRoomRequest { sender: ALICE.into(), preset: preset.into(), ..Default::default() })
        .await
        .unwrap()
        .room_id
}

pub async fn say(env: &Env, room: &str, body: &str) -> String {
    env.rooms
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
        .unwrap()
        .event_id
}

pub async fn act(env: &Env, sender: &str, room: &str, action: MembershipAction, target: Option<&str>) {
    env.rooms
        .change_membership(MembershipRequest {
            sender: sender.into(),
            room: room.into(),
            action: action as i32,
            target: target.map(Into::into),
            reason: None,
            content_json: None,
        })
        .await
        .unwrap();
}

pub fn timeline_bodies(body: &Value, room: &str) -> Vec<String> {
    body["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .filter(|e| e["type"] == "m.room.message")
                .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
