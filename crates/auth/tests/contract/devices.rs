//! Devices behind user-interactive auth with the password, and key backup rules, through
//! the service contract.

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::json;
use trellis_core::ErrorCode;
use trellis_proto::auth::{
    AuthService, AuthenticateRequest, CreateBackupVersionRequest, DeleteDevicesRequest, GetDeviceRequest,
    ListDevicesRequest, PutRoomKeysRequest, RoomKeysRequest,
};

use crate::common::{SERVER, assert_err, login, register};

fn password_auth(user: &str, password: &str, session: Option<&str>) -> String {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
           "password": password, "session": session})
    .to_string()
}

pub async fn delete_devices_needs_the_password(svc: Arc<dyn AuthService>, _db: Pool) {
    let alice = register(&svc, "alice", "pw-alice-long").await;
    register(&svc, "bob", "pw-bob-long").await;
    let phone = login(&svc, "alice", "pw-alice-long").await;
    let user_id = alice.user_id.clone();
    let delete = |auth_json: String| DeleteDevicesRequest {
        user_id: user_id.clone(),
        device_ids: vec![phone.device_id.clone()],
        auth_json,
    };
    let err = svc.delete_devices(delete(String::new())).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::UiaRequired, 401));
    let body = err.client_body();
    assert_eq!(body["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = body["session"].as_str().unwrap().to_owned();

    let err = svc.delete_devices(delete(password_auth("alice", "wrong", Some(&session)))).await.unwrap_err();
    assert_eq!((err.status(), err.client_body()["errcode"].as_str()), (401, Some("M_FORBIDDEN")));
    assert_eq!(err.client_body()["session"], session.as_str());
    // Bob's own credentials are right, but they are not Alice's: a plain 403, as Synapse.
    let err = svc.delete_devices(delete(password_auth("bob", "pw-bob-long", Some(&session)))).await.unwrap_err();
    assert_err(&err, ErrorCode::Forbidden, 403);
    // ... and with Bob's wrong password, a failed stage.
    let err = svc.delete_devices(delete(password_auth("bob", "wrong", Some(&session)))).await.unwrap_err();
    assert_eq!((err.status(), err.client_body()["errcode"].as_str()), (401, Some("M_FORBIDDEN")));
    // Dummy completes registration only.
    let dummy = json!({"type": "m.login.dummy", "session": session}).to_string();
    let err = svc.delete_devices(delete(dummy)).await.unwrap_err();
    assert_eq!(err.status(), 401);

    // The session is Alice's: Bob's request with it is refused.
    let bob_req = DeleteDevicesRequest {
        user_id: format!("@bob:{SERVER}"),
        device_ids: vec![phone.device_id.clone()],
        auth_json: password_auth("bob", "pw-bob-long", Some(&session)),
    };
    assert_err(&svc.delete_devices(bob_req).await.unwrap_err(), ErrorCode::Forbidden, 403);
    // So is completing it for another of Alice's devices than the one it was started for.
    let other = DeleteDevicesRequest {
        user_id: user_id.clone(),
        device_ids: vec![alice.device_id.clone().unwrap()],
        auth_json: password_auth("alice", "pw-alice-long", Some(&session)),
    };
    assert_err(&svc.delete_devices(other).await.unwrap_err(), ErrorCode::Forbidden, 403);
    let list = svc.list_devices(ListDevicesRequest { user_id: alice.user_id.clone() }).await.unwrap();
    assert_eq!(list.devices.len(), 2, "nothing was deleted");

    svc.delete_devices(delete(password_auth(&format!("@alice:{SERVER}"), "pw-alice-long", Some(&session))))
        .await
        .unwrap();
    let gone = svc
        .authenticate(AuthenticateRequest {
            access_token: phone.access_token.clone(),
            ip: None,
            user_agent: None,
            user_id: None,
        })
        .await;
    assert_err(&gone.unwrap_err(), ErrorCode::UnknownToken, 401);
    let get = GetDeviceRequest { user_id: alice.user_id.clone(), device_id: phone.device_id.clone() };
    assert_err(&svc.get_device(get).await.unwrap_err(), ErrorCode::NotFound, 404);
    let list = svc.list_devices(ListDevicesRequest { user_id: alice.user_id.clone() }).await.unwrap();
    assert_eq!(list.devices.len(), 1);
    // Used up.
    let err = svc.delete_devices(delete(password_auth("alice", "pw-alice-long", Some(&session)))).await.unwrap_err();
    assert_err(&err, ErrorCode::Unknown, 400);
}

pub async fn backup_keeps_the_better_key(svc: Arc<dyn AuthService>, _db: Pool) {
    let alice = register(&svc, "alice", "pw-alice-long").await;
    let user_id = alice.user_id.clone();
    let create = CreateBackupVersionRequest {
        user_id: user_id.clone(),
        algorithm: "m.megolm_backup.v1.curve25519-aes-sha2".into(),
        auth_data_json: "{}".into(),
    };
    let version = svc.create_backup_version(create).await.unwrap().version;
    let put = |index: i64, verified: bool, version: &str| PutRoomKeysRequest {
        user_id: user_id.clone(),
        version: version.to_owned(),
        rooms_json: json!({"rooms": {"!r:x": {"sessions": {"s": {"first_message_index": index, "forwarded_count": 0,
            "is_verified": verified, "session_data": {"i": index}}}}}})
        .to_string(),
    };
    let first = svc.put_room_keys(put(4, false, &version)).await.unwrap();
    assert_eq!(first.count, 1);
    let worse = svc.put_room_keys(put(6, false, &version)).await.unwrap();
    assert_eq!(worse.etag, first.etag);
    let better = svc.put_room_keys(put(2, false, &version)).await.unwrap();
    assert_ne!(better.etag, first.etag);
    let get = RoomKeysRequest {
        user_id: user_id.clone(),
        version: version.clone(),
        room_id: Some("!r:x".into()),
        session_id: Some("s".into()),
    };
    let stored: serde_json::Value = serde_json::from_str(&svc.get_room_keys(get).await.unwrap().json).unwrap();
    assert_eq!(stored["first_message_index"], 2);
    let err = svc.put_room_keys(put(0, true, "999")).await.unwrap_err();
    assert_err(&err, ErrorCode::WrongRoomKeysVersion, 403);
    assert_eq!(err.client_body()["current_version"], version.as_str());
}
