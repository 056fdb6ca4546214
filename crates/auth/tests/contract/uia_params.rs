//! User-interactive auth as Synapse does it: `{}` starts registration, a session remembers
//! the first request's parameters and password, and a failed stage lists what is completed.

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::json;
use trellis_core::ErrorCode;
use trellis_proto::auth::{
    AuthService, DeactivateRequest, GetDeviceRequest, ListDevicesRequest, LoginRequest, RegisterRequest,
};

use crate::common::{SERVER, assert_err, dummy_auth, register};

/// The session of a registration's first answer (which must be the challenge).
async fn challenge(svc: &Arc<dyn AuthService>, req: RegisterRequest) -> String {
    let err = svc.register(req).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::UiaRequired, 401), "{err}");
    err.client_body()["session"].as_str().expect("session").to_owned()
}

fn only_auth(session: &str) -> RegisterRequest {
    RegisterRequest { auth_json: dummy_auth(Some(session)), ..Default::default() }
}

pub async fn empty_register_body_is_a_challenge(svc: Arc<dyn AuthService>, _db: Pool) {
    let err = svc.register(RegisterRequest::default()).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::UiaRequired, 401));
    let body = err.client_body();
    assert_eq!(body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    assert!(body["session"].is_string());
    assert!(body.get("completed").is_none(), "nothing was attempted yet: {body}");
}

pub async fn registration_remembers_parameters(svc: Arc<dyn AuthService>, _db: Pool) {
    // A non-ASCII password, and capitals in the username (registered in lower case).
    let first = RegisterRequest {
        username: Some("Ivy".into()),
        password: Some("übers3kr1t".into()),
        device_id: Some("xyzzy".into()),
        initial_device_display_name: Some("display_name".into()),
        ..Default::default()
    };
    let session = challenge(&svc, first).await;
    let mut last = only_auth(&session);
    last.ip = Some("192.0.2.7".into());
    let done = svc.register(last).await.unwrap();
    assert_eq!(done.user_id, format!("@ivy:{SERVER}"));
    assert_eq!(done.device_id.as_deref(), Some("xyzzy"));
    assert!(done.access_token.is_some() && done.created);
    let device = svc.get_device(GetDeviceRequest { user_id: done.user_id.clone(), device_id: "xyzzy".into() });
    let device = device.await.unwrap();
    assert_eq!(device.display_name.as_deref(), Some("display_name"));
    // Seen from the request that created it, never missing.
    assert_eq!(device.last_seen_ip.as_deref(), Some("192.0.2.7"));
    assert!(device.last_seen_ts.is_some_and(|ts| ts > 0));

    let login = LoginRequest { user: "ivy".into(), password: "übers3kr1t".into(), ..Default::default() };
    assert_eq!(svc.login(login).await.unwrap().user_id, done.user_id);

    // A display name sent without a password does not wipe out what the session remembers.
    let session = challenge(&svc, crate::common::register_req("jules", "correct horse")).await;
    let mut stray = only_auth(&session);
    stray.initial_device_display_name = Some("stray".into());
    assert_eq!(svc.register(stray).await.unwrap().user_id, format!("@jules:{SERVER}"));
}

pub async fn remembered_inhibit_login(svc: Arc<dyn AuthService>, _db: Pool) {
    let first = RegisterRequest {
        username: Some("kim".into()),
        password: Some("correct horse".into()),
        inhibit_login: true,
        ..Default::default()
    };
    let session = challenge(&svc, first).await;
    let done = svc.register(only_auth(&session)).await.unwrap();
    assert_eq!(done.user_id, format!("@kim:{SERVER}"));
    assert_eq!((done.access_token, done.device_id), (None, None));
    let devices = svc.list_devices(ListDevicesRequest { user_id: done.user_id.clone() }).await.unwrap();
    assert!(devices.devices.is_empty());
    // A replay is inhibited too.
    let again = svc.register(only_auth(&session)).await.unwrap();
    assert_eq!((again.user_id, again.access_token, again.created), (done.user_id, None, false));
}

pub async fn replay_without_username(svc: Arc<dyn AuthService>, _db: Pool) {
    let first = RegisterRequest { password: Some("correct horse".into()), ..Default::default() };
    let session = challenge(&svc, first.clone()).await;
    let complete = RegisterRequest { auth_json: dummy_auth(Some(&session)), ..first };
    let done = svc.register(complete.clone()).await.unwrap();
    assert!(done.user_id.trim_start_matches('@').starts_with(|c: char| c.is_ascii_digit()), "{}", done.user_id);
    let again = svc.register(complete).await.unwrap();
    assert_eq!((again.user_id.as_str(), again.created), (done.user_id.as_str(), false));
    assert!(again.access_token.is_some());
    // A session without a password ever given cannot complete.
    let session = challenge(&svc, RegisterRequest::default()).await;
    assert_err(&svc.register(only_auth(&session)).await.unwrap_err(), ErrorCode::MissingParam, 400);
}

pub async fn failed_stage_lists_completed(svc: Arc<dyn AuthService>, _db: Pool) {
    let lena = register(&svc, "lena", "correct horse").await;
    let wrong = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": lena.user_id},
                       "password": "wrong password"});
    let req = DeactivateRequest {
        user_id: lena.user_id.clone(),
        auth_json: wrong.to_string(),
        erase: false,
        appservice_id: None,
    };
    let err = svc.deactivate(req).await.unwrap_err();
    assert_eq!(err.status(), 401);
    let body = err.client_body();
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    assert_eq!(body["completed"], json!([]));
    for key in ["error", "flows", "params", "session"] {
        assert!(body.get(key).is_some(), "{key} missing: {body}");
    }
}
