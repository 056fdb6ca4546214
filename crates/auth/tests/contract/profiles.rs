//! Profiles: reading, changing, clearing, and who may.

use std::sync::Arc;

use deadpool_postgres::Pool;
use trellis_core::ErrorCode;
use trellis_proto::auth::{AuthService, GetProfileRequest, ProfileField, SetProfileRequest};

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
