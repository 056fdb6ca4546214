//! Profiles: display name and avatar. A change is stored by the auth service and then
//! carried into the user's member event in every joined room by the rooms service.

use axum::{
    Json, Router,
    extract::{RawPathParams, State},
    routing::get,
};
use ruma::api::{
    Metadata,
    client::profile::{get_avatar_url, get_display_name, get_profile},
    path_builder::PathBuilder,
};
use serde_json::{Value, json};
use trellis_core::Error;
use trellis_proto::{
    auth::{GetProfileRequest, Profile, ProfileField, SetProfileRequest},
    rooms::ProfileChangedRequest,
};

use super::param;
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::{Authed, JsonObject},
};

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for path in get_profile::v3::Request::PATH_BUILDER.all_paths() {
        router = router.route(path, get(get_profile_route));
    }
    for path in get_display_name::v3::Request::PATH_BUILDER.all_paths() {
        router = router.route(path, get(get_displayname_route).put(set_displayname_route));
    }
    for path in get_avatar_url::v3::Request::PATH_BUILDER.all_paths() {
        router = router.route(path, get(get_avatar_route).put(set_avatar_route));
    }
    router
}

async fn profile(s: &AppState, params: &RawPathParams) -> ApiResult<Profile> {
    Ok(s.services.auth.get_profile(GetProfileRequest { user_id: param(params, "user_id")? }).await?)
}

/// # `GET /_matrix/client/v3/profile/{userId}`
async fn get_profile_route(State(s): State<AppState>, params: RawPathParams) -> ApiResult<Json<Value>> {
    let p = profile(&s, &params).await?;
    let mut out = json!({});
    if let Some(d) = p.displayname {
        out["displayname"] = json!(d);
    }
    if let Some(a) = p.avatar_url {
        out["avatar_url"] = json!(a);
    }
    Ok(Json(out))
}

/// # `GET /_matrix/client/v3/profile/{userId}/displayname`
async fn get_displayname_route(State(s): State<AppState>, params: RawPathParams) -> ApiResult<Json<Value>> {
    let p = profile(&s, &params).await?;
    Ok(Json(p.displayname.map_or_else(|| json!({}), |d| json!({ "displayname": d }))))
}

/// # `GET /_matrix/client/v3/profile/{userId}/avatar_url`
async fn get_avatar_route(State(s): State<AppState>, params: RawPathParams) -> ApiResult<Json<Value>> {
    let p = profile(&s, &params).await?;
    Ok(Json(p.avatar_url.map_or_else(|| json!({}), |a| json!({ "avatar_url": a }))))
}

/// # `PUT /_matrix/client/v3/profile/{userId}/displayname`
async fn set_displayname_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    set_field(&s, auth, &params, ProfileField::Displayname, body.get("displayname")).await
}

/// # `PUT /_matrix/client/v3/profile/{userId}/avatar_url`
async fn set_avatar_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    set_field(&s, auth, &params, ProfileField::AvatarUrl, body.get("avatar_url")).await
}

async fn set_field(
    s: &AppState,
    auth: Authed,
    params: &RawPathParams,
    field: ProfileField,
    value: Option<&Value>,
) -> ApiResult<Json<Value>> {
    let value = match value {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(_) => return Err(ApiError(Error::bad_json("profile fields are strings"))),
    };
    let user_id = param(params, "user_id")?;
    let p = s
        .services
        .auth
        .set_profile(SetProfileRequest {
            user_id: user_id.clone(),
            field: field as i32,
            value,
            requester: auth.user_id,
        })
        .await?;
    s.services
        .rooms
        .profile_changed(ProfileChangedRequest { user_id, displayname: p.displayname, avatar_url: p.avatar_url })
        .await?;
    Ok(Json(json!({})))
}
