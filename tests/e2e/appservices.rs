//! An application service as a bridge sees it: a real HTTP receiver started by the test plays
//! the bridge. Registration of its users, masquerading with `?user_id=`, exclusive namespaces,
//! a message each way (the bridge's dated with `?ts=`), and transactions while the bridge is
//! down: retried with the same ID and delivered in order once it is back, nothing lost (in
//! split mode across the hand-over from the active sender to its standby).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    thread::ThreadId,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::put,
};
use serde_json::{Value, json};
use trellis_core::config::Config;
use trellis_testkit::{Client, Mode, TestServer, enc};

both_modes!(configured with_bridge; a_bridge_sees_its_rooms_in_order_through_an_outage);

const AS_TOKEN: &str = "as-token-e2e";
const HS_TOKEN: &str = "hs-token-e2e";

/// What the bridge received, and whether it answers (`down`: 503 to every transaction).
#[derive(Clone, Default)]
struct Bridge {
    txns: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<Vec<Value>>>,
    refused: Arc<Mutex<Vec<String>>>,
    down: Arc<Mutex<bool>>,
}

/// The bridges made by `with_bridge`, by the test thread that asked (the tweak runs on the
/// thread of the test that starts the server).
static BRIDGES: Mutex<Option<HashMap<ThreadId, (Bridge, std::net::TcpListener)>>> = Mutex::new(None);

/// Registers an appservice whose URL is a bridge listening on a port taken now.
fn with_bridge(config: &mut Config) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let yaml = format!(
        "id: e2e-bridge\nurl: {url}\nas_token: {AS_TOKEN}\nhs_token: {HS_TOKEN}\nsender_localpart: bridgebot\n\
         namespaces:\n  users:\n    - exclusive: true\n      regex: '@bridge_.*:localhost'\n  aliases:\n    - exclusive: true\n      regex: '#bridge_.*:localhost'\n  rooms: []\n"
    );
    let path = std::env::temp_dir().join(format!("trellis-e2e-as-{}.yaml", listener.local_addr().unwrap().port()));
    std::fs::write(&path, yaml).unwrap();
    config.appservices.registration_files = vec![path];
    config.appservices.retry_max_ms = 400;
    let mut bridges = BRIDGES.lock().unwrap();
    let bridges = bridges.get_or_insert_with(HashMap::new);
    bridges.entry(std::thread::current().id()).or_insert_with(|| (Bridge::default(), listener));
}

async fn transaction(
    State(bridge): State<Bridge>,
    Path(txn): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {HS_TOKEN}")) {
        return (StatusCode::FORBIDDEN, Json(json!({"errcode": "M_FORBIDDEN"})));
    }
    if *bridge.down.lock().unwrap() {
        bridge.refused.lock().unwrap().push(txn);
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    }
    let mut txns = bridge.txns.lock().unwrap();
    // A transaction sent again (its answer lost) is acknowledged, not processed twice.
    if !txns.contains(&txn) {
        txns.push(txn);
        bridge.events.lock().unwrap().extend(body["events"].as_array().cloned().unwrap_or_default());
    }
    (StatusCode::OK, Json(json!({})))
}

impl Bridge {
    fn take() -> Bridge {
        let (bridge, listener) =
            BRIDGES.lock().unwrap().as_mut().unwrap().remove(&std::thread::current().id()).expect("with_bridge ran");
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let app =
            Router::new().route("/_matrix/app/v1/transactions/{txn}", put(transaction)).with_state(bridge.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        bridge
    }

    /// The bodies of the `m.room.message` events received in `room`, in order.
    fn bodies(&self, room: &str) -> Vec<String> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e["room_id"] == room && e["type"] == "m.room.message")
            .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn until(&self, what: &str, done: impl Fn(&Bridge) -> bool) {
        self.within(Duration::from_secs(20), what, done).await
    }

    async fn within(&self, limit: Duration, what: &str, done: impl Fn(&Bridge) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < deadline, "bridge: {what}; got {:?}", self.events.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The appservice, as the bridge talks to the homeserver (with its `as_token`).
fn as_client(server: &TestServer) -> Client {
    let mut c = server.client();
    c.token = Some(AS_TOKEN.to_owned());
    c
}

async fn a_bridge_sees_its_rooms_in_order_through_an_outage(mut server: TestServer) {
    let bridge = Bridge::take();
    let appservice = as_client(&server);
    let alice = server.user("alice").await;

    // The appservice's sender user exists from the start; its token says who it is.
    let me = appservice.get("/_matrix/client/v3/account/whoami").await.ok();
    assert_eq!(me["user_id"], "@bridgebot:localhost");

    // Registering a puppet in its namespace; others may not take such names.
    let puppet = appservice
        .post("/_matrix/client/v3/register", json!({"type": "m.login.application_service", "username": "bridge_bob"}))
        .await
        .ok();
    assert_eq!(puppet["user_id"], "@bridge_bob:localhost");
    appservice
        .post("/_matrix/client/v3/register", json!({"type": "m.login.application_service", "username": "outsider"}))
        .await
        .err(400, "M_EXCLUSIVE");
    let mut eve = server.client();
    let taken = eve
        .request(
            "POST",
            "/_matrix/client/v3/register",
            Some(json!({"username": "bridge_eve", "password": "pw", "auth": {"type": "m.login.dummy"}})),
        )
        .await;
    taken.err(400, "M_EXCLUSIVE");
    eve.register("eve", "pw").await;

    // Masquerading: as its puppet, never as someone outside its namespace or unregistered.
    let as_bob = |path: &str| format!("{path}?user_id={}", enc("@bridge_bob:localhost"));
    let who = appservice.get(&as_bob("/_matrix/client/v3/account/whoami")).await.ok();
    assert_eq!(who["user_id"], "@bridge_bob:localhost");
    let as_alice = format!("/_matrix/client/v3/account/whoami?user_id={}", enc("@alice:localhost"));
    appservice.get(&as_alice).await.err(403, "M_EXCLUSIVE");
    let as_ghost = format!("/_matrix/client/v3/account/whoami?user_id={}", enc("@bridge_nobody:localhost"));
    appservice.get(&as_ghost).await.err(403, "M_FORBIDDEN");

    // A message each way: alice's reaches the bridge, the puppet's reaches alice.
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    appservice.post(&as_bob(&format!("/_matrix/client/v3/join/{}", enc(&room))), json!({})).await.ok();
    alice.send_text(&room, "a1", "hello bridge").await;
    // Woken by the bus, well before the sender's 5 s look at PostgreSQL.
    bridge.within(Duration::from_secs(3), "alice's message", |b| b.bodies(&room) == ["hello bridge"]).await;
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/b1", enc(&room));
    // With `ts`, the time the message was written on the bridge's side; a user's `ts` is ignored.
    let path = format!("{}&ts=1600000000000", as_bob(&path));
    appservice.put(&path, json!({"msgtype": "m.text", "body": "hello alice"})).await.ok();
    let own = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/a2?ts=1600000000000", enc(&room));
    alice.put(&own, json!({"msgtype": "m.text", "body": "no time travel"})).await.ok();
    bridge.until("the puppet's own message", |b| b.bodies(&room).len() == 3).await;
    let stamp = |body: &str| {
        let events = bridge.events.lock().unwrap();
        events.iter().find(|e| e["content"]["body"] == body).map(|e| e["origin_server_ts"].clone())
    };
    assert_eq!(stamp("hello alice"), Some(json!(1600000000000_i64)));
    assert_ne!(stamp("no time travel"), Some(json!(1600000000000_i64)));
    let sync = alice.sync(None, None, 0).await;
    let timeline = trellis_testkit::timeline_bodies(&sync, &room);
    let want = ["hello bridge", "hello alice", "no time travel"].map(str::to_owned);
    assert!(timeline.ends_with(&want), "{timeline:?}");
    let joined = bridge
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["state_key"] == "@bridge_bob:localhost");
    assert!(joined, "the puppet's join was pushed");

    // A room that concerns the bridge in no way is not pushed.
    let other = eve.create_room(json!({})).await;
    eve.send_text(&other, "e1", "private").await;

    // The bridge goes down: transactions are refused and retried, then delivered in order.
    *bridge.down.lock().unwrap() = true;
    let sent: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    for (i, body) in sent.iter().enumerate().take(3) {
        alice.send_text(&room, &format!("d{i}"), body).await;
    }
    bridge.until("retries of the same transaction", |b| b.refused.lock().unwrap().len() >= 2).await;
    let refused = bridge.refused.lock().unwrap().clone();
    assert!(refused.windows(2).all(|w| w[0] == w[1]), "a retry keeps its transaction ID: {refused:?}");
    if server.mode == Mode::Split {
        // The active sender goes away mid-outage; its standby carries on from the stored position.
        server.kill("appservice-0").await;
    }
    for (i, body) in sent.iter().enumerate().skip(3) {
        alice.send_text(&room, &format!("d{i}"), body).await;
    }
    *bridge.down.lock().unwrap() = false;
    let mut want = vec!["hello bridge".to_owned(), "hello alice".to_owned(), "no time travel".to_owned()];
    want.extend(sent);
    bridge.until("every message, once, in order", |b| b.bodies(&room).len() >= want.len()).await;
    assert_eq!(bridge.bodies(&room), want);
    assert!(bridge.bodies(&other).is_empty(), "eve's room is none of the bridge's business");
    let txns = bridge.txns.lock().unwrap().clone();
    assert!(txns.contains(&refused[0]), "the refused transaction was delivered under its ID: {txns:?}");
}
