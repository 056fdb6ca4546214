//! Refresh tokens and expiring access tokens (spec 1.3, "Refreshing access tokens"), as
//! Element X and matrix-rust-sdk use them: `refresh_token: true` on login and registration,
//! rotation through `POST /refresh`, soft logout when an access token expires, and refresh
//! tokens going with their device.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trellis_core::config::Config;
use trellis_testkit::{Client, TestServer};

both_modes!(configured refreshable;
    refresh_only_for_clients_that_ask,
    refresh_rotates_and_retires_the_old_token,
    refresh_tokens_go_with_their_device,
    refresh_bad_input);

const V3: &str = "/_matrix/client/v3";
const LIFETIME_MS: u64 = 60_000;

fn refreshable(c: &mut Config) {
    c.auth.access_token_lifetime_ms = Some(LIFETIME_MS);
}

/// Logs `user` in with `refresh_token: true` on a device of its own; the client and the
/// login's answer.
async fn refreshing_login(server: &TestServer, user: &str, password: &str) -> (Client, Value) {
    let mut c = server.client();
    let body = c
        .post(
            &format!("{V3}/login"),
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                   "password": password, "refresh_token": true}),
        )
        .await
        .ok();
    c.token = body["access_token"].as_str().map(str::to_owned);
    c.user_id = user_id(&body);
    c.device_id = body["device_id"].as_str().unwrap().to_owned();
    (c, body)
}

fn user_id(body: &Value) -> String {
    body["user_id"].as_str().unwrap().to_owned()
}

fn refresh_token(body: &Value) -> String {
    body["refresh_token"].as_str().unwrap_or_else(|| panic!("a refresh token in {body}")).to_owned()
}

/// `POST /refresh` with `token`, as a client that is not signed in.
async fn refresh(server: &TestServer, token: &str) -> trellis_testkit::Reply {
    server.client().post(&format!("{V3}/refresh"), json!({"refresh_token": token})).await
}

/// `whoami` with `access_token`.
async fn whoami(server: &TestServer, access_token: &str) -> trellis_testkit::Reply {
    let mut c = server.client();
    c.token = Some(access_token.to_owned());
    c.get(&format!("{V3}/account/whoami")).await
}

async fn refresh_only_for_clients_that_ask(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "secret-a").await;
    // Without `refresh_token`, a token that never expires (as Synapse).
    let mut plain = server.client();
    let body = plain.login("alice", "secret-a").await;
    assert!(body.get("refresh_token").is_none() && body.get("expires_in_ms").is_none(), "{body}");

    let (_, body) = refreshing_login(&server, "alice", "secret-a").await;
    assert_eq!(body["expires_in_ms"], LIFETIME_MS, "{body}");
    assert!(refresh_token(&body).starts_with("trr_"));
    assert_ne!(refresh_token(&body), body["access_token"].as_str().unwrap());

    // Registration too, through user-interactive auth.
    let first = server.client().post(&format!("{V3}/register"), json!({"username": "bob", "password": "pw-b"})).await;
    let session = first.body["session"].as_str().unwrap();
    let registered = server
        .client()
        .post(
            &format!("{V3}/register"),
            json!({"username": "bob", "password": "pw-b", "refresh_token": true,
                   "auth": {"type": "m.login.dummy", "session": session}}),
        )
        .await
        .ok();
    assert_eq!(registered["expires_in_ms"], LIFETIME_MS, "{registered}");
    let renewed = refresh(&server, &refresh_token(&registered)).await.ok();
    assert_eq!(whoami(&server, renewed["access_token"].as_str().unwrap()).await.ok()["user_id"], "@bob:localhost");
}

async fn refresh_rotates_and_retires_the_old_token(server: TestServer) {
    server.client().register("carol", "secret-c").await;
    let (carol, login) = refreshing_login(&server, "carol", "secret-c").await;
    let (a0, r0) = (carol.token.clone().unwrap(), refresh_token(&login));

    let first = refresh(&server, &r0).await.ok();
    assert_eq!(first["expires_in_ms"], LIFETIME_MS, "{first}");
    let (a1, r1) = (first["access_token"].as_str().unwrap().to_owned(), refresh_token(&first));
    assert!(r1 != r0 && a1 != a0);
    // The answer was lost: the old refresh token still works until the new pair is used, and
    // refreshing again replaces the pair never used.
    let again = refresh(&server, &r0).await.ok();
    let (a1b, r1b) = (again["access_token"].as_str().unwrap().to_owned(), refresh_token(&again));
    whoami(&server, &a1).await.err(401, "M_UNKNOWN_TOKEN");
    refresh(&server, &r1).await.err(401, "M_UNKNOWN_TOKEN");

    // The new access token's first use retires the old refresh token.
    let me = whoami(&server, &a1b).await.ok();
    assert_eq!(
        (me["user_id"].as_str(), me["device_id"].as_str()),
        (Some(carol.user_id.as_str()), Some(carol.device_id.as_str()))
    );
    let refused = refresh(&server, &r0).await;
    refused.err(401, "M_UNKNOWN_TOKEN");
    // The old access token lives out its lifetime (the spec leaves that to the server).
    whoami(&server, &a0).await.ok();

    // Refreshing is itself a use: the next rotation retires the token before it.
    let second = refresh(&server, &r1b).await.ok();
    refresh(&server, &refresh_token(&second)).await.ok();
    refresh(&server, &r1b).await.err(401, "M_UNKNOWN_TOKEN");
    // The device stays the same throughout: the registration's and the login's, no more.
    let devices = carol.get(&format!("{V3}/devices")).await.ok();
    assert_eq!(devices["devices"].as_array().unwrap().len(), 2, "{devices}");
    // Older prefixes serve the endpoint too (r0 as Synapse, v1 from MSC2918's drafts).
    for prefix in ["r0", "v1"] {
        server
            .client()
            .post(&format!("/_matrix/client/{prefix}/refresh"), json!({"refresh_token": "x"}))
            .await
            .err(401, "M_UNKNOWN_TOKEN");
    }
}

async fn refresh_tokens_go_with_their_device(server: TestServer) {
    server.client().register("dave", "secret-d").await;
    // Logout.
    let (phone, body) = refreshing_login(&server, "dave", "secret-d").await;
    phone.post(&format!("{V3}/logout"), json!({})).await.ok();
    refresh(&server, &refresh_token(&body)).await.err(401, "M_UNKNOWN_TOKEN");
    // Logout everywhere.
    let (laptop, body) = refreshing_login(&server, "dave", "secret-d").await;
    let (_, other) = refreshing_login(&server, "dave", "secret-d").await;
    laptop.post(&format!("{V3}/logout/all"), json!({})).await.ok();
    refresh(&server, &refresh_token(&body)).await.err(401, "M_UNKNOWN_TOKEN");
    refresh(&server, &refresh_token(&other)).await.err(401, "M_UNKNOWN_TOKEN");
    // A device deleted by another one.
    let (tablet, body) = refreshing_login(&server, "dave", "secret-d").await;
    let mut main = server.client();
    main.login("dave", "secret-d").await;
    let path = format!("{V3}/devices/{}", tablet.device_id);
    let challenge = main.request("DELETE", &path, Some(json!({}))).await;
    let session = challenge.body["session"].as_str().unwrap();
    let auth = json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "dave"},
                               "password": "secret-d", "session": session}});
    main.request("DELETE", &path, Some(auth)).await.ok();
    refresh(&server, &refresh_token(&body)).await.err(401, "M_UNKNOWN_TOKEN");
    // A new login on the same device ID ends the device's earlier session.
    let (kiosk, body) = refreshing_login(&server, "dave", "secret-d").await;
    let again = server
        .client()
        .post(
            &format!("{V3}/login"),
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "dave"},
                   "password": "secret-d", "device_id": kiosk.device_id}),
        )
        .await
        .ok();
    assert_eq!(again["device_id"], kiosk.device_id.as_str());
    refresh(&server, &refresh_token(&body)).await.err(401, "M_UNKNOWN_TOKEN");
}

async fn refresh_bad_input(server: TestServer) {
    let unknown = refresh(&server, "trr_no_such_token").await;
    unknown.err(401, "M_UNKNOWN_TOKEN");
    assert_eq!(unknown.body["soft_logout"], false, "{}", unknown.body);
    let c = server.client();
    c.post(&format!("{V3}/refresh"), json!({})).await.err(400, "M_BAD_JSON");
    c.post(&format!("{V3}/refresh"), json!({"refresh_token": 5})).await.err(400, "M_BAD_JSON");
    c.raw("POST", &format!("{V3}/refresh"), b"{not json".to_vec()).await.err(400, "M_NOT_JSON");
    // An access token is no refresh token, and the reverse.
    server.client().register("erin", "secret-e").await;
    let (erin, body) = refreshing_login(&server, "erin", "secret-e").await;
    refresh(&server, erin.token.as_deref().unwrap()).await.err(401, "M_UNKNOWN_TOKEN");
    whoami(&server, &refresh_token(&body)).await.err(401, "M_UNKNOWN_TOKEN");
}

/// A short lifetime, and gateways that remember a validation for a minute: an expired token
/// must still fail at once, whatever a cache remembers.
mod expiry {
    use super::*;

    both_modes!(configured short_lived; expired_access_token_is_a_soft_logout);

    const SHORT_MS: u64 = 2_500;

    fn short_lived(c: &mut Config) {
        c.auth.access_token_lifetime_ms = Some(SHORT_MS);
        c.http.token_cache_ms = 60_000;
    }

    async fn expired_access_token_is_a_soft_logout(server: TestServer) {
        server.client().register("fay", "secret-f").await;
        let started = Instant::now();
        let (fay, body) = refreshing_login(&server, "fay", "secret-f").await;
        assert_eq!(body["expires_in_ms"], SHORT_MS);
        let token = fay.token.clone().unwrap();
        // Validated (and remembered by the gateway and the auth service) while it is fresh,
        // then used until it expires: it must fail within moments of its expiry.
        let expired = loop {
            let reply = whoami(&server, &token).await;
            if reply.status != 200 {
                break reply;
            }
            assert!(started.elapsed() < Duration::from_millis(SHORT_MS + 5_000), "still accepted long after expiry");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(started.elapsed() >= Duration::from_millis(SHORT_MS), "refused before its expiry: {}", expired.body);
        expired.err(401, "M_UNKNOWN_TOKEN");
        assert_eq!(expired.body["soft_logout"], true, "{}", expired.body);
        // The session goes on with a refresh, on the same device.
        let renewed = refresh(&server, &refresh_token(&body)).await.ok();
        let me = whoami(&server, renewed["access_token"].as_str().unwrap()).await.ok();
        assert_eq!(me["device_id"], fay.device_id.as_str());
    }
}
