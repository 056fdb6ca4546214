//! Aliases and the published room directory: `/directory/room/{roomAlias}`,
//! `/rooms/{roomId}/aliases`, `/directory/list/room/{roomId}`, `/publicRooms`.

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::delete,
};
use ruma::api::client::{
    alias::{create_alias, delete_alias, get_alias},
    appservice::set_room_visibility as set_appservice_listing,
    directory::{get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility},
    room::{Visibility, aliases},
};
use ruma::directory::RoomNetwork;
use serde::Serialize;
use serde_json::value::RawValue;
use trellis_core::Error;
use trellis_proto::rooms::{
    DeleteAliasRequest, GetDirectoryVisibilityRequest, PublicRoomsRequest, ResolveAliasRequest, RoomAliasesRequest,
    SetAliasRequest, SetAppserviceListingRequest, SetDirectoryVisibilityRequest,
};

use super::{small, stored_id};
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::{Authed, Ruma},
    response::Rendered,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    let router = Router::new()
        .ruma(get_alias_route)
        .ruma(create_alias_route)
        .ruma(delete_alias_route)
        .ruma(aliases_route)
        .ruma(get_room_visibility_route)
        .ruma(set_room_visibility_route)
        .ruma(get_public_rooms_route)
        .ruma(get_public_rooms_filtered_route)
        .ruma(set_appservice_listing_route);
    // Synapse's DELETE on the same path unlists (ruma has no type for it); bridges use it.
    ["/_matrix/client/r0", "/_matrix/client/v3"].into_iter().fold(router, |router, prefix| {
        router.route(&format!("{prefix}/directory/list/appservice/{{network_id}}/{{room_id}}"), delete(unlist_route))
    })
}

/// # `PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}`
async fn set_appservice_listing_route(
    s: AppState,
    req: Ruma<set_appservice_listing::v3::Request>,
) -> ApiResult<set_appservice_listing::v3::Response> {
    let appservice_id = req.user.appservice_id.unwrap_or_default();
    let listed = matches!(req.body.visibility, Visibility::Public);
    let (network_id, room_id) = (req.body.network_id, req.body.room_id.to_string());
    let listing = SetAppserviceListingRequest { appservice_id, network_id, room_id, listed };
    s.services.rooms.set_appservice_listing(listing).await?;
    Ok(set_appservice_listing::v3::Response::new())
}

/// # `DELETE /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}`
async fn unlist_route(
    State(s): State<AppState>,
    user: Authed,
    Path((network_id, room_id)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let appservice_id = user
        .appservice_id
        .ok_or_else(|| ApiError(Error::forbidden("Only application services can make this request")))?;
    let listing = SetAppserviceListingRequest { appservice_id, network_id, room_id, listed: false };
    s.services.rooms.set_appservice_listing(listing).await?;
    Ok(Json(serde_json::json!({})))
}

/// # `GET /_matrix/client/v3/directory/room/{roomAlias}`
async fn get_alias_route(s: AppState, req: Ruma<get_alias::v3::Request>) -> ApiResult<get_alias::v3::Response> {
    let resp = s.services.rooms.resolve_alias(ResolveAliasRequest { alias: req.body.room_alias.to_string() }).await?;
    let servers = resp.servers.into_iter().map(stored_id).collect::<ApiResult<_>>()?;
    Ok(get_alias::v3::Response::new(stored_id(resp.room_id)?, servers))
}

/// # `PUT /_matrix/client/v3/directory/room/{roomAlias}`
async fn create_alias_route(
    s: AppState,
    req: Ruma<create_alias::v3::Request>,
) -> ApiResult<create_alias::v3::Response> {
    let (alias, room_id) = (req.body.room_alias.to_string(), req.body.room_id.to_string());
    let appservice_id = req.user.appservice_id;
    s.services.rooms.set_alias(SetAliasRequest { sender: req.user.user_id, alias, room_id, appservice_id }).await?;
    Ok(create_alias::v3::Response::new())
}

/// # `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
async fn delete_alias_route(
    s: AppState,
    req: Ruma<delete_alias::v3::Request>,
) -> ApiResult<delete_alias::v3::Response> {
    let alias = req.body.room_alias.to_string();
    s.services.rooms.delete_alias(DeleteAliasRequest { sender: req.user.user_id, alias }).await?;
    Ok(delete_alias::v3::Response::new())
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/aliases`
async fn aliases_route(s: AppState, req: Ruma<aliases::v3::Request>) -> ApiResult<aliases::v3::Response> {
    let ask = RoomAliasesRequest { user_id: req.user.user_id, room_id: req.body.room_id.to_string() };
    let resp = s.services.rooms.room_aliases(ask).await?;
    Ok(aliases::v3::Response::new(resp.aliases.into_iter().map(stored_id).collect::<ApiResult<_>>()?))
}

/// # `GET /_matrix/client/v3/directory/list/room/{roomId}`
async fn get_room_visibility_route(
    s: AppState,
    req: Ruma<get_room_visibility::v3::Request>,
) -> ApiResult<get_room_visibility::v3::Response> {
    let ask = GetDirectoryVisibilityRequest { room_id: req.body.room_id.to_string() };
    let resp = s.services.rooms.get_directory_visibility(ask).await?;
    Ok(get_room_visibility::v3::Response::new(Visibility::from(resp.visibility.as_str())))
}

/// # `PUT /_matrix/client/v3/directory/list/room/{roomId}`
async fn set_room_visibility_route(
    s: AppState,
    req: Ruma<set_room_visibility::v3::Request>,
) -> ApiResult<set_room_visibility::v3::Response> {
    let set = SetDirectoryVisibilityRequest {
        sender: req.user.user_id,
        room_id: req.body.room_id.to_string(),
        visibility: req.body.visibility.as_str().to_owned(),
    };
    s.services.rooms.set_directory_visibility(set).await?;
    Ok(set_room_visibility::v3::Response::new())
}

/// # `GET /_matrix/client/v3/publicRooms`
async fn get_public_rooms_route(
    s: AppState,
    req: Ruma<get_public_rooms::v3::Request>,
) -> ApiResult<Rendered<get_public_rooms::v3::Response>> {
    let req = req.body;
    let ask = PublicRoomsRequest {
        limit: req.limit.map(small),
        since: req.since,
        server: req.server.map(|s| s.to_string()),
        ..Default::default()
    };
    public_rooms(&s, ask).await
}

/// # `POST /_matrix/client/v3/publicRooms`
async fn get_public_rooms_filtered_route(
    s: AppState,
    req: Ruma<get_public_rooms_filtered::v3::Request>,
) -> ApiResult<Rendered<get_public_rooms_filtered::v3::Response>> {
    let req = req.body;
    let room_types: Vec<String> =
        req.filter.room_types.iter().map(|t| t.as_str().unwrap_or_default().to_owned()).collect();
    let ask = PublicRoomsRequest {
        limit: req.limit.map(small),
        since: req.since,
        search_term: req.filter.generic_search_term,
        filter_room_types: !room_types.is_empty(),
        room_types,
        server: req.server.map(|s| s.to_string()),
        third_party_instance_id: match &req.room_network {
            RoomNetwork::ThirdParty(instance) => Some(instance.clone()),
            _ => None,
        },
        include_all_networks: matches!(req.room_network, RoomNetwork::All),
    };
    public_rooms(&s, ask).await
}

/// Both directory answers. The rooms service renders each entry in Synapse's shape (every
/// key present, as SyTest reads them); they are embedded as sent.
async fn public_rooms<R>(s: &AppState, ask: PublicRoomsRequest) -> ApiResult<Rendered<R>> {
    #[derive(Serialize)]
    struct PublicRooms {
        chunk: Vec<Box<RawValue>>,
        total_room_count_estimate: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_batch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        prev_batch: Option<String>,
    }
    let resp = s.services.rooms.public_rooms(ask).await?;
    Rendered::shaped(&PublicRooms {
        chunk: resp.chunk_json.into_iter().map(RawValue::from_string).collect::<Result<_, _>>()?,
        total_room_count_estimate: resp.total_room_count_estimate,
        next_batch: resp.next_batch,
        prev_batch: resp.prev_batch,
    })
}
