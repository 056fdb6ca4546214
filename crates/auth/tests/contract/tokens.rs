//! Refresh tokens, login tokens and registration tokens, through the contract.

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::json;
use trellis_core::ErrorCode;
use trellis_proto::auth::{
    AuthService, AuthenticateRequest, CreateLoginTokenRequest, CreateRegistrationTokenRequest,
    ListRegistrationTokensRequest, LoginRequest, LoginResponse, RefreshRequest, RegisterRequest,
    RegistrationTokenRequest, UpdateRegistrationTokenRequest,
};

use crate::common::{assert_err, dummy_auth, login, register_req};

fn authenticate(token: &str) -> AuthenticateRequest {
    AuthenticateRequest { access_token: token.into(), ip: None, user_agent: None, user_id: None }
}

/// Registers `username` through the token stage with `token`, then the dummy stage.
async fn register_with_token(svc: &Arc<dyn AuthService>, username: &str, token: &str) {
    let mut req = register_req(username, "correct horse");
    let challenge = svc.register(req.clone()).await.expect_err("a UIA challenge");
    let session = challenge.client_body()["session"].as_str().expect("session").to_owned();
    req.auth_json = json!({"type": "m.login.registration_token", "token": token, "session": session}).to_string();
    svc.register(req.clone()).await.expect_err("the dummy stage remains");
    req.auth_json = dummy_auth(Some(&session));
    svc.register(req).await.expect("registered");
}

async fn refreshing_login(svc: &Arc<dyn AuthService>, user: &str) -> LoginResponse {
    let req =
        LoginRequest { user: user.into(), password: "correct horse".into(), refresh_token: true, ..Default::default() };
    svc.login(req).await.expect("login")
}

async fn open_token(svc: &Arc<dyn AuthService>, token: &str) {
    let req = CreateRegistrationTokenRequest { token: Some(token.into()), ..Default::default() };
    svc.create_registration_token(req).await.expect("token created");
}

pub async fn refresh_rotation(svc: Arc<dyn AuthService>, _db: Pool) {
    open_token(&svc, "t").await;
    register_with_token(&svc, "nora", "t").await;
    // A client that does not ask gets a token that never expires.
    let plain = login(&svc, "nora", "correct horse").await;
    assert_eq!((plain.refresh_token, plain.expires_in_ms), (None, None));
    assert_eq!(svc.authenticate(authenticate(&plain.access_token)).await.unwrap().expires_ts, None);

    let first = refreshing_login(&svc, "nora").await;
    assert_eq!(first.expires_in_ms, Some(300_000));
    let r0 = first.refresh_token.clone().expect("a refresh token");
    let me = svc.authenticate(authenticate(&first.access_token)).await.unwrap();
    assert!(me.expires_ts.is_some_and(|at| at > trellis_core::time::now_ms()), "the expiry crosses the contract");

    let next = svc.refresh(RefreshRequest { refresh_token: r0.clone() }).await.unwrap();
    assert_eq!(next.expires_in_ms, Some(300_000));
    svc.refresh(RefreshRequest { refresh_token: r0.clone() }).await.expect("works until the new pair is used");
    let again = svc.refresh(RefreshRequest { refresh_token: r0.clone() }).await.unwrap();
    // The pair handed out before (never used) is replaced.
    let gone = svc.authenticate(authenticate(&next.access_token)).await.unwrap_err();
    assert_err(&gone, ErrorCode::UnknownToken, 401);
    let me = svc.authenticate(authenticate(&again.access_token)).await.unwrap();
    assert_eq!(me.device_id, first.device_id, "the same device");
    let used = svc.refresh(RefreshRequest { refresh_token: r0 }).await.unwrap_err();
    assert_err(&used, ErrorCode::UnknownToken, 401);
    assert_eq!(used.client_body()["soft_logout"], false);
}

pub async fn expired_token_is_a_soft_logout(svc: Arc<dyn AuthService>, db: Pool) {
    open_token(&svc, "t").await;
    register_with_token(&svc, "olga", "t").await;
    let done = refreshing_login(&svc, "olga").await;
    let client = db.get().await.unwrap();
    client.execute("UPDATE access_tokens SET expires_ts = 1 WHERE expires_ts IS NOT NULL", &[]).await.unwrap();
    let err = svc.authenticate(authenticate(&done.access_token)).await.unwrap_err();
    assert_err(&err, ErrorCode::UnknownToken, 401);
    assert_eq!(err.client_body()["soft_logout"], true, "survives the hop: {}", err.client_body());
    let renewed = svc.refresh(RefreshRequest { refresh_token: done.refresh_token.unwrap() }).await.unwrap();
    svc.authenticate(authenticate(&renewed.access_token)).await.expect("the session goes on");
}

pub async fn login_token_once(svc: Arc<dyn AuthService>, db: Pool) {
    open_token(&svc, "t").await;
    register_with_token(&svc, "pia", "t").await;
    let user_id = format!("@pia:{}", crate::common::SERVER);
    let create = |auth: String| CreateLoginTokenRequest { user_id: user_id.clone(), auth_json: auth };
    let challenge = svc.create_login_token(create(String::new())).await.unwrap_err();
    assert_eq!(challenge.code(), ErrorCode::UiaRequired);
    let password = |password: &str| {
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "pia"}, "password": password})
            .to_string()
    };
    let wrong = svc.create_login_token(create(password("wrong horse"))).await.unwrap_err();
    assert_eq!(wrong.client_body()["errcode"], "M_FORBIDDEN");
    let token = svc.create_login_token(create(password("correct horse"))).await.unwrap();
    assert_eq!(token.expires_in_ms, 120_000);
    let with_token = |t: &str| LoginRequest { login_token: Some(t.into()), ..Default::default() };
    let signed_in = svc.login(with_token(&token.login_token)).await.unwrap();
    assert_eq!(signed_in.user_id, user_id);
    assert_err(&svc.login(with_token(&token.login_token)).await.unwrap_err(), ErrorCode::Forbidden, 403);
    // Expired ones are refused too.
    let late = svc.create_login_token(create(password("correct horse"))).await.unwrap();
    db.get().await.unwrap().execute("UPDATE login_tokens SET expires_ts = 1", &[]).await.unwrap();
    assert_err(&svc.login(with_token(&late.login_token)).await.unwrap_err(), ErrorCode::Forbidden, 403);
}

pub async fn login_tokens_off(svc: Arc<dyn AuthService>, _db: Pool) {
    let req = CreateLoginTokenRequest { user_id: "@x:test.local".into(), auth_json: String::new() };
    assert_err(&svc.create_login_token(req).await.unwrap_err(), ErrorCode::Unrecognized, 404);
}

pub async fn registration_token_operations(svc: Arc<dyn AuthService>, _db: Pool) {
    let random = svc.create_registration_token(CreateRegistrationTokenRequest::default()).await.unwrap();
    assert_eq!(random.token.len(), 16);
    assert_eq!((random.uses_allowed, random.pending, random.completed, random.expiry_time), (None, 0, 0, None));
    let named =
        CreateRegistrationTokenRequest { token: Some("invite.1".into()), uses_allowed: Some(2), ..Default::default() };
    svc.create_registration_token(named.clone()).await.unwrap();
    assert_err(&svc.create_registration_token(named).await.unwrap_err(), ErrorCode::InvalidParam, 400);
    for bad in [
        CreateRegistrationTokenRequest { token: Some("no spaces".into()), ..Default::default() },
        CreateRegistrationTokenRequest { token: Some("x".repeat(65)), ..Default::default() },
        CreateRegistrationTokenRequest { length: Some(0), ..Default::default() },
        CreateRegistrationTokenRequest { length: Some(65), ..Default::default() },
        CreateRegistrationTokenRequest { uses_allowed: Some(-1), ..Default::default() },
        CreateRegistrationTokenRequest { expiry_time: Some(1), ..Default::default() },
    ] {
        assert_err(&svc.create_registration_token(bad.clone()).await.unwrap_err(), ErrorCode::InvalidParam, 400);
    }
    let all = svc.list_registration_tokens(ListRegistrationTokensRequest { valid: None }).await.unwrap();
    assert_eq!(all.tokens.len(), 2);

    // Used up: no longer valid, listed among the invalid ones.
    let get = |token: &str| RegistrationTokenRequest { token: token.into() };
    let update = UpdateRegistrationTokenRequest {
        token: "invite.1".into(),
        set_uses_allowed: true,
        uses_allowed: Some(0),
        ..Default::default()
    };
    assert_eq!(svc.update_registration_token(update).await.unwrap().uses_allowed, Some(0));
    assert!(!svc.registration_token_validity(get("invite.1")).await.unwrap().valid);
    assert!(svc.registration_token_validity(get(&random.token)).await.unwrap().valid);
    let invalid = svc.list_registration_tokens(ListRegistrationTokensRequest { valid: Some(false) }).await.unwrap();
    assert_eq!(invalid.tokens.iter().map(|t| t.token.as_str()).collect::<Vec<_>>(), ["invite.1"]);
    let valid = svc.list_registration_tokens(ListRegistrationTokensRequest { valid: Some(true) }).await.unwrap();
    assert_eq!(valid.tokens.len(), 1);
    // Unlimited again, and an expiry: unset fields stay as they are.
    let update = UpdateRegistrationTokenRequest {
        token: "invite.1".into(),
        set_uses_allowed: true,
        uses_allowed: None,
        set_expiry_time: true,
        expiry_time: Some(trellis_core::time::now_ms() + 60_000),
    };
    let updated = svc.update_registration_token(update).await.unwrap();
    assert!(updated.uses_allowed.is_none() && updated.expiry_time.is_some());
    let untouched = UpdateRegistrationTokenRequest { token: "invite.1".into(), ..Default::default() };
    assert_eq!(svc.update_registration_token(untouched).await.unwrap(), updated);
    assert_eq!(svc.get_registration_token(get("invite.1")).await.unwrap(), updated);

    svc.delete_registration_token(get("invite.1")).await.unwrap();
    assert_err(&svc.get_registration_token(get("invite.1")).await.unwrap_err(), ErrorCode::NotFound, 404);
    assert_err(&svc.delete_registration_token(get("invite.1")).await.unwrap_err(), ErrorCode::NotFound, 404);
    let missing = UpdateRegistrationTokenRequest { token: "invite.1".into(), ..Default::default() };
    assert_err(&svc.update_registration_token(missing).await.unwrap_err(), ErrorCode::NotFound, 404);
}

pub async fn registration_token_uses(svc: Arc<dyn AuthService>, db: Pool) {
    let req =
        CreateRegistrationTokenRequest { token: Some("solo".into()), uses_allowed: Some(1), ..Default::default() };
    svc.create_registration_token(req).await.unwrap();
    let get = || RegistrationTokenRequest { token: "solo".into() };
    // A registration passes the stage and is abandoned: the use is reserved...
    let challenge = svc.register(register_req("quinn", "correct horse")).await.unwrap_err();
    let session = challenge.client_body()["session"].as_str().unwrap().to_owned();
    let stage = json!({"type": "m.login.registration_token", "token": "solo", "session": session}).to_string();
    let passed = svc.register(RegisterRequest { auth_json: stage, ..Default::default() }).await.unwrap_err();
    assert_eq!(passed.client_body()["completed"], json!(["m.login.registration_token"]));
    assert_eq!(svc.get_registration_token(get()).await.unwrap().pending, 1);
    assert!(!svc.registration_token_validity(get()).await.unwrap().valid);
    // ...until its session expires and is purged (every 64th new session purges).
    db.get().await.unwrap().execute("UPDATE uia_sessions SET created_ts = 0", &[]).await.unwrap();
    for _ in 0..64 {
        svc.register(RegisterRequest::default()).await.unwrap_err();
    }
    let released = svc.get_registration_token(get()).await.unwrap();
    assert_eq!((released.pending, released.completed), (0, 0));
    // Then a registration spends it.
    register_with_token(&svc, "ruth", "solo").await;
    let spent = svc.get_registration_token(get()).await.unwrap();
    assert_eq!((spent.pending, spent.completed), (0, 1));
    assert!(!svc.registration_token_validity(get()).await.unwrap().valid);
}

pub async fn validity_when_registration_is_off(svc: Arc<dyn AuthService>, _db: Pool) {
    let req = RegistrationTokenRequest { token: "anything".into() };
    assert_err(&svc.registration_token_validity(req).await.unwrap_err(), ErrorCode::Forbidden, 403);
}
