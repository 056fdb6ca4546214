//! Shared by the contract scenarios: the service under test (local, or behind gRPC), each on
//! its own database, and small request builders.

#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use trellis_core::{Error, ErrorCode, shutdown::Shutdown};
use trellis_proto::rooms::*;
use trellis_rooms::{Rooms, RoomsHandle, RoomsSettings};
use trellis_storage::testing::TestDb;
#[allow(unused_imports)] // each test binary uses its own part of this module
pub use trellis_testkit::contract::refused;
use trellis_testkit::contract::{Via, reach};

pub struct Env {
    pub svc: Arc<dyn RoomsService>,
    pub rooms: Arc<Rooms>,
    pub db: TestDb,
}

pub async fn local() -> Env {
    local_with(8, None).await
}

/// The local service on a pool of `connections`, optionally delaying each commit by a random
/// time up to `commit_jitter` (so later positions often commit first).
pub async fn local_with(connections: usize, commit_jitter: Option<Duration>) -> Env {
    let db = TestDb::new().await.expect("test database");
    let settings = RoomsSettings {
        server_name: ruma::ServerName::parse("localhost").unwrap(),
        database: trellis_storage::Target::new(db.url(), None).unwrap(),
        test_commit_jitter: commit_jitter,
        appservices: Default::default(),
        insecure_identity_server_tls: false,
    };
    let rooms =
        Rooms::start(db.pool(connections), trellis_bus::MemoryBus::new(), settings, Shutdown::never()).await.unwrap();
    Env { svc: Arc::new(RoomsHandle(rooms.clone())), rooms, db }
}

/// The contract suite's setup: the local service, reached `via` its trait or gRPC.
pub async fn env(via: Via, _: Option<()>) -> Env {
    let env = local().await;
    Env { svc: reach(via, env.svc.clone()).await, ..env }
}

pub const ALICE: &str = "@alice:localhost";
pub const BOB: &str = "@bob:localhost";
pub const EVE: &str = "@eve:localhost";

pub fn create(sender: &str) -> CreateRoomRequest {
    CreateRoomRequest { sender: sender.into(), ..Default::default() }
}

pub fn member(sender: &str, room: &str, action: MembershipAction, target: Option<&str>) -> MembershipRequest {
    MembershipRequest {
        sender: sender.into(),
        room: room.into(),
        action: action as i32,
        target: target.map(Into::into),
        reason: None,
        content_json: None,
    }
}

pub fn message(sender: &str, room: &str, body: &str, txn: Option<&str>) -> SendEventRequest {
    SendEventRequest {
        sender: sender.into(),
        device_id: "DEV".into(),
        room_id: room.into(),
        event_type: "m.room.message".into(),
        state_key: None,
        content_json: json!({"msgtype": "m.text", "body": body}).to_string(),
        txn_id: txn.map(Into::into),
        origin_server_ts: None,
    }
}

pub fn state(sender: &str, room: &str, kind: &str, content: Value) -> SendEventRequest {
    SendEventRequest {
        sender: sender.into(),
        device_id: "DEV".into(),
        room_id: room.into(),
        event_type: kind.into(),
        state_key: Some(String::new()),
        content_json: content.to_string(),
        txn_id: None,
        origin_server_ts: None,
    }
}

pub async fn state_of(env: &Env, user: &str, room: &str) -> Vec<Value> {
    let list = env.svc.get_state(GetStateRequest { user_id: user.into(), room_id: room.into() }).await.unwrap();
    list.events_json.iter().map(|e| serde_json::from_str(e).unwrap()).collect()
}

pub async fn messages(
    env: &Env,
    user: &str,
    room: &str,
    from: Option<String>,
    backwards: bool,
    limit: u32,
) -> GetMessagesResponse {
    env.svc
        .get_messages(GetMessagesRequest {
            user_id: user.into(),
            device_id: "DEV".into(),
            room_id: room.into(),
            from,
            to: None,
            backwards,
            limit,
            filter_json: None,
        })
        .await
        .unwrap()
}

pub fn bodies(resp: &GetMessagesResponse) -> Vec<String> {
    resp.chunk_json
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

pub fn code(err: Error) -> ErrorCode {
    err.code()
}

pub const CAROL: &str = "@carol:localhost";
/// A user of another server (rooms here never federate; the rules still apply).
pub const REMOTE: &str = "@mallory:elsewhere.example";

/// A member event sent as state (the `PUT /state/m.room.member/{userId}` path).
pub fn member_state(sender: &str, room: &str, target: &str, content: Value) -> SendEventRequest {
    SendEventRequest {
        sender: sender.into(),
        device_id: "DEV".into(),
        room_id: room.into(),
        event_type: "m.room.member".into(),
        state_key: Some(target.into()),
        content_json: content.to_string(),
        txn_id: None,
        origin_server_ts: None,
    }
}

/// A room Alice created with `preset`, joined by `members` (invited first unless public).
pub async fn room_with(env: &Env, preset: &str, members: &[&str]) -> String {
    let mut req = create(ALICE);
    req.preset = preset.into();
    let room = env.svc.create_room(req).await.unwrap().room_id;
    for m in members {
        if preset != "public_chat" {
            env.svc.change_membership(member(ALICE, &room, MembershipAction::Invite, Some(m))).await.unwrap();
        }
        env.svc.change_membership(member(m, &room, MembershipAction::Join, None)).await.unwrap();
    }
    room
}

/// Alice's power levels of a new room with `users` and `overrides` applied.
pub fn power_levels(users: Value, overrides: Value) -> Value {
    let mut pl = json!({
        "users": users, "users_default": 0, "events": {"m.room.power_levels": 100, "m.room.history_visibility": 100},
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
    });
    for (k, v) in overrides.as_object().unwrap() {
        pl[k] = v.clone();
    }
    pl
}

pub async fn send(env: &Env, req: SendEventRequest) -> trellis_core::Result<String> {
    env.svc.send_event(req).await.map(|r| r.event_id)
}

pub fn redaction(sender: &str, room: &str, event_id: &str, reason: Option<&str>) -> RedactRequest {
    RedactRequest {
        sender: sender.into(),
        device_id: "DEV".into(),
        room_id: room.into(),
        event_id: event_id.into(),
        txn_id: None,
        reason: reason.map(Into::into),
        only_own: false,
    }
}

pub async fn event(env: &Env, user: &str, room: &str, event_id: &str) -> trellis_core::Result<Value> {
    let req = GetEventRequest {
        user_id: user.into(),
        device_id: "DEV".into(),
        room_id: room.into(),
        event_id: event_id.into(),
    };
    env.svc.get_event(req).await.map(|r| serde_json::from_str(&r.event_json).unwrap())
}

pub fn parse_all(events: &[String]) -> Vec<Value> {
    events.iter().map(|e| serde_json::from_str(e).unwrap()).collect()
}

/// Bodies of the message events among `events`, in order.
pub fn message_bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str())
        .map(Into::into)
        .collect()
}

/// A message whose content is `content`.
pub fn custom(sender: &str, room: &str, content: Value) -> SendEventRequest {
    SendEventRequest { content_json: content.to_string(), ..message(sender, room, "", None) }
}

pub async fn visibility(env: &Env, room: &str, value: &str) {
    send(env, state(ALICE, room, "m.room.history_visibility", json!({"history_visibility": value}))).await.unwrap();
}
