//! Profiles: display name, avatar and custom fields (spec 1.16: `m.tz` and namespaced keys).
//! A name or avatar change is stored by the auth service, which then has the rooms service
//! carry it into the user's member event in every joined room.

use axum::{
    Router,
    extract::{RawPathParams, State},
    response::Response,
    routing::delete,
};
use ruma::{
    api::client::profile::{
        delete_profile_field, get_avatar_url, get_display_name, get_profile, get_profile_field, set_avatar_url,
        set_display_name, set_profile_field,
    },
    profile::{ProfileFieldValue, UserProfile},
};
use serde_json::{Value, json};
use trellis_core::Error;
use trellis_proto::auth::{
    DeleteProfileFieldRequest, GetProfileRequest, Profile, ProfileField, SetProfileFieldRequest, SetProfileRequest,
};

use super::param;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, JsonObject, Ruma},
    response::Reply,
    router::{RumaRoutes, paths_of},
};

pub fn routes() -> Router<AppState> {
    // The named routes of `displayname` and `avatar_url` match before the `{field}` ones.
    let mut router = Router::new()
        .ruma(get_profile_route)
        .ruma(get_profile_field_route)
        .json_endpoint::<set_profile_field::v3::Request, _, _>(set_profile_field_route)
        .ruma(delete_profile_field_route)
        .ruma(get_display_name_route)
        .ruma(set_display_name_route)
        .ruma(get_avatar_url_route)
        .ruma(set_avatar_url_route);
    // `DELETE` of a name or avatar reaches these named paths before `{field}` (axum routes
    // by path first), so the deletion is registered on them too.
    for (paths, field) in [
        (paths_of::<get_display_name::v3::Request>(), ProfileField::Displayname),
        (paths_of::<get_avatar_url::v3::Request>(), ProfileField::AvatarUrl),
    ] {
        for path in paths {
            let remove = move |State(s): State<AppState>, auth: Authed, params: RawPathParams| async move {
                delete_named_field(s, auth, params, field).await
            };
            router = router.route(&path, delete(remove));
        }
    }
    router
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
async fn get_profile_route(s: AppState, req: Ruma<get_profile::v3::Request>) -> ApiResult<get_profile::v3::Response> {
    let p = fetch(&s, req.body.user_id.to_string()).await?;
    let mut out = get_profile::v3::Response::new();
    out.data = all_fields(p);
    Ok(out)
}

/// # `GET /_matrix/client/v3/profile/{userId}/{keyName}`
async fn get_profile_field_route(
    s: AppState,
    req: Ruma<get_profile_field::v3::Request>,
) -> ApiResult<get_profile_field::v3::Response> {
    let all = all_fields(fetch(&s, req.body.user_id.to_string()).await?);
    let key = req.body.field.as_str();
    let value = all.get(key).cloned().ok_or_else(|| Error::not_found("This user has no such profile field"))?;
    let value =
        ProfileFieldValue::new(key, value).map_err(|e| Error::internal(format!("stored profile field: {e}")))?;
    Ok(get_profile_field::v3::Response::new(value))
}

/// # `PUT /_matrix/client/v3/profile/{userId}/{keyName}`
///
/// The body is read here: ruma 0.25's parser fails on any other key in it (it does not skip
/// the value, so `{"other": 1}` reads as broken JSON), and a body without the path's key is
/// `M_MISSING_PARAM` as the spec says.
async fn set_profile_field_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    JsonObject(mut body): JsonObject,
) -> ApiResult<Response> {
    let (user_id, key) = (param(&params, "user_id")?, param(&params, "field")?);
    let value = body.remove(&key).ok_or_else(|| Error::missing_param(format!("Missing key {key:?} in the body")))?;
    match ProfileFieldValue::new(&key, value).map_err(|e| Error::bad_json(format!("invalid {key}: {e}")))? {
        ProfileFieldValue::DisplayName(name) => {
            set_field(&s, auth, user_id, ProfileField::Displayname, Some(name)).await?
        }
        ProfileFieldValue::AvatarUrl(url) => {
            set_field(&s, auth, user_id, ProfileField::AvatarUrl, Some(url.to_string())).await?
        }
        other => {
            auth.not_suspended()?;
            let value_json = other.value().to_string();
            let set = SetProfileFieldRequest { requester: auth.user_id, user_id, key, value_json };
            s.services.auth.set_profile_field(set).await?;
        }
    }
    Ok(set_profile_field::v3::Response::new().into_answer())
}

/// # `DELETE /_matrix/client/v3/profile/{userId}/{keyName}`
async fn delete_profile_field_route(
    s: AppState,
    req: Ruma<delete_profile_field::v3::Request>,
) -> ApiResult<delete_profile_field::v3::Response> {
    let (auth, req) = (req.user, req.body);
    let user_id = req.user_id.to_string();
    match req.field.as_str() {
        "displayname" => set_field(&s, auth, user_id, ProfileField::Displayname, None).await?,
        "avatar_url" => set_field(&s, auth, user_id, ProfileField::AvatarUrl, None).await?,
        key => {
            auth.not_suspended()?;
            let key = key.to_owned();
            s.services
                .auth
                .delete_profile_field(DeleteProfileFieldRequest { requester: auth.user_id, user_id, key })
                .await?;
        }
    }
    Ok(delete_profile_field::v3::Response::new())
}

/// # `DELETE /_matrix/client/v3/profile/{userId}/{displayname,avatar_url}`
async fn delete_named_field(
    s: AppState,
    auth: Authed,
    params: RawPathParams,
    field: ProfileField,
) -> ApiResult<Response> {
    set_field(&s, auth, param(&params, "user_id")?, field, None).await?;
    Ok(delete_profile_field::v3::Response::new().into_answer())
}

/// # `GET /_matrix/client/v3/profile/{userId}/displayname`
async fn get_display_name_route(
    s: AppState,
    req: Ruma<get_display_name::v3::Request>,
) -> ApiResult<get_display_name::v3::Response> {
    Ok(get_display_name::v3::Response::new(fetch(&s, req.body.user_id.to_string()).await?.displayname))
}

/// # `GET /_matrix/client/v3/profile/{userId}/avatar_url`
async fn get_avatar_url_route(
    s: AppState,
    req: Ruma<get_avatar_url::v3::Request>,
) -> ApiResult<get_avatar_url::v3::Response> {
    let avatar_url = fetch(&s, req.body.user_id.to_string()).await?.avatar_url;
    Ok(get_avatar_url::v3::Response::new(avatar_url.map(Into::into)))
}

/// # `PUT /_matrix/client/v3/profile/{userId}/displayname`
async fn set_display_name_route(
    s: AppState,
    req: Ruma<set_display_name::v3::Request>,
) -> ApiResult<set_display_name::v3::Response> {
    let (auth, req) = (req.user, req.body);
    set_field(&s, auth, req.user_id.to_string(), ProfileField::Displayname, req.displayname).await?;
    Ok(set_display_name::v3::Response::new())
}

/// # `PUT /_matrix/client/v3/profile/{userId}/avatar_url`
async fn set_avatar_url_route(
    s: AppState,
    req: Ruma<set_avatar_url::v3::Request>,
) -> ApiResult<set_avatar_url::v3::Response> {
    let (auth, req) = (req.user, req.body);
    let url = req.avatar_url.map(|u| u.to_string());
    set_field(&s, auth, req.user_id.to_string(), ProfileField::AvatarUrl, url).await?;
    Ok(set_avatar_url::v3::Response::new())
}

/// Sets (or with `None` clears) the name or avatar (the auth service carries it into member
/// events).
async fn set_field(
    s: &AppState,
    auth: Authed,
    user_id: String,
    field: ProfileField,
    value: Option<String>,
) -> ApiResult<()> {
    auth.not_suspended()?;
    let set = SetProfileRequest { user_id, field: field as i32, value, requester: auth.user_id };
    s.services.auth.set_profile(set).await?;
    Ok(())
}
