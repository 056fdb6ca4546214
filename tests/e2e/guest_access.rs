//! Guest access (`registration.allow_guests`): guest accounts, the endpoints a guest may and
//! may not call, joining rooms that allow guests and leaving those that stop, peeking into
//! `world_readable` rooms, and upgrading a guest to a full account. Off by default.

use serde_json::{Value, json};
use trellis_testkit::{Client, Config, TestServer, enc};

both_modes!(
    configured allow_guests;
    a_guest_reaches_only_the_guest_endpoints,
    guests_join_rooms_that_allow_them_and_leave_when_that_stops,
    a_guest_peeks_into_world_readable_rooms,
    a_guest_upgrades_to_a_full_account,
);

const V3: &str = "/_matrix/client/v3";

fn allow_guests(c: &mut Config) {
    c.registration.allow_guests = true;
}

async fn guest(server: &TestServer) -> Client {
    let mut c = server.client();
    let body = c.post(&format!("{V3}/register?kind=guest"), json!({})).await.ok();
    c.token = body["access_token"].as_str().map(str::to_owned);
    c.user_id = body["user_id"].as_str().expect("user_id").to_owned();
    c.device_id = body["device_id"].as_str().expect("device_id").to_owned();
    c
}

fn localpart(user_id: &str) -> &str {
    user_id.trim_start_matches('@').split(':').next().unwrap()
}

async fn membership(reader: &Client, room: &str, user: &str) -> Value {
    let path = format!("{V3}/rooms/{}/state/m.room.member/{}", enc(room), enc(user));
    reader.get(&path).await.ok()["membership"].clone()
}

async fn send_refused(c: &Client, room: &str) {
    let path = format!("{V3}/rooms/{}/send/m.room.message/refused", enc(room));
    c.put(&path, json!({"msgtype": "m.text", "body": "no"})).await.err(403, "M_FORBIDDEN");
}

async fn set_guest_access(admin: &Client, room: &str, value: &str) {
    let path = format!("{V3}/rooms/{}/state/m.room.guest_access", enc(room));
    admin.put(&path, json!({"guest_access": value})).await.ok();
}

async fn a_guest_reaches_only_the_guest_endpoints(server: TestServer) {
    let g = guest(&server).await;
    assert!(localpart(&g.user_id).chars().all(|c| c.is_ascii_digit()), "{}", g.user_id);
    let me = g.get(&format!("{V3}/account/whoami")).await.ok();
    assert_eq!((me["user_id"].as_str(), me["is_guest"].as_bool()), (Some(g.user_id.as_str()), Some(true)));
    g.get(&format!("{V3}/sync?timeout=0")).await.ok();
    g.get(&format!("{V3}/devices")).await.ok();
    g.get(&format!("{V3}/capabilities")).await.ok();
    g.put(&format!("{V3}/profile/{}/displayname", enc(&g.user_id)), json!({"displayname": "creeper"})).await.ok();
    let profile = g.get(&format!("{V3}/profile/{}/displayname", enc(&g.user_id))).await.ok();
    assert_eq!(profile["displayname"], "creeper");

    let forbidden = [
        ("POST", format!("{V3}/createRoom"), json!({})),
        ("PUT", format!("{V3}/profile/{}/avatar_url", enc(&g.user_id)), json!({"avatar_url": "mxc://x/y"})),
        ("PUT", format!("{V3}/user/{}/account_data/a.b", enc(&g.user_id)), json!({})),
        ("POST", format!("{V3}/user/{}/filter", enc(&g.user_id)), json!({})),
        ("GET", format!("{V3}/initialSync"), Value::Null),
        ("GET", format!("{V3}/pushrules/"), Value::Null),
        ("POST", "/_matrix/client/api/v1/createRoom".to_owned(), json!({})),
    ];
    for (method, path, body) in forbidden {
        let body = (!body.is_null()).then_some(body);
        g.request(method, &path, body).await.err(403, "M_GUEST_ACCESS_FORBIDDEN");
    }
    // The event stream without a room is not for guests.
    g.get(&format!("{V3}/events?timeout=0")).await.err(400, "M_MISSING_PARAM");
}

async fn guests_join_rooms_that_allow_them_and_leave_when_that_stops(server: TestServer) {
    let alice = server.user("alice").await;
    let g = guest(&server).await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    // Public, but not open to guests.
    g.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.err(403, "M_FORBIDDEN");
    send_refused(&g, &room).await;

    set_guest_access(&alice, &room, "can_join").await;
    g.post(&format!("{V3}/rooms/{}/join", enc(&room)), json!({})).await.ok();
    let member = alice.get(&format!("{V3}/rooms/{}/state/m.room.member/{}", enc(&room), enc(&g.user_id))).await.ok();
    assert_eq!((member["membership"].as_str(), member["kind"].as_str()), (Some("join"), Some("guest")));
    g.send_text(&room, "t1", "sup").await;
    let page = alice.get(&format!("{V3}/rooms/{}/messages?dir=b&limit=1", enc(&room))).await.ok();
    assert_eq!(
        (page["chunk"][0]["sender"].as_str(), page["chunk"][0]["content"]["body"].as_str()),
        (Some(g.user_id.as_str()), Some("sup"))
    );

    // Revoked: the guest leaves at once (before the revoking request is answered).
    set_guest_access(&alice, &room, "forbidden").await;
    assert_eq!(membership(&alice, &room, &g.user_id).await, "leave");
    send_refused(&g, &room).await;
    g.post(&format!("{V3}/rooms/{}/join", enc(&room)), json!({})).await.err(403, "M_FORBIDDEN");
    // Full members stay.
    assert_eq!(membership(&alice, &room, &alice.user_id).await, "join");
}

async fn a_guest_peeks_into_world_readable_rooms(server: TestServer) {
    let alice = server.user("alice").await;
    let g = guest(&server).await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    alice.send_text(&room, "t1", "private").await;
    g.get(&format!("{V3}/rooms/{}/initialSync", enc(&room))).await.err(403, "M_FORBIDDEN");
    g.get(&format!("{V3}/events?room_id={}&timeout=0", enc(&room))).await.err(403, "M_FORBIDDEN");
    g.get(&format!("{V3}/rooms/{}/messages?dir=b", enc(&room))).await.err(403, "M_FORBIDDEN");

    let hv = json!({"history_visibility": "world_readable"});
    alice.put(&format!("{V3}/rooms/{}/state/m.room.history_visibility", enc(&room)), hv).await.ok();
    alice.send_text(&room, "t2", "public").await;
    let snapshot = g.get(&format!("{V3}/rooms/{}/initialSync", enc(&room))).await.ok();
    let bodies: Vec<&str> = snapshot["messages"]["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["public"], "{snapshot}");
    let state = g.get(&format!("{V3}/rooms/{}/state", enc(&room))).await.ok();
    assert!(state.as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));

    // The stream of that room alone, from the snapshot's end; nothing twice.
    let mut from = snapshot["messages"]["end"].as_str().unwrap().to_owned();
    alice.send_text(&room, "t3", "live").await;
    let mut live = Vec::new();
    for _ in 0..5 {
        let page = g.get(&format!("{V3}/events?room_id={}&from={}&timeout=10000", enc(&room), enc(&from))).await.ok();
        from = page["end"].as_str().unwrap().to_owned();
        live.extend(
            page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).map(str::to_owned),
        );
        if !live.is_empty() {
            break;
        }
    }
    assert_eq!(live, ["live"]);
    let idle = g.get(&format!("{V3}/events?room_id={}&from={}&timeout=0", enc(&room), enc(&from))).await.ok();
    assert_eq!(idle["chunk"], json!([]), "{idle}");
}

async fn a_guest_upgrades_to_a_full_account(server: TestServer) {
    let alice = server.user("alice").await;
    let mut g = guest(&server).await;
    let other = guest(&server).await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    set_guest_access(&alice, &room, "can_join").await;
    g.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();

    let lp = localpart(&g.user_id).to_owned();
    // Another guest's token cannot claim this guest's name.
    let steal = json!({"username": lp, "password": "pw", "guest_access_token": other.token});
    server.client().post(&format!("{V3}/register"), steal).await.err(403, "M_FORBIDDEN");

    let upgrade = json!({"username": lp, "password": "pw", "guest_access_token": g.token});
    let challenge = server.client().post(&format!("{V3}/register"), upgrade.clone()).await;
    assert_eq!(challenge.status, 401, "{}", challenge.body);
    let mut done = upgrade.clone();
    done["auth"] = json!({"type": "m.login.dummy", "session": challenge.body["session"]});
    let body = server.client().post(&format!("{V3}/register"), done).await.ok();
    assert_eq!(body["user_id"], g.user_id.as_str(), "the guest keeps its user ID");
    g.token = body["access_token"].as_str().map(str::to_owned);
    let me = g.get(&format!("{V3}/account/whoami")).await.ok();
    assert_eq!(me["is_guest"], false);
    // Now a full account: it keeps its rooms and may do what guests may not.
    assert_eq!(membership(&g, &room, &g.user_id).await, "join");
    g.create_room(json!({})).await;
    set_guest_access(&alice, &room, "forbidden").await;
    assert_eq!(membership(&alice, &room, &g.user_id).await, "join", "no longer a guest: stays");
    // And it logs in with its password.
    let mut again = server.client();
    again.login(&lp, "pw").await;
}

mod disabled {
    //! Guests are off unless configured.

    use serde_json::json;
    use trellis_testkit::TestServer;

    both_modes!(guests_are_refused_by_default);

    async fn guests_are_refused_by_default(server: TestServer) {
        let c = server.client();
        c.post("/_matrix/client/v3/register?kind=guest", json!({})).await.err(403, "M_GUEST_ACCESS_FORBIDDEN");
        c.post("/_matrix/client/v3/register?kind=bogus", json!({})).await.err(400, "M_INVALID_PARAM");
    }
}
