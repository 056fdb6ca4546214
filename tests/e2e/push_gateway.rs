//! Pushes as a push gateway receives them (a real HTTP receiver started by the test): the
//! legacy `id`, the room's name or alias, invites pushed to the invitee, badge updates after a
//! read receipt, muted rooms left out, and a pushkey the gateway rejects removed. Also
//! `/notifications` showing an event sent just before it was asked.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Json, Router, extract::State, routing::post};
use serde_json::{Value, json};
use trellis_testkit::{TestServer, enc};

both_modes!(pushes_as_the_gateway_sees_them, notifications_show_what_was_just_sent);

/// A push gateway that records every body and rejects the pushkeys it is told to.
#[derive(Clone, Default)]
struct Gateway {
    bodies: Arc<Mutex<Vec<Value>>>,
    reject: Arc<Mutex<HashSet<String>>>,
}

async fn notify(State(gw): State<Gateway>, Json(body): Json<Value>) -> Json<Value> {
    let key = body["notification"]["devices"][0]["pushkey"].as_str().unwrap_or_default().to_owned();
    gw.bodies.lock().unwrap().push(body);
    let rejected: Vec<String> = gw.reject.lock().unwrap().iter().filter(|k| **k == key).cloned().collect();
    Json(json!({ "rejected": rejected }))
}

impl Gateway {
    async fn start() -> (Gateway, String) {
        let gw = Gateway::default();
        let app = Router::new().route("/_matrix/push/v1/notify", post(notify)).with_state(gw.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/_matrix/push/v1/notify", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        (gw, url)
    }

    /// The first push received after the first `skip` that `pick` accepts.
    async fn wait_for(&self, skip: usize, pick: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(found) = self.bodies.lock().unwrap().iter().skip(skip).find(|b| pick(b)) {
                return found["notification"].clone();
            }
            assert!(Instant::now() < deadline, "no such push: {:?}", self.bodies.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn count(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }
}

fn pusher(url: &str, pushkey: &str) -> Value {
    json!({
        "kind": "http", "app_id": "org.example.app", "pushkey": pushkey, "app_display_name": "Example",
        "device_display_name": "Phone", "lang": "en", "data": {"url": url},
    })
}

fn of_event(id: &str) -> impl Fn(&Value) -> bool + '_ {
    move |b: &Value| b["notification"]["event_id"] == id
}

async fn pushes_as_the_gateway_sees_them(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let (gw, url) = Gateway::start().await;
    let room = alice.create_room(json!({"preset": "public_chat", "name": "Lunch"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    bob.post("/_matrix/client/v3/pushers/set", pusher(&url, "k1")).await.ok();

    // A message: the event under its legacy name too, the room's name.
    let hi = alice.send_text(&room, "p1", "hi").await;
    let n = gw.wait_for(0, of_event(&hi)).await;
    assert_eq!(n["id"], hi.as_str());
    assert_eq!(n["room_name"], "Lunch");
    assert_eq!(n["counts"]["unread"], 1);
    assert!(n.get("membership").is_none());

    // Reading it sends the new badge (no event).
    let seen = gw.count();
    bob.post(&format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&hi)), json!({})).await.ok();
    let badge = gw.wait_for(seen, |b| b["notification"].get("event_id").is_none()).await;
    assert_eq!(badge["counts"]["unread"], 0, "{badge}");
    assert_eq!(badge["devices"][0]["pushkey"], "k1");

    // An invite reaches the invitee, named by the room's alias.
    let other = alice.create_room(json!({"preset": "private_chat", "room_alias_name": "plans"})).await;
    alice.post(&format!("/_matrix/client/v3/rooms/{}/invite", enc(&other)), json!({"user_id": bob.user_id})).await.ok();
    let n = gw.wait_for(0, |b| b["notification"]["type"] == "m.room.member").await;
    assert_eq!((&n["room_id"], &n["sender"]), (&json!(other), &json!(alice.user_id)));
    assert_eq!((&n["membership"], &n["user_is_target"]), (&json!("invite"), &json!(true)));
    assert_eq!(n["room_name"], "#plans:localhost");

    // A muted room pushes only what a higher rule (a mention) decides.
    let muted = format!("/_matrix/client/v3/pushrules/global/room/{}", enc(&room));
    bob.put(&muted, json!({"actions": ["dont_notify"]})).await.ok();
    let seen = gw.count();
    let quiet = alice.send_text(&room, "p2", "nothing to see").await;
    let mention = alice.send_text(&room, "p3", "bob: lunch?").await;
    gw.wait_for(seen, of_event(&mention)).await;
    assert!(!gw.bodies.lock().unwrap().iter().any(of_event(&quiet)), "the muted message was pushed");
    bob.request("DELETE", &muted, None).await.ok();

    // A pushkey the gateway rejects: its pusher goes, the other stays.
    bob.post("/_matrix/client/v3/pushers/set", pusher(&url, "k2")).await.ok();
    gw.reject.lock().unwrap().insert("k2".into());
    let seen = gw.count();
    let last = alice.send_text(&room, "p4", "for both").await;
    for key in ["k1", "k2"] {
        gw.wait_for(seen, |b| of_event(&last)(b) && b["notification"]["devices"][0]["pushkey"] == key).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = bob.get("/_matrix/client/v3/pushers").await.ok();
        let keys: Vec<&str> =
            list["pushers"].as_array().unwrap().iter().map(|p| p["pushkey"].as_str().unwrap()).collect();
        if keys == ["k1"] {
            break;
        }
        assert!(Instant::now() < deadline, "the rejected pusher stayed: {keys:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn notifications_show_what_was_just_sent(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    for i in 0..3 {
        let sent = alice.send_text(&room, &format!("n{i}"), &format!("note {i}")).await;
        // Asked at once: the notifier's lag does not hide it.
        let page = bob.get("/_matrix/client/v3/notifications").await.ok();
        let first = &page["notifications"][0];
        assert_eq!(first["event"]["event_id"], sent.as_str(), "{page}");
        assert_eq!((&first["read"], &first["profile_tag"]), (&json!(false), &Value::Null));
        assert!(first.as_object().unwrap().contains_key("profile_tag"));
    }
}
