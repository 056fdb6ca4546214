//! User-interactive auth as clients and SyTest expect it of Synapse: `POST /register {}` is
//! the challenge, a session remembers the first request's parameters and is replayable once
//! complete, a session is bound to its operation (the device it deletes, the user), failed
//! stages list `completed`, and registration counts against its rate limit only when it
//! creates an account.

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer};

both_modes!(
    register_challenge_and_remembered_parameters,
    registration_is_idempotent,
    uia_sessions_are_bound_to_their_operation,
    wrong_password_lists_completed_stages,
);

const V3: &str = "/_matrix/client/v3";

/// The session of a 401 challenge.
#[track_caller]
fn session_of(reply: &trellis_testkit::Reply) -> String {
    assert_eq!(reply.status, 401, "{}", reply.body);
    reply.body["session"].as_str().expect("session").to_owned()
}

fn dummy(session: &str) -> Value {
    json!({"type": "m.login.dummy", "session": session})
}

async fn register_challenge_and_remembered_parameters(server: TestServer) {
    let c = server.client();
    let challenge = c.post(&format!("{V3}/register"), json!({})).await;
    session_of(&challenge);
    assert_eq!(challenge.body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    assert!(challenge.body.get("errcode").is_none(), "{}", challenge.body);

    // The first request's parameters (capitals in the name, a non-ASCII password, a device)
    // are remembered: the last stage sends only `auth`.
    let first = json!({"username": "Ana", "password": "übers3kr1t", "device_id": "xyzzy",
                       "initial_device_display_name": "display_name"});
    let session = session_of(&c.post(&format!("{V3}/register"), first).await);
    let done = c.post(&format!("{V3}/register"), json!({"auth": dummy(&session)})).await.ok();
    assert_eq!(done["user_id"], "@ana:localhost");
    assert_eq!(done["device_id"], "xyzzy");
    let mut ana = server.client();
    ana.token = done["access_token"].as_str().map(str::to_owned);
    let device = ana.get(&format!("{V3}/devices/xyzzy")).await.ok();
    assert_eq!(device["display_name"], "display_name");
    // Seen from its first request: a device is never listed without it.
    assert!(device["last_seen_ts"].as_i64().is_some_and(|ts| ts > 0), "{device}");
    assert!(device["last_seen_ip"].is_string(), "{device}");
    let mut again = server.client();
    again.login("ana", "übers3kr1t").await;

    // inhibit_login is remembered too.
    let first = json!({"username": "bo", "password": "secret-b", "inhibit_login": true});
    let session = session_of(&c.post(&format!("{V3}/register"), first).await);
    let done = c.post(&format!("{V3}/register"), json!({"auth": dummy(&session)})).await.ok();
    assert_eq!(done["user_id"], "@bo:localhost");
    assert!(done.get("access_token").is_none() && done.get("device_id").is_none(), "{done}");

    // A session whose requests never gave a password cannot complete.
    let session = session_of(&c.post(&format!("{V3}/register"), json!({"username": "cy"})).await);
    let missing = c.post(&format!("{V3}/register"), json!({"auth": dummy(&session)})).await;
    missing.err(400, "M_MISSING_PARAM");
}

async fn registration_is_idempotent(server: TestServer) {
    let c = server.client();
    for username in [Some("dee"), None] {
        let mut body = json!({"password": "sUp3rs3kr1t"});
        if let Some(name) = username {
            body["username"] = json!(name);
        }
        let session = session_of(&c.post(&format!("{V3}/register"), body.clone()).await);
        body["auth"] = dummy(&session);
        let first = c.post(&format!("{V3}/register"), body.clone()).await.ok();
        let second = c.post(&format!("{V3}/register"), body).await.ok();
        assert_eq!(first["user_id"], second["user_id"]);
        assert_ne!(first["access_token"], second["access_token"]);
        let mut replayed = server.client();
        replayed.token = second["access_token"].as_str().map(str::to_owned);
        assert_eq!(replayed.get(&format!("{V3}/account/whoami")).await.ok()["user_id"], first["user_id"]);
    }
}

/// Logs `user` in on `device`.
async fn device(server: &TestServer, user: &str, password: &str, device: &str) -> Client {
    let mut c = server.client();
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                      "password": password, "device_id": device, "initial_device_display_name": "device display"});
    let body = c.post(&format!("{V3}/login"), body).await.ok();
    c.token = body["access_token"].as_str().map(str::to_owned);
    c.user_id = body["user_id"].as_str().unwrap().to_owned();
    c
}

fn password(user: &str, password: &str, session: Option<&str>) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
           "password": password, "session": session})
}

async fn uia_sessions_are_bound_to_their_operation(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "secret-a").await;
    let mut eve = server.client();
    eve.register("eve", "secret-e").await;
    device(&server, "alice", "secret-a", "FIRST").await;
    device(&server, "alice", "secret-a", "SECOND").await;

    // Started to delete FIRST, the session cannot delete SECOND.
    let session = session_of(&alice.request("DELETE", &format!("{V3}/devices/FIRST"), Some(json!({}))).await);
    let auth = password(&alice.user_id, "secret-a", Some(&session));
    let stolen = alice.request("DELETE", &format!("{V3}/devices/SECOND"), Some(json!({"auth": auth}))).await;
    assert_eq!(stolen.status, 403, "{}", stolen.body);
    let second = alice.get(&format!("{V3}/devices/SECOND")).await.ok();
    assert_eq!(second["display_name"], "device display");
    // Nor can a bulk deletion of both.
    let both = json!({"devices": ["FIRST", "SECOND"], "auth": password(&alice.user_id, "secret-a", Some(&session))});
    assert_eq!(alice.post(&format!("{V3}/delete_devices"), both).await.status, 403);

    // Eve's credentials (with Alice's stolen token) are refused: the user must be the owner.
    let eves = json!({"auth": password(&eve.user_id, "secret-e", None)});
    let refused = alice.request("DELETE", &format!("{V3}/devices/SECOND"), Some(eves)).await;
    refused.err(403, "M_FORBIDDEN");
    alice.get(&format!("{V3}/devices/SECOND")).await.ok();

    // The session still completes what it was started for.
    let auth = json!({"auth": password(&alice.user_id, "secret-a", Some(&session))});
    alice.request("DELETE", &format!("{V3}/devices/FIRST"), Some(auth)).await.ok();
    alice.get(&format!("{V3}/devices/FIRST")).await.err(404, "M_NOT_FOUND");
}

async fn wrong_password_lists_completed_stages(server: TestServer) {
    let mut fay = server.client();
    fay.register("fay", "secret-f").await;
    let body = json!({"auth": password(&fay.user_id, "wrong password", None)});
    let reply = fay.post(&format!("{V3}/account/deactivate"), body).await;
    reply.err(401, "M_FORBIDDEN");
    for key in ["error", "params", "completed", "flows", "session"] {
        assert!(reply.body.get(key).is_some(), "{key} missing: {}", reply.body);
    }
    assert_eq!(reply.body["completed"], json!([]));
    // Still active.
    fay.get(&format!("{V3}/account/whoami")).await.ok();
}

/// A newcomer's script with the default rate limits: three users registered through the
/// two steps of user-interactive auth, each logging in again. Only account creations count
/// against the registration limit (five at once), so this never sees 429.
async fn tutorial_with_default_limits(server: TestServer) {
    for name in ["alice", "bob", "carol"] {
        let mut c = server.client();
        c.register(name, "wordpass").await;
        c.login(name, "wordpass").await;
    }
}

fn default_limits(c: &mut trellis_testkit::Config) {
    c.rate_limits.enabled = true;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_with_default_limits_monolith() {
    tutorial_with_default_limits(TestServer::monolith_configured(default_limits).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_with_default_limits_split() {
    tutorial_with_default_limits(TestServer::split_configured(default_limits).await).await;
}

/// With room for three accounts, three two-step registrations fit (six requests), and the
/// fourth registration is refused at its first step.
async fn registration_limit_counts_accounts(server: TestServer) {
    for name in ["gus", "hal", "ida"] {
        let c = server.client();
        let mut body = json!({"username": name, "password": "wordpass"});
        let session = session_of(&c.post(&format!("{V3}/register"), body.clone()).await);
        body["auth"] = dummy(&session);
        c.post(&format!("{V3}/register"), body).await.ok();
    }
    let c = server.client();
    c.post(&format!("{V3}/register"), json!({"username": "jo", "password": "wordpass"}))
        .await
        .err(429, "M_LIMIT_EXCEEDED");
}

fn three_accounts(c: &mut trellis_testkit::Config) {
    c.rate_limits.enabled = true;
    c.rate_limits.register = trellis_testkit::Rule::new(0.001, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_limit_counts_accounts_monolith() {
    registration_limit_counts_accounts(TestServer::monolith_configured(three_accounts).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_limit_counts_accounts_split() {
    registration_limit_counts_accounts(TestServer::split_configured(three_accounts).await).await;
}
