//! Profiles: reading, changing, clearing, and who may.

use std::sync::Arc;

use deadpool_postgres::Pool;
use trellis_core::ErrorCode;
use trellis_proto::auth::{
    AuthService, DeleteProfileFieldRequest, GetProfileRequest, Profile, ProfileField, SetProfileFieldRequest,
    SetProfileRequest,
};

use crate::common::{SERVER, assert_err, register};

pub async fn profile_get_set_clear(svc: Arc<dyn AuthService>, _db: Pool) {
    let user_id = register(&svc, "quinn", "correct horse").await.user_id;
    let get = || GetProfileRequest { user_id: user_id.clone() };
    let set = |field: ProfileField, value: Option<&str>| SetProfileRequest {
        user_id: user_id.clone(),
        field: field.into(),
        value: value.map(Into::into),
        requester: user_id.clone(),
    };

    let p = svc.get_profile(get()).await.unwrap();
    assert_eq!(
        (p.user_id.as_str(), p.displayname.as_deref(), p.avatar_url.as_deref()),
        (user_id.as_str(), Some("quinn"), None)
    );

    let p = svc.set_profile(set(ProfileField::Displayname, Some("Quinn Q"))).await.unwrap();
    assert_eq!(p.displayname.as_deref(), Some("Quinn Q"));
    let p = svc.set_profile(set(ProfileField::AvatarUrl, Some("mxc://example.org/abc"))).await.unwrap();
    assert_eq!((p.displayname.as_deref(), p.avatar_url.as_deref()), (Some("Quinn Q"), Some("mxc://example.org/abc")));
    let p = svc.get_profile(get()).await.unwrap();
    assert_eq!((p.displayname.as_deref(), p.avatar_url.as_deref()), (Some("Quinn Q"), Some("mxc://example.org/abc")));

    let p = svc.set_profile(set(ProfileField::Displayname, None)).await.unwrap();
    assert_eq!((p.displayname, p.avatar_url.as_deref()), (None, Some("mxc://example.org/abc")));
    let p = svc.set_profile(set(ProfileField::AvatarUrl, Some(""))).await.unwrap();
    assert_eq!(p.avatar_url, None);
    let p = svc.get_profile(get()).await.unwrap();
    assert_eq!((p.displayname, p.avatar_url), (None, None));
}

pub async fn profile_errors(svc: Arc<dyn AuthService>, _db: Pool) {
    let rose = register(&svc, "rose", "correct horse").await.user_id;
    let sam = register(&svc, "sam", "correct horse").await.user_id;
    let req = SetProfileRequest {
        user_id: rose.clone(),
        field: ProfileField::Displayname.into(),
        value: Some("Not Rose".into()),
        requester: sam.clone(),
    };
    assert_err(&svc.set_profile(req).await.unwrap_err(), ErrorCode::Forbidden, 403);
    let p = svc.get_profile(GetProfileRequest { user_id: rose.clone() }).await.unwrap();
    assert_eq!(p.displayname.as_deref(), Some("rose"), "the refused change must not apply");

    let too_long = SetProfileRequest {
        user_id: sam.clone(),
        field: ProfileField::Displayname.into(),
        value: Some("x".repeat(257)),
        requester: sam.clone(),
    };
    assert_err(&svc.set_profile(too_long).await.unwrap_err(), ErrorCode::InvalidParam, 400);
    let no_field = SetProfileRequest {
        user_id: sam.clone(),
        field: ProfileField::Unspecified.into(),
        value: Some("x".into()),
        requester: sam.clone(),
    };
    assert_err(&svc.set_profile(no_field).await.unwrap_err(), ErrorCode::InvalidParam, 400);

    let unknown = GetProfileRequest { user_id: format!("@nobody:{SERVER}") };
    assert_err(&svc.get_profile(unknown).await.unwrap_err(), ErrorCode::NotFound, 404);
}

pub async fn custom_profile_fields(svc: Arc<dyn AuthService>, _db: Pool) {
    let user_id = register(&svc, "rowan", "correct horse").await.user_id;
    let set = |key: &str, value: &str| SetProfileFieldRequest {
        requester: user_id.clone(),
        user_id: user_id.clone(),
        key: key.into(),
        value_json: value.into(),
    };
    let p = svc.set_profile_field(set("m.tz", r#""Europe/Oslo""#)).await.unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&p.fields_json).unwrap(),
        serde_json::json!({"m.tz": "Europe/Oslo"})
    );
    svc.set_profile_field(set("com.example.x", "[1, 2]")).await.unwrap();
    let p = svc.get_profile(GetProfileRequest { user_id: user_id.clone() }).await.unwrap();
    let fields: serde_json::Value = serde_json::from_str(&p.fields_json).unwrap();
    assert_eq!(fields, serde_json::json!({"m.tz": "Europe/Oslo", "com.example.x": [1, 2]}));
    assert_eq!(p.displayname.as_deref(), Some("rowan"), "the name is untouched");

    let p = svc
        .delete_profile_field(DeleteProfileFieldRequest {
            requester: user_id.clone(),
            user_id: user_id.clone(),
            key: "m.tz".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&p.fields_json).unwrap(),
        serde_json::json!({"com.example.x": [1, 2]})
    );

    let code = |r: trellis_core::Result<Profile>| r.unwrap_err().code();
    assert_eq!(code(svc.set_profile_field(set("m.tz", "5")).await), ErrorCode::BadJson);
    assert_eq!(code(svc.set_profile_field(set("displayname", r#""x""#)).await), ErrorCode::InvalidParam);
    let big = format!("\"{}\"", "x".repeat(70 * 1024));
    assert_eq!(code(svc.set_profile_field(set("com.example.big", &big)).await), ErrorCode::ProfileTooLarge);
    let mut other = set("m.tz", r#""UTC""#);
    other.requester = "@mallory:localhost".into();
    assert_eq!(code(svc.set_profile_field(other).await), ErrorCode::Forbidden);
}
