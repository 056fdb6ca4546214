//! Admin API handlers for rooms: list, details, members, state, history, block, make a
//! local user room admin, and delete (v2 in the background with its status, v1 waiting).
//! The rooms service owns the rules; these handlers translate Synapse's shapes.

use axum::Router;
use ruma::api::{Direction, client::message::get_message_events};
use trellis_core::Error;
use trellis_proto::rooms::{
    AdminDeleteRoomRequest, AdminDeleteStatusRequest, AdminDeletion, AdminListRoomsRequest, AdminMakeRoomAdminRequest,
    AdminRoom, AdminRoomRequest, AdminSetBlockRequest, GetMessagesRequest,
};

use super::{
    DEFAULT_LIMIT, ServerAdmin,
    api_rooms::{self as api, DeleteStatus, ListedRoom, RoomDetails, ShutdownRoom},
    backwards, next_from,
};
use crate::{
    AppState,
    client::{raw_list, small},
    error::ApiResult,
    extract::Ruma,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(list_route)
        .ruma(details_route)
        .ruma(members_route)
        .ruma(state_route)
        .ruma_on(vec!["/_synapse/admin/v1/rooms/{room_id}/messages".to_owned()], messages_route)
        .ruma(get_block_route)
        .ruma(set_block_route)
        .ruma(make_room_admin_route)
        .ruma(delete_v2_route)
        .ruma(delete_v1_route)
        .ruma(room_delete_status_route)
        .ruma(delete_status_route)
}

fn listed(r: AdminRoom) -> ListedRoom {
    ListedRoom {
        room_id: r.room_id,
        name: r.name,
        canonical_alias: r.canonical_alias,
        joined_members: r.joined_members,
        joined_local_members: r.joined_local_members,
        version: r.version,
        creator: r.creator,
        encryption: r.encryption,
        federatable: r.federatable,
        public: r.public,
        join_rules: r.join_rules,
        guest_access: r.guest_access,
        history_visibility: r.history_visibility,
        state_events: r.state_events,
        room_type: r.room_type,
    }
}

/// # `GET /_synapse/admin/v1/rooms`
async fn list_route(
    s: AppState,
    req: Ruma<api::list_rooms::Request, ServerAdmin>,
) -> ApiResult<api::list_rooms::Response> {
    let q = req.body;
    let (from, limit) = (q.from.unwrap_or(0), q.limit.unwrap_or(DEFAULT_LIMIT));
    let list = AdminListRoomsRequest {
        from,
        limit,
        order_by: q.order_by,
        backwards: backwards(q.dir.as_deref(), false)?,
        search_term: q.search_term,
    };
    let found = s.services.rooms.admin_list_rooms(list).await?;
    let next_batch = next_from(from, limit, found.total);
    let prev_batch = (from > 0).then(|| (from - limit).max(0));
    let rooms = found.rooms.into_iter().map(listed).collect();
    Ok(api::list_rooms::Response { rooms, offset: from, total_rooms: found.total, next_batch, prev_batch })
}

/// # `GET /_synapse/admin/v1/rooms/{roomId}`
async fn details_route(
    s: AppState,
    req: Ruma<api::room_details::Request, ServerAdmin>,
) -> ApiResult<api::room_details::Response> {
    let r = s.services.rooms.admin_room_details(AdminRoomRequest { room_id: req.body.room_id.to_string() }).await?;
    let (avatar, topic, joined_local_devices) = (r.avatar.clone(), r.topic.clone(), r.joined_local_devices);
    let room = RoomDetails { room: listed(r), avatar, topic, joined_local_devices, forgotten: false };
    Ok(api::room_details::Response { room })
}

/// # `GET /_synapse/admin/v1/rooms/{roomId}/members`
async fn members_route(
    s: AppState,
    req: Ruma<api::members::Request, ServerAdmin>,
) -> ApiResult<api::members::Response> {
    let found = s.services.rooms.admin_room_members(AdminRoomRequest { room_id: req.body.room_id.to_string() }).await?;
    Ok(api::members::Response { total: found.members.len(), members: found.members })
}

/// # `GET /_synapse/admin/v1/rooms/{roomId}/state`
async fn state_route(s: AppState, req: Ruma<api::state::Request, ServerAdmin>) -> ApiResult<api::state::Response> {
    let found = s.services.rooms.admin_room_state(AdminRoomRequest { room_id: req.body.room_id.to_string() }).await?;
    Ok(api::state::Response { state: raw_list(found.events_json)? })
}

/// # `GET /_synapse/admin/v1/rooms/{roomId}/messages`: the client API's, every event shown.
async fn messages_route(
    s: AppState,
    req: Ruma<get_message_events::v3::Request, ServerAdmin>,
) -> ApiResult<get_message_events::v3::Response> {
    let (auth, req) = (req.user, req.body);
    let ask = GetMessagesRequest {
        user_id: auth.user_id,
        device_id: auth.device_id,
        room_id: req.room_id.to_string(),
        from: req.from,
        to: req.to,
        backwards: req.dir == Direction::Backward,
        limit: small(req.limit),
        filter_json: Some(serde_json::to_string(&req.filter)?),
    };
    let resp = s.services.rooms.admin_room_messages(ask).await?;
    let mut out = get_message_events::v3::Response::new();
    out.start = resp.start;
    out.end = resp.end;
    out.chunk = raw_list(resp.chunk_json)?;
    out.state = raw_list(resp.state_json)?;
    Ok(out)
}

/// # `GET /_synapse/admin/v1/rooms/{roomId}/block`
async fn get_block_route(
    s: AppState,
    req: Ruma<api::get_block::Request, ServerAdmin>,
) -> ApiResult<api::get_block::Response> {
    let found = s.services.rooms.admin_get_block(AdminRoomRequest { room_id: req.body.room_id.to_string() }).await?;
    Ok(api::get_block::Response { block: found.block, user_id: found.user_id })
}

/// # `PUT /_synapse/admin/v1/rooms/{roomId}/block`
async fn set_block_route(
    s: AppState,
    req: Ruma<api::set_block::Request, ServerAdmin>,
) -> ApiResult<api::set_block::Response> {
    let set =
        AdminSetBlockRequest { admin: req.user.user_id, room_id: req.body.room_id.to_string(), block: req.body.block };
    Ok(api::set_block::Response { block: s.services.rooms.admin_set_block(set).await?.block })
}

/// # `POST /_synapse/admin/v1/rooms/{roomIdOrAlias}/make_room_admin`
async fn make_room_admin_route(
    s: AppState,
    req: Ruma<api::make_room_admin::Request, ServerAdmin>,
) -> ApiResult<api::make_room_admin::Response> {
    let user_id = req.body.user_id.unwrap_or(req.user.user_id);
    let ask = AdminMakeRoomAdminRequest { room_id: req.body.room_id_or_alias.to_string(), user_id };
    s.services.rooms.admin_make_room_admin(ask).await?;
    Ok(api::make_room_admin::Response {})
}

/// # `DELETE /_synapse/admin/v2/rooms/{roomId}`: starts the deletion; `purge` defaults to true.
async fn delete_v2_route(
    s: AppState,
    req: Ruma<api::delete_room_v2::Request, ServerAdmin>,
) -> ApiResult<api::delete_room_v2::Response> {
    let b = req.body;
    let delete = AdminDeleteRoomRequest {
        admin: req.user.user_id,
        room_id: b.room_id.to_string(),
        block: b.block,
        purge: b.purge.unwrap_or(true),
        force_purge: b.force_purge,
        new_room_user_id: b.new_room_user_id,
        room_name: b.room_name,
        message: b.message,
        wait: false,
    };
    Ok(api::delete_room_v2::Response { delete_id: s.services.rooms.admin_delete_room(delete).await?.delete_id })
}

/// # `DELETE /_synapse/admin/v1/rooms/{roomId}`: the same deletion, answered once done.
async fn delete_v1_route(
    s: AppState,
    req: Ruma<api::delete_room_v1::Request, ServerAdmin>,
) -> ApiResult<api::delete_room_v1::Response> {
    let b = req.body;
    let delete = AdminDeleteRoomRequest {
        admin: req.user.user_id,
        room_id: b.room_id.to_string(),
        block: b.block,
        purge: b.purge.unwrap_or(true),
        force_purge: b.force_purge,
        new_room_user_id: b.new_room_user_id,
        room_name: b.room_name,
        message: b.message,
        wait: true,
    };
    let done = s.services.rooms.admin_delete_room(delete).await?;
    Ok(api::delete_room_v1::Response {
        kicked_users: done.kicked_users,
        failed_to_kick_users: done.failed_to_kick_users,
        local_aliases: done.local_aliases,
        new_room_id: done.new_room_id,
    })
}

fn status(d: AdminDeletion, with_id: bool) -> DeleteStatus {
    DeleteStatus {
        delete_id: with_id.then_some(d.delete_id),
        status: d.status,
        error: d.error,
        shutdown_room: ShutdownRoom {
            kicked_users: d.kicked_users,
            failed_to_kick_users: d.failed_to_kick_users,
            local_aliases: d.local_aliases,
            new_room_id: d.new_room_id,
        },
    }
}

/// # `GET /_synapse/admin/v2/rooms/{roomId}/delete_status`
async fn room_delete_status_route(
    s: AppState,
    req: Ruma<api::room_delete_status::Request, ServerAdmin>,
) -> ApiResult<api::room_delete_status::Response> {
    let ask = AdminDeleteStatusRequest { delete_id: None, room_id: Some(req.body.room_id.to_string()) };
    let found = s.services.rooms.admin_delete_status(ask).await?;
    Ok(api::room_delete_status::Response { results: found.deletions.into_iter().map(|d| status(d, true)).collect() })
}

/// # `GET /_synapse/admin/v2/rooms/delete_status/{deleteId}`
async fn delete_status_route(
    s: AppState,
    req: Ruma<api::delete_status::Request, ServerAdmin>,
) -> ApiResult<api::delete_status::Response> {
    let ask = AdminDeleteStatusRequest { delete_id: Some(req.body.delete_id), room_id: None };
    let found = s.services.rooms.admin_delete_status(ask).await?;
    let d = found.deletions.into_iter().next().ok_or_else(|| Error::not_found("No deletion with this ID"))?;
    Ok(api::delete_status::Response { status: status(d, false) })
}
