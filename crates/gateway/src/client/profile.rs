//! Profiles: display name, avatar and custom fields (spec 1.16: `m.tz` and namespaced keys).
//! A name or avatar change is stored by the auth service and then carried into the user's
//! member event in every joined room by the rooms service.

use axum::{
    Json, Router,
    extract::{RawPathParams, State},
    routing::{get, put},
};
use ruma::{
    api::{
        Metadata,
        client::profile::{
            delete_profile_field, get_avatar_url, get_display_name, get_profile, get_profile_field, set_profile_field,
        },
        path_builder::PathBuilder,
    },
    profile::{ProfileFieldValue, UserProfile},
};
use serde_json::{Value, json};
use trellis_core::Error;
use trellis_proto::{
    auth::{
        DeleteProfileFieldRequest, GetProfileRequest, Profile, ProfileField, SetProfileFieldRequest, SetProfileRequest,
    },
    rooms::ProfileChangedRequest,
};

use super::param;
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::{Authed, JsonObject, Ruma},
    response::RumaResult,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    // The named routes of `displayname` and `avatar_url` match before the `{field}` ones.
    let mut router = Router::new()
        .ruma::<get_profile::v3::Request, _, _>(get_profile_route)
        .ruma::<get_profile_field::v3::Request, _, _>(get_field_route)
        .ruma::<delete_profile_field::v3::Request, _, _>(delete_field_route);
    // `PUT` is parsed here rather than by ruma, so a body without the key is
    // `M_MISSING_PARAM` as the spec says (ruma's parser calls it bad JSON).
    for path in set_profile_field::v3::Request::PATH_BUILDER.all_paths() {
        router = router.route(path, put(set_field_route));
    }
    for path in get_display_name::v3::Request::PATH_BUILDER.all_paths() {
        router =
            router.route(path, get(get_displayname_route).put(set_displayname_route).delete(delete_displayname_route));
    }
    for path in get_avatar_url::v3::Request::PATH_BUILDER.all_paths() {
        router = router.route(path, get(get_avatar_route).put(set_avatar_route).delete(delete_avatar_route));
    }
    router
}

async fn profile(s: &AppState, params: &RawPathParams) -> ApiResult<Profile> {
    fetch(s, param(params, "user_id")?).await
}

async fn fetch(s: &AppState, user_id: String) -> ApiResult<Profile> {
    Ok(s.services.auth.get_profile(GetProfileRequest { user_id }).await?)
}

/// Every field of a profile: the name, the avatar and the custom fields.
fn all_fields(p: Profile) -> UserProfile {
    let mut all = UserProfile::new();
    let custom: serde_json::Map<String, Value> = serde_json::from_str(&p.fields_json).unwrap_or_default();
    for (key, value) in custom {
        all.set(key, value);
    }
    if let Some(d) = p.displayname {
        all.set("displayname".into(), json!(d));
    }
    if let Some(a) = p.avatar_url {
        all.set("avatar_url".into(), json!(a));
    }
    all
}

/// # `GET /_matrix/client/v3/profile/{userId}`
async fn get_profile_route(
    State(s): State<AppState>,
    Ruma(req): Ruma<get_profile::v3::Request>,
) -> RumaResult<get_profile::v3::Response> {
    let p = fetch(&s, req.user_id.to_string()).await?;
    let mut out = get_profile::v3::Response::new();
    out.data = all_fields(p);
    Ok(out.into())
}

/// # `GET /_matrix/client/v3/profile/{userId}/{keyName}`
async fn get_field_route(
    State(s): State<AppState>,
    Ruma(req): Ruma<get_profile_field::v3::Request>,
) -> RumaResult<get_profile_field::v3::Response> {
    let all = all_fields(fetch(&s, req.user_id.to_string()).await?);
    let key = req.field.as_str();
    let value = all.get(key).cloned().ok_or_else(|| Error::not_found("This user has no such profile field"))?;
    let value =
        ProfileFieldValue::new(key, value).map_err(|e| Error::internal(format!("stored profile field: {e}")))?;
    Ok(get_profile_field::v3::Response::new(value).into())
}

/// # `PUT /_matrix/client/v3/profile/{userId}/{keyName}`
async fn set_field_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    JsonObject(mut body): JsonObject,
) -> ApiResult<Json<Value>> {
    let key = param(&params, "field")?;
    let value = body.remove(&key).ok_or_else(|| Error::missing_param(format!("Missing key {key:?} in the body")))?;
    let value = ProfileFieldValue::new(&key, value).map_err(|e| Error::bad_json(format!("invalid {key}: {e}")))?;
    match value {
        ProfileFieldValue::DisplayName(name) => {
            set_field(&s, auth, &params, ProfileField::Displayname, Some(&json!(name))).await
        }
        ProfileFieldValue::AvatarUrl(url) => {
            set_field(&s, auth, &params, ProfileField::AvatarUrl, Some(&json!(url))).await
        }
        other => {
            let req = SetProfileFieldRequest {
                requester: auth.user_id,
                user_id: param(&params, "user_id")?,
                key,
                value_json: other.value().to_string(),
            };
            s.services.auth.set_profile_field(req).await?;
            Ok(Json(json!({})))
        }
    }
}

/// # `DELETE /_matrix/client/v3/profile/{userId}/{keyName}`
async fn delete_field_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    Ruma(req): Ruma<delete_profile_field::v3::Request>,
) -> RumaResult<delete_profile_field::v3::Response> {
    match req.field.as_str() {
        "displayname" => {
            set_field(&s, auth, &params, ProfileField::Displayname, None).await.map(drop)?;
        }
        "avatar_url" => {
            set_field(&s, auth, &params, ProfileField::AvatarUrl, None).await.map(drop)?;
        }
        key => {
            let req = DeleteProfileFieldRequest {
                requester: auth.user_id,
                user_id: req.user_id.to_string(),
                key: key.to_owned(),
            };
            s.services.auth.delete_profile_field(req).await?;
        }
    }
    Ok(delete_profile_field::v3::Response::new().into())
}

/// # `DELETE /_matrix/client/v3/profile/{userId}/displayname`
async fn delete_displayname_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
) -> ApiResult<Json<Value>> {
    set_field(&s, auth, &params, ProfileField::Displayname, None).await
}

/// # `DELETE /_matrix/client/v3/profile/{userId}/avatar_url`
async fn delete_avatar_route(State(s): State<AppState>, auth: Authed, params: RawPathParams) -> ApiResult<Json<Value>> {
    set_field(&s, auth, &params, ProfileField::AvatarUrl, None).await
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
