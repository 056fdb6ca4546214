//! Signing in another device with a login token (spec 1.7, `POST /login/get_token` and the
//! `m.login.token` login), as Element's "link new device" QR flow does: the token needs the
//! password every time, signs in once, and the server says whether it offers this.

use serde_json::{Value, json};
use trellis_core::config::Config;
use trellis_testkit::{Client, TestServer};

both_modes!(login_token_signs_in_one_device, login_token_is_advertised);

const V3: &str = "/_matrix/client/v3";
const GET_TOKEN: &str = "/_matrix/client/v1/login/get_token";

fn password_auth(user: &str, password: &str, session: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
           "password": password, "session": session})
}

/// `POST /login/get_token` through its password stage; the answer.
async fn get_token(c: &Client, user: &str, password: &str) -> Value {
    let challenge = c.post(GET_TOKEN, json!({})).await;
    assert_eq!(challenge.status, 401, "{}", challenge.body);
    assert_eq!(challenge.body["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = challenge.body["session"].as_str().unwrap();
    c.post(GET_TOKEN, json!({"auth": password_auth(user, password, session)})).await.ok()
}

fn token_login(token: &str) -> Value {
    json!({"type": "m.login.token", "token": token})
}

async fn login_token_signs_in_one_device(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "secret-a").await;

    // A wrong password is refused inside the challenge, so the client may try again.
    let challenge = alice.post(GET_TOKEN, json!({})).await;
    let session = challenge.body["session"].as_str().unwrap();
    let wrong = alice.post(GET_TOKEN, json!({"auth": password_auth("alice", "nope", session)})).await;
    assert_eq!((wrong.status, wrong.body["errcode"].as_str()), (401, Some("M_FORBIDDEN")), "{}", wrong.body);

    let issued = get_token(&alice, "alice", "secret-a").await;
    assert_eq!(issued["expires_in_ms"], 120_000, "{issued}");
    let token = issued["login_token"].as_str().unwrap().to_owned();

    // The new device signs in as alice, with a device of its own.
    let mut phone = server.client();
    let body = phone.post(&format!("{V3}/login"), token_login(&token)).await.ok();
    assert_eq!(body["user_id"], alice.user_id.as_str());
    assert_ne!(body["device_id"], alice.device_id.as_str());
    phone.token = body["access_token"].as_str().map(str::to_owned);
    assert_eq!(phone.get(&format!("{V3}/account/whoami")).await.ok()["user_id"], alice.user_id.as_str());

    // Once only; an unknown token is refused the same way (the spec's 403 M_FORBIDDEN).
    server.client().post(&format!("{V3}/login"), token_login(&token)).await.err(403, "M_FORBIDDEN");
    server.client().post(&format!("{V3}/login"), token_login("trt_made_up")).await.err(403, "M_FORBIDDEN");
    server.client().post(&format!("{V3}/login"), json!({"type": "m.login.token"})).await.err(400, "M_BAD_JSON");

    // Each token needs the password again: a completed session is not reused.
    alice.post(GET_TOKEN, json!({"auth": password_auth("alice", "secret-a", session)})).await.ok();
    let replay = alice.post(GET_TOKEN, json!({"auth": password_auth("alice", "secret-a", session)})).await;
    assert_eq!(replay.status / 100, 4, "a used-up session must not issue another token: {}", replay.body);
    assert!(replay.body.get("login_token").is_none());
    // Not without a login of one's own.
    server.client().post(GET_TOKEN, json!({})).await.err(401, "M_MISSING_TOKEN");
    // The unstable path of MSC3882 answers too.
    let unstable = alice.post("/_matrix/client/unstable/org.matrix.msc3882/login/get_token", json!({})).await;
    assert_eq!(unstable.status, 401, "{}", unstable.body);
    assert!(unstable.body["session"].is_string());

    // Another user's password does not issue alice a token.
    server.client().register("bob", "secret-b").await;
    let challenge = alice.post(GET_TOKEN, json!({})).await;
    let session = challenge.body["session"].as_str().unwrap();
    alice.post(GET_TOKEN, json!({"auth": password_auth("bob", "secret-b", session)})).await.err(403, "M_FORBIDDEN");
}

async fn login_token_is_advertised(server: TestServer) {
    let flows = server.client().get(&format!("{V3}/login")).await.ok();
    let token = flows["flows"].as_array().unwrap().iter().find(|f| f["type"] == "m.login.token");
    assert_eq!(token, Some(&json!({"type": "m.login.token", "get_login_token": true})), "{flows}");
    let mut alice = server.client();
    alice.register("alice", "secret-a").await;
    let caps = alice.get(&format!("{V3}/capabilities")).await.ok();
    assert_eq!(caps["capabilities"]["m.get_login_token"], json!({"enabled": true}), "{caps}");
}

/// Off by default, as in Synapse.
mod disabled {
    use super::*;

    both_modes!(configured off; login_token_off_by_default);

    fn off(c: &mut Config) {
        c.auth = trellis_core::config::AuthSettings::default();
    }

    async fn login_token_off_by_default(server: TestServer) {
        let flows = server.client().get(&format!("{V3}/login")).await.ok();
        assert!(!flows["flows"].as_array().unwrap().iter().any(|f| f["type"] == "m.login.token"), "{flows}");
        let mut alice = server.client();
        alice.register("alice", "secret-a").await;
        let caps = alice.get(&format!("{V3}/capabilities")).await.ok();
        assert_eq!(caps["capabilities"]["m.get_login_token"], json!({"enabled": false}), "{caps}");
        alice.post(GET_TOKEN, json!({})).await.err(404, "M_UNRECOGNIZED");
    }
}
