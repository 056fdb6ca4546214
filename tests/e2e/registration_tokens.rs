//! Token-authenticated registration (spec 1.2): with `registration.requires_token`, an
//! account needs a registration token the operator handed out — its validity can be asked
//! first, its uses are reserved while a registration is under way, and spent when the
//! account is made.

use serde_json::{Value, json};
use trellis_core::config::{Config, RegistrationTokenConfig};
use trellis_testkit::TestServer;

both_modes!(configured invitation_only;
    registration_needs_a_token,
    a_single_use_token_is_spent_once,
    registration_token_validity);

const V3: &str = "/_matrix/client/v3";
const VALIDITY: &str = "/_matrix/client/v1/register/m.login.registration_token/validity";
const STAGE: &str = "m.login.registration_token";

fn invitation_only(c: &mut Config) {
    c.registration.requires_token = true;
    let token =
        |token: &str, uses_allowed| RegistrationTokenConfig { token: token.into(), uses_allowed, expiry_time: None };
    c.registration.tokens = vec![token("open-door", None), token("one-seat", Some(1)), token("used-up", Some(0))];
}

/// Starts a registration; the session of its challenge, after checking the flows offered.
async fn start(server: &TestServer, username: &str) -> String {
    let reply =
        server.client().post(&format!("{V3}/register"), json!({"username": username, "password": "pw-123"})).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.body["flows"], json!([{"stages": [STAGE, "m.login.dummy"]}]), "{}", reply.body);
    reply.body["session"].as_str().unwrap().to_owned()
}

async fn stage(server: &TestServer, session: &str, auth: Value) -> trellis_testkit::Reply {
    let mut auth = auth;
    auth["session"] = json!(session);
    server.client().post(&format!("{V3}/register"), json!({"auth": auth})).await
}

async fn valid(server: &TestServer, token: &str) -> bool {
    let reply = server.client().get(&format!("{VALIDITY}?token={token}")).await.ok();
    reply["valid"].as_bool().unwrap()
}

async fn registration_needs_a_token(server: TestServer) {
    // Skipping the token stage completes nothing.
    let skipping = start(&server, "zed").await;
    let skipped = stage(&server, &skipping, json!({"type": "m.login.dummy"})).await;
    assert_eq!(skipped.status, 401, "{}", skipped.body);
    assert_eq!(skipped.body["completed"], json!(["m.login.dummy"]));

    let session = start(&server, "alice").await;
    // A token that is not usable is refused in the challenge (M_UNAUTHORIZED, as Synapse),
    // so the client can ask for another.
    for (auth, errcode) in [
        (json!({"type": STAGE, "token": "no-such-token"}), "M_UNAUTHORIZED"),
        (json!({"type": STAGE, "token": "used-up"}), "M_UNAUTHORIZED"),
        (json!({"type": STAGE}), "M_MISSING_PARAM"),
    ] {
        let refused = stage(&server, &session, auth).await;
        assert_eq!((refused.status, refused.body["errcode"].as_str()), (401, Some(errcode)), "{}", refused.body);
        assert!(refused.body["flows"].is_array(), "{}", refused.body);
    }
    let passed = stage(&server, &session, json!({"type": STAGE, "token": "open-door"})).await;
    assert_eq!(passed.status, 401, "{}", passed.body);
    assert_eq!(passed.body["completed"], json!([STAGE]), "{}", passed.body);
    // The stage again with another token: the session keeps the one it reserved.
    let changed = stage(&server, &session, json!({"type": STAGE, "token": "one-seat"})).await;
    assert_eq!(changed.body["errcode"], "M_INVALID_PARAM", "{}", changed.body);
    assert!(valid(&server, "one-seat").await, "no use of it was reserved");

    let done = stage(&server, &session, json!({"type": "m.login.dummy"})).await.ok();
    assert_eq!(done["user_id"], "@alice:localhost");
    // A registration without a session cannot skip the stage either.
    let one_shot = server
        .client()
        .post(
            &format!("{V3}/register"),
            json!({"username": "bob", "password": "pw-123", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_eq!(one_shot.status, 401, "{}", one_shot.body);
}

async fn a_single_use_token_is_spent_once(server: TestServer) {
    assert!(valid(&server, "one-seat").await);
    let first = start(&server, "carol").await;
    let second = start(&server, "dave").await;
    stage(&server, &first, json!({"type": STAGE, "token": "one-seat"})).await;
    // Reserved by carol's registration under way: not usable for dave meanwhile.
    assert!(!valid(&server, "one-seat").await);
    let refused = stage(&server, &second, json!({"type": STAGE, "token": "one-seat"})).await;
    assert_eq!(refused.body["errcode"], "M_UNAUTHORIZED", "{}", refused.body);
    stage(&server, &first, json!({"type": "m.login.dummy"})).await.ok();
    // Spent.
    assert!(!valid(&server, "one-seat").await);
    let refused = stage(&server, &second, json!({"type": STAGE, "token": "one-seat"})).await;
    assert_eq!(refused.body["errcode"], "M_UNAUTHORIZED", "{}", refused.body);
    // An unlimited one still works for dave.
    stage(&server, &second, json!({"type": STAGE, "token": "open-door"})).await;
    let done = stage(&server, &second, json!({"type": "m.login.dummy"})).await.ok();
    assert_eq!(done["user_id"], "@dave:localhost");
}

async fn registration_token_validity(server: TestServer) {
    assert!(valid(&server, "open-door").await);
    assert!(!valid(&server, "used-up").await);
    assert!(!valid(&server, "no-such-token").await);
    // The unstable path of MSC3231, which older Element versions call.
    let unstable =
        "/_matrix/client/unstable/org.matrix.msc3231/register/org.matrix.msc3231.login.registration_token/validity";
    assert_eq!(server.client().get(&format!("{unstable}?token=open-door")).await.ok(), json!({"valid": true}));
    // The token is required.
    let missing = server.client().get(VALIDITY).await;
    assert_eq!(missing.status, 400, "{}", missing.body);
}

/// Registration off: every token is refused (the spec's 403).
mod closed {
    use super::*;

    both_modes!(configured closed; validity_when_registration_is_off);

    fn closed(c: &mut Config) {
        invitation_only(c);
        c.registration.enabled = false;
    }

    async fn validity_when_registration_is_off(server: TestServer) {
        server.client().get(&format!("{VALIDITY}?token=open-door")).await.err(403, "M_FORBIDDEN");
    }
}
