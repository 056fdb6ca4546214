//! What real clients call around start-up besides sync: discovery and capabilities, login
//! flows, third-party protocols, TURN credentials, the user directory, and rate limits shared
//! by every gateway.

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

both_modes!(startup_endpoints_answer, user_directory_search);

async fn startup_endpoints_answer(server: TestServer) {
    let anon = server.client();
    let versions = anon.get("/_matrix/client/versions").await.ok();
    for v in ["r0.6.1", "v1.1", "v1.6", "v1.11"] {
        assert!(versions["versions"].as_array().unwrap().iter().any(|x| x == v), "{v}: {versions}");
    }
    assert_eq!(versions["unstable_features"]["org.matrix.e2e_cross_signing"], true);
    assert_eq!(versions["unstable_features"]["org.matrix.msc3916.stable"], true);
    // Next-generation auth is not offered: clients fall back to the password flow.
    anon.get("/_matrix/client/unstable/org.matrix.msc2965/auth_issuer").await.err(404, "M_UNRECOGNIZED");
    let flows = anon.get("/_matrix/client/v3/login").await.ok();
    assert!(flows["flows"].as_array().unwrap().iter().any(|f| f["type"] == "m.login.password"));

    let mut alice = server.client();
    alice.register("alice", "pw").await;
    assert_eq!(alice.get("/_matrix/client/v3/thirdparty/protocols").await.ok(), json!({}));
    // No TURN server configured: an empty object, as the spec allows.
    assert_eq!(alice.get("/_matrix/client/v3/voip/turnServer").await.ok(), json!({}));
    anon.get("/_matrix/client/v3/voip/turnServer").await.err(401, "M_MISSING_TOKEN");
    let caps = alice.get("/_matrix/client/v3/capabilities").await.ok();
    // Honest: passwords can be changed, display names and avatars set, 3PIDs not.
    let caps = &caps["capabilities"];
    assert_eq!(caps["m.change_password"]["enabled"], true);
    assert_eq!(caps["m.set_displayname"]["enabled"], true);
    assert_eq!(caps["m.set_avatar_url"]["enabled"], true);
    assert_eq!(caps["m.3pid_changes"]["enabled"], false);
    assert_eq!(caps["m.room_versions"]["default"], "11");
    // CORS on an authenticated endpoint's preflight.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/_matrix/client/v3/keys/upload", server.url()))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = h["access-control-allow-headers"].to_str().unwrap();
    assert!(headers.contains("Authorization") && headers.contains("Content-Type"), "{headers}");
}

async fn user_directory_search(server: TestServer) {
    let register = async |name: &str, display: &str| {
        let mut c = server.client();
        c.register(name, "pw").await;
        c.put(&format!("/_matrix/client/v3/profile/{}/displayname", enc(&c.user_id)), json!({"displayname": display}))
            .await
            .ok();
        c
    };
    let alice = register("alice", "Alice Liddell").await;
    let bob = register("bob", "Bob Builder").await;
    let carol = register("carol", "Carol Builder").await;
    let dave = register("dave", "Dave Builder").await;
    // Alice shares a private room with Bob; Carol is in a public room; Dave is in neither.
    let private = alice.create_room(json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&private)), json!({})).await.ok();
    carol.create_room(json!({"preset": "public_chat"})).await;
    dave.create_room(json!({"preset": "private_chat"})).await;

    let search = async |term: &str, limit: Option<u64>| -> Value {
        let mut body = json!({"search_term": term});
        if let Some(l) = limit {
            body["limit"] = json!(l);
        }
        alice.post("/_matrix/client/v3/user_directory/search", body).await.ok()
    };
    let ids = |v: &Value| -> Vec<String> {
        v["results"].as_array().unwrap().iter().map(|r| r["user_id"].as_str().unwrap().to_owned()).collect()
    };
    let found = search("builder", None).await;
    let mut got = ids(&found);
    got.sort();
    assert_eq!(got, vec![bob.user_id.clone(), carol.user_id.clone()], "Dave shares nothing with Alice: {found}");
    assert_eq!(found["limited"], false);
    let bob_row = found["results"].as_array().unwrap().iter().find(|r| r["user_id"] == bob.user_id.as_str()).unwrap();
    assert_eq!(bob_row["display_name"], "Bob Builder");
    // By user ID, several words, wildcards taken literally, and the limit.
    assert_eq!(ids(&search("car", None).await), vec![carol.user_id.clone()]);
    assert_eq!(ids(&search("bob build", None).await), vec![bob.user_id.clone()]);
    assert!(ids(&search("%", None).await).is_empty());
    let one = search("builder", Some(1)).await;
    assert_eq!((ids(&one).len(), &one["limited"]), (1, &json!(true)));
    alice.post("/_matrix/client/v3/user_directory/search", json!({})).await.err(400, "M_BAD_JSON");
}

/// Login and message sending are limited; the answer is 429 with `retry_after_ms` and a
/// `Retry-After` header.
async fn limits_apply(server: TestServer, urls: Vec<String>) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    // Three messages fit in the burst (spread over every gateway: the limit is shared), the
    // fourth is refused.
    for i in 0..3 {
        let via = alice.via(&urls[i % urls.len()]);
        via.send_text(&room, &format!("t{i}"), "hi").await;
    }
    let via = alice.via(&urls[3 % urls.len()]);
    let refused = via
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t3", enc(&room)),
            json!({"msgtype": "m.text", "body": "too many"}),
        )
        .await;
    refused.err(429, "M_LIMIT_EXCEEDED");
    let wait = refused.body["retry_after_ms"].as_u64().unwrap();
    assert!(wait > 0 && wait <= 100_000, "{wait}");
    let raw = reqwest::Client::new()
        .put(format!("{}/_matrix/client/v3/rooms/{}/send/m.room.message/t4", urls[0], enc(&room)))
        .bearer_auth(alice.token.as_ref().unwrap())
        .json(&json!({"msgtype": "m.text", "body": "still too many"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 429);
    let retry_after: u64 = raw.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");

    // Login attempts per address: the burst, then refused, whether the password is right or not.
    let login = |c: &Client| {
        let c = c.clone();
        async move {
            c.post(
                "/_matrix/client/v3/login",
                json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "no"}),
            )
            .await
        }
    };
    for i in 0..2 {
        login(&Client::new(&urls[i % urls.len()])).await.err(403, "M_FORBIDDEN");
    }
    login(&Client::new(&urls[2 % urls.len()])).await.err(429, "M_LIMIT_EXCEEDED");
    // Validation mails per address (this server mails none: the answer says so, until the
    // limit comes first).
    let request_token = |c: Client, email: &'static str| async move {
        let body = json!({"client_secret": "s", "email": email, "send_attempt": 1});
        c.post("/_matrix/client/v3/account/3pid/email/requestToken", body).await
    };
    for i in 0..2 {
        let refused = request_token(Client::new(&urls[i % urls.len()]), "a@example.org").await;
        refused.err(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    }
    request_token(Client::new(&urls[2 % urls.len()]), "b@example.org").await.err(429, "M_LIMIT_EXCEEDED");
    // Other users keep their own message budget.
    let mut bob = Client::new(&urls[0]);
    bob.register("bob", "pw").await;
    let bobs = bob.create_room(json!({})).await;
    bob.send_text(&bobs, "b0", "fine").await;
}

fn strict(c: &mut trellis_testkit::Config) {
    c.rate_limits.enabled = true;
    c.rate_limits.message = trellis_testkit::Rule::new(0.01, 3);
    c.rate_limits.login = trellis_testkit::Rule::new(0.01, 2);
    c.rate_limits.threepid_validation = trellis_testkit::Rule::new(0.01, 2);
    // Registration and room creation stay generous so the set-up is not limited.
    c.rate_limits.register = trellis_testkit::Rule::new(100.0, 100);
    c.rate_limits.join = trellis_testkit::Rule::new(100.0, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_monolith() {
    let server = TestServer::monolith_configured(strict).await;
    let urls = vec![server.url().to_owned()];
    limits_apply(server, urls).await;
}

/// Split mode: the counts live in Redis, so alternating gateways gains nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_shared_by_gateways() {
    let server = TestServer::split_configured(strict).await;
    let urls = server.gateway_urls();
    assert!(urls.len() >= 2);
    limits_apply(server, urls).await;
}
