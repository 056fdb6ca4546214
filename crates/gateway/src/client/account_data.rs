//! Account data, global and per room, and room tags.

use axum::{Json, Router, extract::State};
use ruma::api::client::{
    config::{get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data},
    tag::{create_tag, delete_tag, get_tags},
};
use serde_json::{Value, json};
use trellis_core::ErrorCode;
use trellis_proto::sync::{GetAccountDataRequest, SetAccountDataRequest, UpdateTagRequest};

use super::RawJson;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, Ruma},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<get_global_account_data::v3::Request, _, _>(get_global_route)
        .ruma::<set_global_account_data::v3::Request, _, _>(set_global_route)
        .ruma::<get_room_account_data::v3::Request, _, _>(get_room_route)
        .ruma::<set_room_account_data::v3::Request, _, _>(set_room_route)
        .ruma::<get_tags::v3::Request, _, _>(get_tags_route)
        .ruma::<create_tag::v3::Request, _, _>(create_tag_route)
        .ruma::<delete_tag::v3::Request, _, _>(delete_tag_route)
}

async fn get(
    s: &AppState,
    requester: String,
    user_id: String,
    room_id: String,
    data_type: String,
) -> ApiResult<RawJson> {
    let resp =
        s.services.sync.get_account_data(GetAccountDataRequest { requester, user_id, room_id, data_type }).await?;
    Ok(RawJson(resp.content_json))
}

async fn set(
    s: &AppState,
    requester: String,
    user_id: String,
    room_id: String,
    data_type: String,
    content_json: String,
) -> ApiResult<Json<Value>> {
    let req = SetAccountDataRequest { requester, user_id, room_id, data_type, content_json };
    s.services.sync.set_account_data(req).await?;
    Ok(Json(json!({})))
}

/// # `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
async fn get_global_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_global_account_data::v3::Request>,
) -> ApiResult<RawJson> {
    get(&s, auth.user_id, req.user_id.to_string(), String::new(), req.event_type.to_string()).await
}

/// # `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
async fn set_global_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_global_account_data::v3::Request>,
) -> ApiResult<Json<Value>> {
    let content = req.data.json().get().to_owned();
    set(&s, auth.user_id, req.user_id.to_string(), String::new(), req.event_type.to_string(), content).await
}

/// # `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
async fn get_room_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_room_account_data::v3::Request>,
) -> ApiResult<RawJson> {
    get(&s, auth.user_id, req.user_id.to_string(), req.room_id.to_string(), req.event_type.to_string()).await
}

/// # `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
async fn set_room_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_room_account_data::v3::Request>,
) -> ApiResult<Json<Value>> {
    let content = req.data.json().get().to_owned();
    set(&s, auth.user_id, req.user_id.to_string(), req.room_id.to_string(), req.event_type.to_string(), content).await
}

/// # `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`
async fn get_tags_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_tags::v3::Request>,
) -> ApiResult<RawJson> {
    match get(&s, auth.user_id, req.user_id.to_string(), req.room_id.to_string(), "m.tag".into()).await {
        Err(e) if e.0.code() == ErrorCode::NotFound => Ok(RawJson(json!({ "tags": {} }).to_string())),
        other => other,
    }
}

async fn tag(
    s: &AppState,
    auth: Authed,
    user: String,
    room: String,
    tag: String,
    content: Option<String>,
) -> ApiResult<Json<Value>> {
    let req = UpdateTagRequest { requester: auth.user_id, user_id: user, room_id: room, tag, content_json: content };
    s.services.sync.update_tag(req).await?;
    Ok(Json(json!({})))
}

/// # `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
async fn create_tag_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<create_tag::v3::Request>,
) -> ApiResult<Json<Value>> {
    let content = serde_json::to_string(&req.tag_info)?;
    tag(&s, auth, req.user_id.to_string(), req.room_id.to_string(), req.tag, Some(content)).await
}

/// # `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
async fn delete_tag_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<delete_tag::v3::Request>,
) -> ApiResult<Json<Value>> {
    tag(&s, auth, req.user_id.to_string(), req.room_id.to_string(), req.tag, None).await
}
