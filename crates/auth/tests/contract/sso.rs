//! Upstream sign-in's refusals across the contract (the whole flow runs against a real
//! provider in `tests/e2e/sso.rs`): the status and errcode of every failure survive the gRPC
//! hop, a provider that cannot be reached is 502 (never a 500), and a sign-in's state is
//! used up by its first callback whatever the outcome.

use std::sync::Arc;

use deadpool_postgres::Pool;
use trellis_core::{ErrorCode, sso::OidcProvider};
use trellis_proto::auth::{AuthService, SsoCallbackRequest, SsoStartRequest};

use crate::common::assert_err;

/// A provider nobody listens for (port 9 is discard; nothing serves it on loopback).
pub fn sso_config() -> trellis_auth::AuthConfig {
    let provider = OidcProvider {
        idp_id: "down".into(),
        idp_name: "Down".into(),
        idp_icon: None,
        issuer: "http://127.0.0.1:9".into(),
        client_id: "trellis".into(),
        client_secret: Some("s3cret".into()),
        client_auth_method: "client_secret_basic".into(),
        scopes: vec!["openid".into()],
        localpart_template: "{preferred_username}".into(),
        display_name_claim: None,
        allow_existing_users: false,
    };
    let mut config = crate::common::config();
    config.sso.oidc_providers = vec![provider];
    config
}

fn start(idp: &str, redirect: &str, purpose: &str) -> SsoStartRequest {
    SsoStartRequest {
        idp_id: idp.into(),
        redirect_url: redirect.into(),
        callback_url: "http://hs.example/_synapse/client/oidc/callback".into(),
        purpose: purpose.into(),
    }
}

fn callback(state: &str, cookie: Option<&str>) -> SsoCallbackRequest {
    SsoCallbackRequest {
        state: state.into(),
        code: Some("the-code".into()),
        cookie_state: cookie.map(str::to_owned),
        ..Default::default()
    }
}

/// A sign-in under way, written as `sso_start` would have (its provider cannot be reached).
async fn pending(pool: &Pool, state: &str) {
    let hash: Vec<u8> = sha2_digest(state);
    let c = pool.get().await.unwrap();
    c.execute(
        "INSERT INTO sso_sessions (state_hash, idp_id, nonce, code_verifier, callback_url, purpose, redirect_url, \
         expires_ts) VALUES ($1, 'down', 'n', 'v', 'http://hs.example/cb', 'login', 'https://app.example/', $2)",
        &[&hash, &(trellis_core::time::now_ms() + 600_000)],
    )
    .await
    .unwrap();
}

fn sha2_digest(s: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).to_vec()
}

pub async fn sso_refusals(svc: Arc<dyn AuthService>, pool: Pool) {
    assert_err(
        &svc.sso_start(start("nope", "https://app.example/", "login")).await.unwrap_err(),
        ErrorCode::NotFound,
        404,
    );
    let relative = svc.sso_start(start("down", "/after", "login")).await.unwrap_err();
    assert_err(&relative, ErrorCode::InvalidParam, 400);
    // A provider button may only come back to this server's pages.
    let away = svc.sso_start(start("down", "https://evil.example/", "oauth")).await.unwrap_err();
    assert_err(&away, ErrorCode::InvalidParam, 400);
    let unreachable = svc.sso_start(start("down", "https://app.example/", "login")).await.unwrap_err();
    assert_err(&unreachable, ErrorCode::Unknown, 502);

    assert_err(&svc.sso_callback(callback("", None)).await.unwrap_err(), ErrorCode::InvalidParam, 400);
    assert_err(
        &svc.sso_callback(callback("never-issued", Some("never-issued"))).await.unwrap_err(),
        ErrorCode::InvalidParam,
        400,
    );

    // Another browser's callback is refused, and uses the sign-in up.
    pending(&pool, "state-1").await;
    assert_err(&svc.sso_callback(callback("state-1", Some("other"))).await.unwrap_err(), ErrorCode::Forbidden, 403);
    assert_err(
        &svc.sso_callback(callback("state-1", Some("state-1"))).await.unwrap_err(),
        ErrorCode::InvalidParam,
        400,
    );

    // The provider said no.
    pending(&pool, "state-2").await;
    let denied =
        SsoCallbackRequest { code: None, error: Some("access_denied".into()), ..callback("state-2", Some("state-2")) };
    assert_err(&svc.sso_callback(denied).await.unwrap_err(), ErrorCode::Forbidden, 403);

    // No code.
    pending(&pool, "state-3").await;
    let bare = SsoCallbackRequest { code: None, ..callback("state-3", Some("state-3")) };
    assert_err(&svc.sso_callback(bare).await.unwrap_err(), ErrorCode::MissingParam, 400);

    // The code cannot be exchanged: the provider is down.
    pending(&pool, "state-4").await;
    assert_err(&svc.sso_callback(callback("state-4", Some("state-4"))).await.unwrap_err(), ErrorCode::Unknown, 502);
}
