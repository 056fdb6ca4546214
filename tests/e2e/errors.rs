//! Bad input gets the spec's errcode and status — never a 500, a panic or a hang.

use serde_json::json;
use trellis_testkit::{TestServer, enc};

both_modes!(bad_input_is_answered_with_spec_errors, registration_rules, cors_and_options, logout_reaches_every_gateway);

async fn bad_input_is_answered_with_spec_errors(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let mut bob = server.client();
    bob.register("bob", "pw").await;

    // Malformed JSON, wrong types, missing fields.
    let raw = reqwest_post(&alice, "/_matrix/client/v3/createRoom", "{bad").await;
    raw.err(400, "M_NOT_JSON");
    alice.post("/_matrix/client/v3/createRoom", json!({"name": 5})).await.err(400, "M_BAD_JSON");
    alice
        .post("/_matrix/client/v3/login", json!({"type": "m.login.password", "user": "alice"}))
        .await
        .err(400, "M_BAD_JSON");
    alice
        .post("/_matrix/client/v3/createRoom", json!({"room_version": "9999"}))
        .await
        .err(400, "M_UNSUPPORTED_ROOM_VERSION");

    // Unknown path, wrong method.
    alice.get("/_matrix/client/v3/no/such/endpoint").await.err(404, "M_UNRECOGNIZED");
    alice.request("DELETE", "/_matrix/client/v3/createRoom", None).await.err(405, "M_UNRECOGNIZED");

    // Tokens.
    let mut anon = server.client();
    anon.get("/_matrix/client/v3/sync").await.err(401, "M_MISSING_TOKEN");
    anon.token = Some("not-a-token".into());
    anon.get("/_matrix/client/v3/sync").await.err(401, "M_UNKNOWN_TOKEN");
    anon.get(&format!("/_matrix/client/v3/account/whoami?access_token={}", "nope")).await.err(401, "M_UNKNOWN_TOKEN");

    // Body over the limit.
    // The refusal is read by a client still sending (not a reset connection), every time.
    let room = alice.create_room(json!({})).await;
    for (i, mib) in [2usize, 4, 2, 4].into_iter().enumerate() {
        let big = json!({"msgtype": "m.text", "body": "x".repeat(mib * 1024 * 1024)});
        alice
            .put(&format!("/_matrix/client/v3/rooms/{}/send/m.room.message/big{i}", enc(&room)), big)
            .await
            .err(413, "M_TOO_LARGE");
    }
    // An event over 64 KiB is refused too, even though the body limit allows it.
    let event = json!({"msgtype": "m.text", "body": "y".repeat(70_000)});
    alice
        .put(&format!("/_matrix/client/v3/rooms/{}/send/m.room.message/event", enc(&room)), event)
        .await
        .err(413, "M_TOO_LARGE");

    // Acting in a room one is not in.
    bob.put(&format!("/_matrix/client/v3/rooms/{}/send/m.room.message/x", enc(&room)), json!({"body": "hi"}))
        .await
        .err(403, "M_FORBIDDEN");
    bob.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b", enc(&room))).await.err(403, "M_FORBIDDEN");
    bob.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room))).await.err(403, "M_FORBIDDEN");
    bob.post(&format!("/_matrix/client/v3/rooms/{}/join", enc(&room)), json!({})).await.err(403, "M_FORBIDDEN");
    // Power levels: Bob may join a public room but not rename it.
    let public = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&public)), json!({})).await.ok();
    bob.put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&public)), json!({"name": "mine"}))
        .await
        .err(403, "M_FORBIDDEN");

    // Parameters.
    alice.get("/_matrix/client/v3/sync?since=garbage").await.err(400, "M_INVALID_PARAM");
    alice.get("/_matrix/client/v3/sync?timeout=soon").await.err(400, "M_INVALID_PARAM");
    alice.get("/_matrix/client/v3/rooms/not-a-room/messages?dir=b").await.err(400, "M_INVALID_PARAM");
    alice.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", enc(&room))).await.err(404, "M_NOT_FOUND");
    alice
        .get(&format!("/_matrix/client/v3/directory/room/{}", enc("#missing:localhost")))
        .await
        .err(404, "M_NOT_FOUND");
}

async fn registration_rules(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let c = server.client();
    c.post("/_matrix/client/v3/register", json!({"username": "alice", "password": "pw"}))
        .await
        .err(400, "M_USER_IN_USE");
    c.post("/_matrix/client/v3/register", json!({"username": "Not Valid", "password": "pw"}))
        .await
        .err(400, "M_INVALID_USERNAME");
    c.get("/_matrix/client/v3/register/available?username=alice").await.err(400, "M_USER_IN_USE");
    assert_eq!(c.get("/_matrix/client/v3/register/available?username=zed").await.ok()["available"], true);
    // Without a password: the challenge first (as Synapse), a 400 once the stages are done.
    let nopass = c.post("/_matrix/client/v3/register", json!({"username": "nopass"})).await;
    assert_eq!(nopass.status, 401, "{}", nopass.body);
    let auth = json!({"type": "m.login.dummy", "session": nopass.body["session"]});
    c.post("/_matrix/client/v3/register", json!({"auth": auth})).await.err(400, "M_MISSING_PARAM");
    let challenge = c.post("/_matrix/client/v3/register", json!({"username": "zed", "password": "pw"})).await;
    assert_eq!(challenge.status, 401);
    assert_eq!(challenge.body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    assert!(challenge.body["session"].is_string());
    assert!(challenge.body.get("errcode").is_none(), "the first UIA answer has no errcode");

    // Login failures and logout.
    c.post("/_matrix/client/v3/login", json!({"type": "m.login.password", "user": "alice", "password": "wrong"}))
        .await
        .err(403, "M_FORBIDDEN");
    let flows = c.get("/_matrix/client/v3/login").await.ok();
    assert_eq!(flows["flows"][0]["type"], "m.login.password");
    let mut second = server.client();
    second.login("@alice:localhost", "pw").await;
    second.post("/_matrix/client/v3/logout", json!({})).await.ok();
    second.get("/_matrix/client/v3/account/whoami").await.err(401, "M_UNKNOWN_TOKEN");
    alice.get("/_matrix/client/v3/account/whoami").await.ok();
    alice.post("/_matrix/client/v3/logout/all", json!({})).await.ok();
    alice.get("/_matrix/client/v3/account/whoami").await.err(401, "M_UNKNOWN_TOKEN");
}

async fn cors_and_options(server: TestServer) {
    let http = reqwest::Client::new();
    let resp = http
        .request(reqwest::Method::OPTIONS, format!("{}/_matrix/client/v3/sync", server.url()))
        .header("Origin", "https://app.element.io")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = h["access-control-allow-headers"].to_str().unwrap();
    assert!(headers.contains("Authorization") && headers.contains("Content-Type"));
    let versions = http.get(format!("{}/_matrix/client/versions", server.url())).send().await.unwrap();
    assert_eq!(versions.headers()["access-control-allow-origin"], "*");
    let body: serde_json::Value = versions.json().await.unwrap();
    assert!(body["versions"].as_array().unwrap().iter().any(|v| v == "v1.1"));
    let wk: serde_json::Value =
        http.get(format!("{}/.well-known/matrix/client", server.url())).send().await.unwrap().json().await.unwrap();
    assert!(wk["m.homeserver"]["base_url"].as_str().unwrap().starts_with("http"));
}

async fn reqwest_post(client: &trellis_testkit::Client, path: &str, body: &str) -> trellis_testkit::Reply {
    let resp = reqwest::Client::new()
        .post(format!("{}{}", client.base, path))
        .bearer_auth(client.token.as_deref().unwrap_or_default())
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    trellis_testkit::Reply { status, body: resp.json().await.unwrap() }
}

/// Gateways cache token checks briefly, yet a revocation through any gateway — a logout, a
/// device deletion, a logout everywhere — is final on every gateway as soon as it answered,
/// even while the token is in use all along.
async fn logout_reaches_every_gateway(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let gateways = server.gateway_urls();
    let everywhere = |c: &trellis_testkit::Client| gateways.iter().map(|u| c.via(u)).collect::<Vec<_>>();
    let whoami = "/_matrix/client/v3/account/whoami";
    let still_valid = |c: trellis_testkit::Client| async move { c.get(whoami).await.status == 200 };

    // A logout while the token is busy on every gateway.
    let mut phone = server.client();
    phone.login("alice", "pw").await;
    for c in everywhere(&phone) {
        c.get(whoami).await.ok();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = everywhere(&phone)
        .into_iter()
        .map(|c| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    c.get(whoami).await;
                }
            })
        })
        .collect();
    phone.post("/_matrix/client/v3/logout", json!({})).await.ok();
    for c in everywhere(&phone) {
        assert!(!still_valid(c.clone()).await, "a logged-out token still works at {}", c.base);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in busy {
        task.await.unwrap();
    }

    // A device deleted through another gateway.
    let mut laptop = server.client();
    laptop.login("alice", "pw").await;
    for c in everywhere(&laptop) {
        c.get(whoami).await.ok();
    }
    let path = format!("/_matrix/client/v3/devices/{}", enc(&laptop.device_id));
    let other = alice.via(gateways.last().unwrap());
    let challenge = other.request("DELETE", &path, Some(json!({}))).await;
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "pw", "session": challenge.body["session"]});
    other.request("DELETE", &path, Some(json!({"auth": auth}))).await.ok();
    for c in everywhere(&laptop) {
        assert!(!still_valid(c.clone()).await, "a deleted device's token still works at {}", c.base);
    }

    // Everywhere at once.
    for c in everywhere(&alice) {
        c.get(whoami).await.ok();
    }
    alice.post("/_matrix/client/v3/logout/all", json!({})).await.ok();
    for c in everywhere(&alice) {
        assert!(!still_valid(c.clone()).await, "a token logged out everywhere still works at {}", c.base);
    }
}
