//! Account data, global and per room, and room tags. The sync service stores the content
//! as the client sent it; it is answered as stored.

use axum::Router;
use ruma::api::client::{
    config::{get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data},
    tag::{create_tag, delete_tag, get_tags},
};
use trellis_core::ErrorCode;
use trellis_proto::sync::{GetAccountDataRequest, SetAccountDataRequest, UpdateTagRequest};

use super::raw;
use crate::{AppState, error::ApiResult, extract::Ruma, response::Rendered, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(get_global_account_data_route)
        .ruma(set_global_account_data_route)
        .ruma(get_room_account_data_route)
        .ruma(set_room_account_data_route)
        .ruma(get_tags_route)
        .ruma(create_tag_route)
        .ruma(delete_tag_route)
}

/// The stored content of one type of account data (global when `room_id` is empty).
async fn get(
    s: &AppState,
    requester: String,
    user_id: String,
    room_id: String,
    data_type: String,
) -> ApiResult<String> {
    let ask = GetAccountDataRequest { requester, user_id, room_id, data_type };
    Ok(s.services.sync.get_account_data(ask).await?.content_json)
}

async fn set(
    s: &AppState,
    requester: String,
    user_id: String,
    room_id: String,
    data_type: String,
    content_json: String,
) -> ApiResult<()> {
    let req = SetAccountDataRequest { requester, user_id, room_id, data_type, content_json };
    s.services.sync.set_account_data(req).await?;
    Ok(())
}

/// # `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
async fn get_global_account_data_route(
    s: AppState,
    req: Ruma<get_global_account_data::v3::Request>,
) -> ApiResult<get_global_account_data::v3::Response> {
    let (user_id, data_type) = (req.body.user_id.to_string(), req.body.event_type.to_string());
    let content = get(&s, req.user.user_id, user_id, String::new(), data_type).await?;
    Ok(get_global_account_data::v3::Response::new(raw(content)?))
}

/// # `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
async fn set_global_account_data_route(
    s: AppState,
    req: Ruma<set_global_account_data::v3::Request>,
) -> ApiResult<set_global_account_data::v3::Response> {
    let (user_id, data_type) = (req.body.user_id.to_string(), req.body.event_type.to_string());
    let content = req.body.data.json().get().to_owned();
    set(&s, req.user.user_id, user_id, String::new(), data_type, content).await?;
    Ok(set_global_account_data::v3::Response::new())
}

/// # `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
async fn get_room_account_data_route(
    s: AppState,
    req: Ruma<get_room_account_data::v3::Request>,
) -> ApiResult<get_room_account_data::v3::Response> {
    let body = &req.body;
    let (user_id, room_id, data_type) =
        (body.user_id.to_string(), body.room_id.to_string(), body.event_type.to_string());
    let content = get(&s, req.user.user_id, user_id, room_id, data_type).await?;
    Ok(get_room_account_data::v3::Response::new(raw(content)?))
}

/// # `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
async fn set_room_account_data_route(
    s: AppState,
    req: Ruma<set_room_account_data::v3::Request>,
) -> ApiResult<set_room_account_data::v3::Response> {
    let body = &req.body;
    let (user_id, room_id, data_type) =
        (body.user_id.to_string(), body.room_id.to_string(), body.event_type.to_string());
    let content = body.data.json().get().to_owned();
    set(&s, req.user.user_id, user_id, room_id, data_type, content).await?;
    Ok(set_room_account_data::v3::Response::new())
}

/// # `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`
///
/// The stored `m.tag` content is the answer, as the client wrote each tag's info.
async fn get_tags_route(s: AppState, req: Ruma<get_tags::v3::Request>) -> ApiResult<Rendered<get_tags::v3::Response>> {
    let (user_id, room_id) = (req.body.user_id.to_string(), req.body.room_id.to_string());
    match get(&s, req.user.user_id, user_id, room_id, "m.tag".into()).await {
        Ok(content) => Ok(Rendered::new(content)),
        Err(e) if e.0.code() == ErrorCode::NotFound => Ok(Rendered::new(r#"{"tags":{}}"#.to_owned())),
        Err(e) => Err(e),
    }
}

async fn tag(
    s: &AppState,
    requester: String,
    user_id: String,
    room_id: String,
    tag: String,
    content: Option<String>,
) -> ApiResult<()> {
    let req = UpdateTagRequest { requester, user_id, room_id, tag, content_json: content };
    s.services.sync.update_tag(req).await?;
    Ok(())
}

/// # `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
async fn create_tag_route(s: AppState, req: Ruma<create_tag::v3::Request>) -> ApiResult<create_tag::v3::Response> {
    let content = serde_json::to_string(&req.body.tag_info)?;
    let body = req.body;
    tag(&s, req.user.user_id, body.user_id.to_string(), body.room_id.to_string(), body.tag, Some(content)).await?;
    Ok(create_tag::v3::Response::new())
}

/// # `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
async fn delete_tag_route(s: AppState, req: Ruma<delete_tag::v3::Request>) -> ApiResult<delete_tag::v3::Response> {
    let body = req.body;
    tag(&s, req.user.user_id, body.user_id.to_string(), body.room_id.to_string(), body.tag, None).await?;
    Ok(delete_tag::v3::Response::new())
}
