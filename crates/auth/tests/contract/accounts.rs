//! A device's last-seen record from its first request, renames as device-list changes,
//! OpenID tokens and `/admin/whois`, through the service contract.

use std::sync::Arc;

use deadpool_postgres::Pool;
use trellis_core::ErrorCode;
use trellis_proto::auth::{
    AuthService, ListDevicesRequest, LoginRequest, OpenidTokenRequest, OpenidUserinfoRequest, UpdateDeviceRequest,
    WhoisRequest,
};

use crate::common::{SERVER, assert_err, register};

async fn changes(db: &Pool, user_id: &str) -> i64 {
    let client = db.get().await.unwrap();
    client.query_one("SELECT count(*) FROM device_list_changes WHERE user_id = $1", &[&user_id]).await.unwrap().get(0)
}

pub async fn new_devices_are_seen_at_login(svc: Arc<dyn AuthService>, _db: Pool) {
    let mona = register(&svc, "mona", "correct horse").await;
    let login = LoginRequest {
        user: "mona".into(),
        password: "correct horse".into(),
        device_id: Some("LAPTOP".into()),
        ip: Some("198.51.100.4".into()),
        user_agent: Some("Element/1.11".into()),
        ..Default::default()
    };
    svc.login(login).await.unwrap();
    let devices = svc.list_devices(ListDevicesRequest { user_id: mona.user_id.clone() }).await.unwrap().devices;
    assert_eq!(devices.len(), 2);
    for d in &devices {
        assert!(d.last_seen_ts.is_some(), "{d:?}");
    }
    let laptop = devices.iter().find(|d| d.device_id == "LAPTOP").unwrap();
    assert_eq!(laptop.last_seen_ip.as_deref(), Some("198.51.100.4"));

    let whois = WhoisRequest { requester: mona.user_id.clone(), user_id: mona.user_id.clone() };
    let whois = svc.whois(whois).await.unwrap();
    assert_eq!(whois.devices.len(), 2);
    let laptop = whois.devices.iter().find(|d| d.device_id == "LAPTOP").unwrap().last.clone().unwrap();
    assert_eq!((laptop.ip.as_deref(), laptop.user_agent.as_deref()), (Some("198.51.100.4"), Some("Element/1.11")));
}

pub async fn whois_is_for_yourself_or_an_admin(svc: Arc<dyn AuthService>, db: Pool) {
    let nina = register(&svc, "nina", "correct horse").await;
    let otto = register(&svc, "otto", "correct horse").await;
    let ask = |requester: &str, user: &str| WhoisRequest { requester: requester.into(), user_id: user.into() };
    let err = svc.whois(ask(&otto.user_id, &nina.user_id)).await.unwrap_err();
    assert_err(&err, ErrorCode::Forbidden, 403);
    db.get()
        .await
        .unwrap()
        .execute("UPDATE users SET admin = TRUE WHERE user_id = $1", &[&otto.user_id])
        .await
        .unwrap();
    let seen = svc.whois(ask(&otto.user_id, &nina.user_id)).await.unwrap();
    assert_eq!((seen.user_id.as_str(), seen.devices.len()), (nina.user_id.as_str(), 1));
    let err = svc.whois(ask(&otto.user_id, "@nina:elsewhere.example")).await.unwrap_err();
    assert_err(&err, ErrorCode::InvalidParam, 400);
    let err = svc.whois(ask(&otto.user_id, "not a user")).await.unwrap_err();
    assert_err(&err, ErrorCode::InvalidParam, 400);
}

pub async fn renaming_a_device_changes_the_device_list(svc: Arc<dyn AuthService>, db: Pool) {
    let pia = register(&svc, "pia", "correct horse").await;
    let device_id = pia.device_id.clone().unwrap();
    let before = changes(&db, &pia.user_id).await;
    let rename = |name: Option<&str>, device: &str| UpdateDeviceRequest {
        user_id: pia.user_id.clone(),
        device_id: device.into(),
        display_name: name.map(str::to_owned),
    };
    svc.update_device(rename(Some("phone"), &device_id)).await.unwrap();
    assert_eq!(changes(&db, &pia.user_id).await, before + 1);
    // The same name again, or none, changes nothing.
    svc.update_device(rename(Some("phone"), &device_id)).await.unwrap();
    svc.update_device(rename(None, &device_id)).await.unwrap();
    assert_eq!(changes(&db, &pia.user_id).await, before + 1);
    for name in [Some("x"), None] {
        assert_err(&svc.update_device(rename(name, "NOPE")).await.unwrap_err(), ErrorCode::NotFound, 404);
    }
}

pub async fn openid_tokens(svc: Arc<dyn AuthService>, db: Pool) {
    let quinn = register(&svc, "quinn", "correct horse").await;
    let ask = |user: &str| OpenidTokenRequest { requester: quinn.user_id.clone(), user_id: user.into() };
    let err = svc.request_openid_token(ask(&format!("@other:{SERVER}"))).await.unwrap_err();
    assert_err(&err, ErrorCode::Forbidden, 403);
    let token = svc.request_openid_token(ask(&quinn.user_id)).await.unwrap();
    assert_eq!(token.expires_in_secs, 3600);
    assert_ne!(Some(&token.access_token), quinn.access_token.as_ref());
    let info = svc.openid_userinfo(OpenidUserinfoRequest { access_token: token.access_token.clone() }).await;
    assert_eq!(info.unwrap().user_id, quinn.user_id);

    // An access token is not an OpenID token, and neither is an expired one.
    let wrong = OpenidUserinfoRequest { access_token: quinn.access_token.clone().unwrap() };
    assert_err(&svc.openid_userinfo(wrong).await.unwrap_err(), ErrorCode::UnknownToken, 401);
    db.get().await.unwrap().execute("UPDATE openid_tokens SET expires_ts = 0", &[]).await.unwrap();
    let expired = OpenidUserinfoRequest { access_token: token.access_token };
    assert_err(&svc.openid_userinfo(expired).await.unwrap_err(), ErrorCode::UnknownToken, 401);
}
