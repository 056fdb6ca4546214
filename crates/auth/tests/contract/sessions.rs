//! Login, token resolution and logout.

use std::sync::Arc;

use deadpool_postgres::Pool;
use trellis_core::ErrorCode;
use trellis_proto::auth::{AuthService, AuthenticateRequest, LoginRequest, LogoutRequest};

use crate::common::{SERVER, assert_err, login, register};

pub async fn login_forms(svc: Arc<dyn AuthService>, _db: Pool) {
    let user_id = register(&svc, "kate", "correct horse").await.user_id;
    for user in ["kate", "KATE", &format!("@kate:{SERVER}"), &format!("@Kate:{SERVER}")] {
        let done = login(&svc, user, "correct horse").await;
        assert_eq!(done.user_id, user_id, "login as {user:?}");
        let me = svc
            .authenticate(AuthenticateRequest {
                access_token: done.access_token,
                ip: None,
                user_agent: None,
                user_id: None,
            })
            .await
            .unwrap();
        assert_eq!((me.user_id, me.device_id), (user_id.clone(), done.device_id));
    }
    let req =
        LoginRequest { user: "@kate:elsewhere.example".into(), password: "correct horse".into(), ..Default::default() };
    assert_err(&svc.login(req).await.unwrap_err(), ErrorCode::Forbidden, 403);
}

pub async fn wrong_password_and_unknown_user(svc: Arc<dyn AuthService>, _db: Pool) {
    register(&svc, "liam", "correct horse").await;
    let attempt = |user: &str, password: &str| LoginRequest {
        user: user.into(),
        password: password.into(),
        ..Default::default()
    };
    let wrong = svc.login(attempt("liam", "wrong horse")).await.unwrap_err();
    assert_err(&wrong, ErrorCode::Forbidden, 403);
    let unknown = svc.login(attempt("nobody", "correct horse")).await.unwrap_err();
    assert_err(&unknown, ErrorCode::Forbidden, 403);
    assert_eq!(wrong.client_body(), unknown.client_body(), "must not reveal which users exist");
}

pub async fn deactivated_user(svc: Arc<dyn AuthService>, db: Pool) {
    let user_id = register(&svc, "mia", "correct horse").await.user_id;
    // Deactivation has no RPC yet; flag the row directly.
    let client = db.get().await.unwrap();
    let n = client.execute("UPDATE users SET deactivated = TRUE WHERE user_id = $1", &[&user_id]).await.unwrap();
    assert_eq!(n, 1);
    let req = LoginRequest { user: "mia".into(), password: "correct horse".into(), ..Default::default() };
    assert_err(&svc.login(req).await.unwrap_err(), ErrorCode::UserDeactivated, 403);
    // A wrong password still gets the generic answer.
    let req = LoginRequest { user: "mia".into(), password: "wrong horse".into(), ..Default::default() };
    assert_err(&svc.login(req).await.unwrap_err(), ErrorCode::Forbidden, 403);
}

pub async fn authenticate_and_logout(svc: Arc<dyn AuthService>, _db: Pool) {
    register(&svc, "noah", "correct horse").await;
    let a = login(&svc, "noah", "correct horse").await;
    let b = login(&svc, "noah", "correct horse").await;
    let auth =
        |token: &str| AuthenticateRequest { access_token: token.into(), ip: None, user_agent: None, user_id: None };

    // Twice: the second answer may come from the cache.
    for _ in 0..2 {
        let me = svc.authenticate(auth(&a.access_token)).await.unwrap();
        assert_eq!((me.user_id.as_str(), me.device_id.as_str()), (a.user_id.as_str(), a.device_id.as_str()));
    }
    let err = svc.authenticate(auth("trl_not_a_real_token_at_all_000000")).await.unwrap_err();
    assert_err(&err, ErrorCode::UnknownToken, 401);

    svc.logout(LogoutRequest { access_token: a.access_token.clone(), all_devices: false }).await.unwrap();
    let err = svc.authenticate(auth(&a.access_token)).await.unwrap_err();
    assert_err(&err, ErrorCode::UnknownToken, 401);
    let again = LogoutRequest { access_token: a.access_token.clone(), all_devices: false };
    assert_err(&svc.logout(again).await.unwrap_err(), ErrorCode::UnknownToken, 401);

    // The other device is untouched.
    let me = svc.authenticate(auth(&b.access_token)).await.unwrap();
    assert_eq!(me.device_id, b.device_id);
    // Logging out deleted the device: logging in with its ID creates it afresh.
    let req = LoginRequest {
        user: "noah".into(),
        password: "correct horse".into(),
        device_id: Some(a.device_id.clone()),
        ..Default::default()
    };
    let c = svc.login(req).await.unwrap();
    assert_eq!(c.device_id, a.device_id);
    assert_eq!(svc.authenticate(auth(&c.access_token)).await.unwrap().device_id, a.device_id);
}

pub async fn logout_all_devices(svc: Arc<dyn AuthService>, _db: Pool) {
    register(&svc, "olga", "correct horse").await;
    let other = register(&svc, "oscar", "correct horse").await;
    let sessions = [
        login(&svc, "olga", "correct horse").await,
        login(&svc, "olga", "correct horse").await,
        login(&svc, "olga", "correct horse").await,
    ];
    let auth =
        |token: &str| AuthenticateRequest { access_token: token.into(), ip: None, user_agent: None, user_id: None };
    for s in &sessions {
        svc.authenticate(auth(&s.access_token)).await.unwrap();
    }
    let req = LogoutRequest { access_token: sessions[1].access_token.clone(), all_devices: true };
    svc.logout(req).await.unwrap();
    for s in &sessions {
        let err = svc.authenticate(auth(&s.access_token)).await.unwrap_err();
        assert_err(&err, ErrorCode::UnknownToken, 401);
    }
    let oscar = other.access_token.unwrap();
    assert_eq!(svc.authenticate(auth(&oscar)).await.unwrap().user_id, other.user_id);
}

pub async fn login_with_existing_device_replaces_its_token(svc: Arc<dyn AuthService>, _db: Pool) {
    register(&svc, "paul", "correct horse").await;
    let req = LoginRequest {
        user: "paul".into(),
        password: "correct horse".into(),
        device_id: Some("PHONE".into()),
        initial_device_display_name: Some("Paul's phone".into()),
        ..Default::default()
    };
    let first = svc.login(req.clone()).await.unwrap();
    assert_eq!(first.device_id, "PHONE");
    let auth =
        |token: &str| AuthenticateRequest { access_token: token.into(), ip: None, user_agent: None, user_id: None };
    svc.authenticate(auth(&first.access_token)).await.unwrap(); // now cached

    let second = svc.login(req).await.unwrap();
    assert_eq!(second.device_id, "PHONE");
    assert_ne!(second.access_token, first.access_token);
    let err = svc.authenticate(auth(&first.access_token)).await.unwrap_err();
    assert_err(&err, ErrorCode::UnknownToken, 401);
    let me = svc.authenticate(auth(&second.access_token)).await.unwrap();
    assert_eq!((me.user_id, me.device_id), (second.user_id, "PHONE".to_owned()));
}
