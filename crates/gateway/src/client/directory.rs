//! Aliases and the published room directory: `/directory/room/{roomAlias}`,
//! `/rooms/{roomId}/aliases`, `/directory/list/room/{roomId}`, `/publicRooms`.

use axum::{Json, Router, extract::State};
use ruma::api::client::{
    alias::{create_alias, delete_alias, get_alias},
    directory::{get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility},
    room::aliases,
};
use serde_json::{Value, json};
use trellis_proto::rooms::{
    DeleteAliasRequest, GetDirectoryVisibilityRequest, PublicRoomsRequest, ResolveAliasRequest, RoomAliasesRequest,
    SetAliasRequest, SetDirectoryVisibilityRequest,
};

use super::raw_events;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, Ruma},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<get_alias::v3::Request, _, _>(get_alias_route)
        .ruma::<create_alias::v3::Request, _, _>(create_alias_route)
        .ruma::<delete_alias::v3::Request, _, _>(delete_alias_route)
        .ruma::<aliases::v3::Request, _, _>(room_aliases_route)
        .ruma::<get_room_visibility::v3::Request, _, _>(get_visibility_route)
        .ruma::<set_room_visibility::v3::Request, _, _>(set_visibility_route)
        .ruma::<get_public_rooms::v3::Request, _, _>(public_rooms_route)
        .ruma::<get_public_rooms_filtered::v3::Request, _, _>(public_rooms_filtered_route)
}

/// # `GET /_matrix/client/v3/directory/room/{roomAlias}`
async fn get_alias_route(State(s): State<AppState>, Ruma(req): Ruma<get_alias::v3::Request>) -> ApiResult<Json<Value>> {
    let resp = s.services.rooms.resolve_alias(ResolveAliasRequest { alias: req.room_alias.to_string() }).await?;
    Ok(Json(json!({ "room_id": resp.room_id, "servers": resp.servers })))
}

/// # `PUT /_matrix/client/v3/directory/room/{roomAlias}`
async fn create_alias_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<create_alias::v3::Request>,
) -> ApiResult<Json<Value>> {
    let req =
        SetAliasRequest { sender: auth.user_id, alias: req.room_alias.to_string(), room_id: req.room_id.to_string() };
    s.services.rooms.set_alias(req).await?;
    Ok(Json(json!({})))
}

/// # `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
async fn delete_alias_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<delete_alias::v3::Request>,
) -> ApiResult<Json<Value>> {
    s.services
        .rooms
        .delete_alias(DeleteAliasRequest { sender: auth.user_id, alias: req.room_alias.to_string() })
        .await?;
    Ok(Json(json!({})))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/aliases`
async fn room_aliases_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<aliases::v3::Request>,
) -> ApiResult<Json<Value>> {
    let req = RoomAliasesRequest { user_id: auth.user_id, room_id: req.room_id.to_string() };
    let resp = s.services.rooms.room_aliases(req).await?;
    Ok(Json(json!({ "aliases": resp.aliases })))
}

/// # `GET /_matrix/client/v3/directory/list/room/{roomId}`
async fn get_visibility_route(
    State(s): State<AppState>,
    Ruma(req): Ruma<get_room_visibility::v3::Request>,
) -> ApiResult<Json<Value>> {
    let req = GetDirectoryVisibilityRequest { room_id: req.room_id.to_string() };
    let resp = s.services.rooms.get_directory_visibility(req).await?;
    Ok(Json(json!({ "visibility": resp.visibility })))
}

/// # `PUT /_matrix/client/v3/directory/list/room/{roomId}`
async fn set_visibility_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_room_visibility::v3::Request>,
) -> ApiResult<Json<Value>> {
    let req = SetDirectoryVisibilityRequest {
        sender: auth.user_id,
        room_id: req.room_id.to_string(),
        visibility: req.visibility.as_str().to_owned(),
    };
    s.services.rooms.set_directory_visibility(req).await?;
    Ok(Json(json!({})))
}

/// # `GET /_matrix/client/v3/publicRooms`
async fn public_rooms_route(
    State(s): State<AppState>,
    Ruma(req): Ruma<get_public_rooms::v3::Request>,
) -> ApiResult<Json<Value>> {
    public_rooms(
        &s,
        PublicRoomsRequest {
            limit: req.limit.map(|l| u64::from(l).min(u64::from(u32::MAX)) as u32),
            since: req.since,
            server: req.server.map(|s| s.to_string()),
            ..Default::default()
        },
    )
    .await
}

/// # `POST /_matrix/client/v3/publicRooms`
async fn public_rooms_filtered_route(
    State(s): State<AppState>,
    _: Authed,
    Ruma(req): Ruma<get_public_rooms_filtered::v3::Request>,
) -> ApiResult<Json<Value>> {
    let room_types: Vec<String> =
        req.filter.room_types.iter().map(|t| t.as_str().unwrap_or_default().to_owned()).collect();
    public_rooms(
        &s,
        PublicRoomsRequest {
            limit: req.limit.map(|l| u64::from(l).min(u64::from(u32::MAX)) as u32),
            since: req.since,
            search_term: req.filter.generic_search_term,
            filter_room_types: !room_types.is_empty(),
            room_types,
            server: req.server.map(|s| s.to_string()),
        },
    )
    .await
}

async fn public_rooms(s: &AppState, req: PublicRoomsRequest) -> ApiResult<Json<Value>> {
    let resp = s.services.rooms.public_rooms(req).await?;
    let mut out = json!({
        "chunk": raw_events(resp.chunk_json)?,
        "total_room_count_estimate": resp.total_room_count_estimate,
    });
    if let Some(next) = resp.next_batch {
        out["next_batch"] = json!(next);
    }
    if let Some(prev) = resp.prev_batch {
        out["prev_batch"] = json!(prev);
    }
    Ok(Json(out))
}
