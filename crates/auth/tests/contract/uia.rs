//! User-interactive auth of registration: challenge, dummy stage, session handling, replays.

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::json;
use trellis_core::ErrorCode;
use trellis_proto::auth::{AuthService, AuthenticateRequest, DeleteDevicesRequest};

use crate::common::{SERVER, assert_err, dummy_auth, login, register_req};

pub async fn uia_register_flow(svc: Arc<dyn AuthService>, _db: Pool) {
    let mut req = register_req("alice", "correct horse");
    req.initial_device_display_name = Some("Alice's phone".into());
    let err = svc.register(req.clone()).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::UiaRequired, 401));
    let body = err.client_body();
    assert_eq!(body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    assert_eq!(body["params"], json!({}));
    assert!(body.get("errcode").is_none(), "a first challenge has no errcode: {body}");
    let session = body["session"].as_str().expect("session").to_owned();
    assert!(session.len() >= 16, "session IDs must be hard to guess: {session:?}");

    req.auth_json = dummy_auth(Some(&session));
    let done = svc.register(req).await.unwrap();
    assert_eq!(done.user_id, format!("@alice:{SERVER}"));
    let token = done.access_token.expect("access token");
    assert!(token.starts_with("trl_") && token.len() >= 36, "{token:?}");
    let device = done.device_id.expect("device ID");

    let me = svc
        .authenticate(AuthenticateRequest { access_token: token, ip: None, user_agent: None, user_id: None })
        .await
        .unwrap();
    assert_eq!(
        (me.user_id.as_str(), me.device_id.as_str(), me.is_guest),
        (done.user_id.as_str(), device.as_str(), false)
    );

    let logged_in = login(&svc, "alice", "correct horse").await;
    assert_eq!(logged_in.user_id, done.user_id);
    assert_ne!(logged_in.device_id, device, "a login without device_id gets a new device");
}

pub async fn completed_registration_session_replays(svc: Arc<dyn AuthService>, _db: Pool) {
    let err = svc.register(register_req("alice", "correct horse")).await.unwrap_err();
    let session = err.client_body()["session"].as_str().unwrap().to_owned();
    let mut req = register_req("alice", "correct horse");
    req.auth_json = dummy_auth(Some(&session));
    let first = svc.register(req.clone()).await.unwrap();
    assert!(first.created);

    // The same request again: the same account, logged in again (idempotent registration),
    // and not counted as a new account.
    let again = svc.register(req).await.unwrap();
    assert_eq!((again.user_id.as_str(), again.created), (first.user_id.as_str(), false));
    assert_ne!(again.access_token, first.access_token);
    let token = again.access_token.clone().expect("a token");
    let me = svc
        .authenticate(AuthenticateRequest { access_token: token, ip: None, user_agent: None, user_id: None })
        .await
        .unwrap();
    assert_eq!(me.user_id, first.user_id);
    // The session's account is its outcome, whatever a replay asks for.
    let mut other = register_req("bob", "correct horse");
    other.auth_json = dummy_auth(Some(&session));
    assert_eq!(svc.register(other).await.unwrap().user_id, first.user_id);
    // Another user's session is never a registration session's.
    let del = DeleteDevicesRequest {
        user_id: first.user_id.clone(),
        device_ids: vec![],
        auth_json: json!({"type": "m.login.password", "user": "alice", "password": "correct horse",
                          "session": session})
        .to_string(),
    };
    assert_err(&svc.delete_devices(del).await.unwrap_err(), ErrorCode::Forbidden, 403);
}

pub async fn dummy_without_session_is_accepted(svc: Arc<dyn AuthService>, _db: Pool) {
    let mut req = register_req("carol", "correct horse");
    req.auth_json = dummy_auth(None);
    let done = svc.register(req).await.unwrap();
    assert_eq!(done.user_id, format!("@carol:{SERVER}"));
    assert!(done.access_token.is_some());
}

pub async fn uia_failures(svc: Arc<dyn AuthService>, _db: Pool) {
    let mut req = register_req("dave", "correct horse");

    req.auth_json = json!({"type": "m.login.dummy", "session": "no-such-session"}).to_string();
    let err = svc.register(req.clone()).await.unwrap_err();
    assert_err(&err, ErrorCode::Unknown, 400);

    req.auth_json = "{not json".into();
    assert_err(&svc.register(req.clone()).await.unwrap_err(), ErrorCode::BadJson, 400);
    req.auth_json = json!({"type": 7}).to_string();
    assert_err(&svc.register(req.clone()).await.unwrap_err(), ErrorCode::BadJson, 400);

    req.auth_json = String::new();
    let session = svc.register(req.clone()).await.unwrap_err().client_body()["session"].as_str().unwrap().to_owned();
    req.auth_json = json!({"type": "m.login.recaptcha", "session": session}).to_string();
    let err = svc.register(req.clone()).await.unwrap_err();
    assert_err(&err, ErrorCode::Unrecognized, 401);
    let body = err.client_body();
    assert_eq!(body["session"], session.as_str(), "the client may retry in the same session");
    assert_eq!(body["flows"], json!([{"stages": ["m.login.dummy"]}]));

    // Only the session: nothing completed yet, so the challenge again, without errcode.
    req.auth_json = json!({"session": session}).to_string();
    let err = svc.register(req.clone()).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::UiaRequired, 401));

    req.auth_json = dummy_auth(Some(&session));
    assert_eq!(svc.register(req).await.unwrap().user_id, format!("@dave:{SERVER}"));
}
