//! Membership: join (by ID or alias), knock, invite, leave, kick, ban, unban, forget; the
//! user's joined rooms, a room's members, and the rooms shared with another user.

use std::collections::BTreeMap;

use axum::{Json, Router, extract::State};
use ruma::{
    OwnedRoomId, RoomId,
    api::client::{
        knock::knock_room,
        membership::{
            ban_user, forget_room, get_member_events, get_mutual_rooms, invite_user, join_room_by_id,
            join_room_by_id_or_alias, joined_members, joined_rooms, kick_user, leave_room, unban_user,
        },
    },
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use trellis_core::{Error, ratelimit::Action};
use trellis_proto::rooms::{
    ForgetRequest, GetMembersRequest, JoinedMembersRequest, JoinedRoomsRequest, MembershipAction, MembershipRequest,
    MutualRoomsRequest,
};

use super::raw_events;
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::{Authed, Ruma, RumaWithBody},
    response::RumaResult,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<join_room_by_id_or_alias::v3::Request, _, _>(join_route)
        .ruma::<join_room_by_id::v3::Request, _, _>(join_by_id_route)
        .ruma::<knock_room::v3::Request, _, _>(knock_route)
        .ruma::<invite_user::v3::Request, _, _>(invite_route)
        .ruma::<leave_room::v3::Request, _, _>(leave_route)
        .ruma::<kick_user::v3::Request, _, _>(kick_route)
        .ruma::<ban_user::v3::Request, _, _>(ban_route)
        .ruma::<unban_user::v3::Request, _, _>(unban_route)
        .ruma::<forget_room::v3::Request, _, _>(forget_route)
        .ruma::<joined_rooms::v3::Request, _, _>(joined_rooms_route)
        .ruma::<get_member_events::v3::Request, _, _>(members_route)
        .ruma::<joined_members::v3::Request, _, _>(joined_members_route)
        .ruma::<get_mutual_rooms::v1::Request, _, _>(mutual_rooms_route)
        .ruma::<get_mutual_rooms::unstable::Request, _, _>(mutual_rooms_unstable_route)
}

/// One membership change; answers with the room ID.
async fn change(
    s: &AppState,
    sender: String,
    room: String,
    action: MembershipAction,
    target: Option<String>,
    reason: Option<String>,
) -> ApiResult<String> {
    change_with(s, MembershipRequest { sender, room, action: action as i32, target, reason, content_json: None }).await
}

/// One membership change as a whole request (a join may carry custom content).
async fn change_with(s: &AppState, req: MembershipRequest) -> ApiResult<String> {
    let (action, sender) = (MembershipAction::try_from(req.action).unwrap_or_default(), req.sender.clone());
    match action {
        MembershipAction::Join | MembershipAction::Knock => s.limit(Action::Join, &sender).await?,
        MembershipAction::Invite => s.limit(Action::Invite, &sender).await?,
        _ => {}
    }
    Ok(s.services.rooms.change_membership(req).await?.room_id)
}

/// # `POST /_matrix/client/v3/join/{roomIdOrAlias}`
async fn join_route(
    State(s): State<AppState>,
    auth: Authed,
    RumaWithBody(req, body): RumaWithBody<join_room_by_id_or_alias::v3::Request>,
) -> RumaResult<join_room_by_id_or_alias::v3::Response> {
    // `via`/`server_name` only matter over federation; local rooms need no hint.
    let room_id = join(&s, auth.user_id, req.room_id_or_alias.to_string(), req.reason, body).await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id).into())
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/join`
async fn join_by_id_route(
    State(s): State<AppState>,
    auth: Authed,
    RumaWithBody(req, body): RumaWithBody<join_room_by_id::v3::Request>,
) -> RumaResult<join_room_by_id::v3::Response> {
    let room_id = join(&s, auth.user_id, req.room_id.to_string(), req.reason, body).await?;
    Ok(join_room_by_id::v3::Response::new(room_id).into())
}

/// A join; the body's other keys become member content, as Synapse keeps them.
async fn join(
    s: &AppState,
    sender: String,
    room: String,
    reason: Option<String>,
    body: Map<String, Value>,
) -> ApiResult<OwnedRoomId> {
    let content_json = Some(Value::Object(body).to_string());
    let action = MembershipAction::Join as i32;
    let room_id =
        change_with(s, MembershipRequest { sender, room, action, target: None, reason, content_json }).await?;
    Ok(RoomId::parse(room_id)?)
}

/// # `POST /_matrix/client/v3/knock/{roomIdOrAlias}`
async fn knock_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<knock_room::v3::Request>,
) -> ApiResult<Json<Value>> {
    let room_id =
        change(&s, auth.user_id, req.room_id_or_alias.to_string(), MembershipAction::Knock, None, req.reason).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/invite`
async fn invite_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<invite_user::v3::Request>,
) -> ApiResult<Json<Value>> {
    let invite_user::v3::InvitationRecipient::UserId(invitee) = req.recipient else {
        return Err(ApiError(Error::unrecognized("Third-party invites are not supported").with_status(400)));
    };
    let target = Some(invitee.user_id.to_string());
    change(&s, auth.user_id, req.room_id.to_string(), MembershipAction::Invite, target, invitee.reason).await?;
    Ok(Json(json!({})))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/leave`
async fn leave_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<leave_room::v3::Request>,
) -> ApiResult<Json<Value>> {
    change(&s, auth.user_id, req.room_id.to_string(), MembershipAction::Leave, None, req.reason).await?;
    Ok(Json(json!({})))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/kick`
async fn kick_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<kick_user::v3::Request>,
) -> ApiResult<Json<Value>> {
    let target = Some(req.user_id.to_string());
    change(&s, auth.user_id, req.room_id.to_string(), MembershipAction::Kick, target, req.reason).await?;
    Ok(Json(json!({})))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/ban`
async fn ban_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<ban_user::v3::Request>,
) -> ApiResult<Json<Value>> {
    let target = Some(req.user_id.to_string());
    change(&s, auth.user_id, req.room_id.to_string(), MembershipAction::Ban, target, req.reason).await?;
    Ok(Json(json!({})))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/unban`
async fn unban_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<unban_user::v3::Request>,
) -> ApiResult<Json<Value>> {
    let target = Some(req.user_id.to_string());
    change(&s, auth.user_id, req.room_id.to_string(), MembershipAction::Unban, target, req.reason).await?;
    Ok(Json(json!({})))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/forget`
async fn forget_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<forget_room::v3::Request>,
) -> ApiResult<Json<Value>> {
    s.services.rooms.forget(ForgetRequest { user_id: auth.user_id, room_id: req.room_id.to_string() }).await?;
    Ok(Json(json!({})))
}

/// # `GET /_matrix/client/v3/joined_rooms`
async fn joined_rooms_route(State(s): State<AppState>, auth: Authed) -> ApiResult<Json<Value>> {
    let resp = s.services.rooms.joined_rooms(JoinedRoomsRequest { user_id: auth.user_id }).await?;
    Ok(Json(json!({ "joined_rooms": resp.room_ids })))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/members`
async fn members_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_member_events::v3::Request>,
) -> ApiResult<Json<Value>> {
    let resp = s
        .services
        .rooms
        .get_members(GetMembersRequest {
            user_id: auth.user_id,
            room_id: req.room_id.to_string(),
            at: req.at,
            membership: req.membership.map(|m| m.as_str().to_owned()),
            not_membership: req.not_membership.map(|m| m.as_str().to_owned()),
        })
        .await?;
    Ok(Json(json!({ "chunk": raw_events(resp.events_json)? })))
}

/// `joined_members` as Synapse answers it. ruma's `RoomMember` leaves out an unset name or
/// avatar; Synapse always sends both keys (null when unset), and SyTest and older clients
/// read them as keys.
#[derive(Serialize)]
struct JoinedMembers {
    joined: BTreeMap<String, JoinedMember>,
}

#[derive(Serialize)]
struct JoinedMember {
    display_name: Option<String>,
    avatar_url: Option<String>,
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
async fn joined_members_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<joined_members::v3::Request>,
) -> ApiResult<Json<JoinedMembers>> {
    let resp = s
        .services
        .rooms
        .joined_members(JoinedMembersRequest { user_id: auth.user_id, room_id: req.room_id.to_string() })
        .await?;
    let joined = resp
        .members
        .into_iter()
        .map(|m| (m.user_id, JoinedMember { display_name: m.display_name, avatar_url: m.avatar_url }))
        .collect();
    Ok(Json(JoinedMembers { joined }))
}

/// # `GET /_matrix/client/v1/mutual_rooms`
async fn mutual_rooms_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_mutual_rooms::v1::Request>,
) -> RumaResult<get_mutual_rooms::v1::Response> {
    let (count, joined, next_batch) = mutual(&s, auth, req.user_id.to_string(), req.from).await?;
    let mut out = get_mutual_rooms::v1::Response::new(count, joined);
    out.next_batch = next_batch;
    Ok(out.into())
}

/// # `GET /_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms`
async fn mutual_rooms_unstable_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_mutual_rooms::unstable::Request>,
) -> RumaResult<get_mutual_rooms::unstable::Response> {
    let (_, joined, next_batch) = mutual(&s, auth, req.user_id.to_string(), req.from).await?;
    let mut out = get_mutual_rooms::unstable::Response::new(joined);
    out.next_batch = next_batch;
    Ok(out.into())
}

async fn mutual(
    s: &AppState,
    auth: Authed,
    other_user_id: String,
    from: Option<String>,
) -> ApiResult<(ruma::UInt, Vec<OwnedRoomId>, Option<String>)> {
    let resp = s.services.rooms.mutual_rooms(MutualRoomsRequest { user_id: auth.user_id, other_user_id, from }).await?;
    let joined = resp.room_ids.into_iter().map(super::stored_id).collect::<ApiResult<_>>()?;
    Ok((ruma::UInt::try_from(resp.count).unwrap_or(ruma::UInt::MAX), joined, resp.next_batch))
}
