//! Registration rules: usernames, passwords, inhibit_login, generated IDs, guests.

use std::sync::Arc;

use deadpool_postgres::Pool;
use trellis_core::ErrorCode;
use trellis_proto::auth::{AuthService, AuthenticateRequest, CheckUsernameRequest, LoginRequest, RegisterRequest};

use crate::common::{SERVER, assert_err, dummy_auth, login, register, register_req};

pub async fn username_rules(svc: Arc<dyn AuthService>, _db: Pool) {
    let check = |name: &str| CheckUsernameRequest { username: name.into() };
    for bad in ["Alice", "al ice", "al:ice", "", "123", "_bridge"] {
        let err = svc.check_username(check(bad)).await.unwrap_err();
        assert_err(&err, ErrorCode::InvalidUsername, 400);
    }
    let long = "a".repeat(260);
    assert_err(&svc.check_username(check(&long)).await.unwrap_err(), ErrorCode::InvalidUsername, 400);

    assert!(svc.check_username(check("erin")).await.unwrap().available);
    register(&svc, "erin", "correct horse").await;
    let err = svc.check_username(check("erin")).await.unwrap_err();
    assert_err(&err, ErrorCode::UserInUse, 400);
    assert!(svc.check_username(check("erin2")).await.unwrap().available);
}

pub async fn register_checks_come_before_uia(svc: Arc<dyn AuthService>, _db: Pool) {
    // None of these carry `auth`: a 400 instead of the 401 challenge proves the order.
    let req = register_req("frank", "short");
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::WeakPassword, 400);
    let req = register_req("fr ank", "correct horse");
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::InvalidUsername, 400);
    let mut req = register_req("frank", "correct horse");
    req.device_id = Some("D".repeat(600));
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::InvalidParam, 400);
    // A missing password is asked for only once the stages are done (`{}` starts a session).
    let mut req = register_req("frank", "correct horse");
    req.password = None;
    assert_eq!(svc.register(req.clone()).await.unwrap_err().status(), 401);
    req.auth_json = dummy_auth(None);
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::MissingParam, 400);

    register(&svc, "frank", "correct horse").await;
    let req = register_req("frank", "correct horse");
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::UserInUse, 400);
    // ... and after a completed stage too.
    let mut req = register_req("frank", "correct horse");
    req.auth_json = dummy_auth(None);
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::UserInUse, 400);
}

pub async fn register_with_inhibit_login(svc: Arc<dyn AuthService>, _db: Pool) {
    let mut req = register_req("gina", "correct horse");
    req.inhibit_login = true;
    req.auth_json = dummy_auth(None);
    let done = svc.register(req).await.unwrap();
    assert_eq!(done.user_id, format!("@gina:{SERVER}"));
    assert_eq!((done.access_token, done.device_id), (None, None));
    let logged_in = login(&svc, "gina", "correct horse").await;
    assert_eq!(logged_in.user_id, done.user_id);
}

pub async fn register_without_username_generates_numeric_ids(svc: Arc<dyn AuthService>, _db: Pool) {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut req = register_req("unused", "correct horse");
        req.username = None;
        req.auth_json = dummy_auth(None);
        let done = svc.register(req).await.unwrap();
        let localpart = done.user_id.strip_prefix('@').unwrap().strip_suffix(&format!(":{SERVER}")).unwrap();
        assert!(localpart.chars().all(|c| c.is_ascii_digit()), "{}", done.user_id);
        ids.push(done.user_id);
    }
    assert_ne!(ids[0], ids[1]);
    // A generated account is a normal account: it can log in.
    let localpart = ids[1].trim_start_matches('@').split(':').next().unwrap();
    assert_eq!(login(&svc, localpart, "correct horse").await.user_id, ids[1]);
}

pub async fn concurrent_registrations_of_one_name(svc: Arc<dyn AuthService>, _db: Pool) {
    let attempts = (0..4).map(|_| {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut req = register_req("henry", "correct horse");
            req.auth_json = dummy_auth(None);
            svc.register(req).await
        })
    });
    let mut won = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        match attempt.await.unwrap() {
            Ok(done) => {
                assert_eq!(done.user_id, format!("@henry:{SERVER}"));
                won += 1;
            }
            Err(err) => assert_err(&err, ErrorCode::UserInUse, 400),
        }
    }
    assert_eq!(won, 1);
}

pub async fn registration_disabled(svc: Arc<dyn AuthService>, _db: Pool) {
    let mut req = register_req("ivy", "correct horse");
    req.auth_json = dummy_auth(None);
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::Forbidden, 403);
    let check = CheckUsernameRequest { username: "ivy".into() };
    assert_err(&svc.check_username(check).await.unwrap_err(), ErrorCode::Forbidden, 403);
}

pub async fn guests_forbidden_by_default(svc: Arc<dyn AuthService>, _db: Pool) {
    let req = RegisterRequest { guest: true, ..Default::default() };
    let err = svc.register(req).await.unwrap_err();
    assert_err(&err, ErrorCode::GuestAccessForbidden, 403);
}

pub async fn guests_when_allowed(svc: Arc<dyn AuthService>, _db: Pool) {
    // Everything but the device display name is ignored, and no UIA is asked for.
    let req = RegisterRequest {
        guest: true,
        username: Some("jack".into()),
        password: Some("correct horse".into()),
        device_id: Some("MINE".into()),
        inhibit_login: true,
        initial_device_display_name: Some("guest phone".into()),
        auth_json: String::new(),
        ..Default::default()
    };
    let done = svc.register(req).await.unwrap();
    let localpart = done.user_id.trim_start_matches('@').split(':').next().unwrap().to_owned();
    assert!(localpart.chars().all(|c| c.is_ascii_digit()), "{}", done.user_id);
    let device = done.device_id.expect("guests always get a device");
    assert_ne!(device, "MINE");
    let token = done.access_token.expect("guests always get a token");
    let me = svc
        .authenticate(AuthenticateRequest { access_token: token, ip: None, user_agent: None, user_id: None })
        .await
        .unwrap();
    assert!(me.is_guest);
    assert_eq!((me.user_id, me.device_id), (done.user_id, device));
    // A guest has no password.
    let req = LoginRequest { user: localpart, password: "correct horse".into(), ..Default::default() };
    assert_err(&svc.login(req).await.unwrap_err(), ErrorCode::Forbidden, 403);
}
