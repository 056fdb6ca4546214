//! Membership: join (by ID or alias), knock, invite, leave, kick, ban, unban, forget; the
//! user's joined rooms, a room's members, and the rooms shared with another user.

use std::collections::BTreeMap;

use axum::Router;
use ruma::{
    OwnedRoomId,
    api::client::{
        knock::knock_room,
        membership::{
            ban_user, forget_room, get_member_events, get_mutual_rooms, invite_user, join_room_by_id,
            join_room_by_id_or_alias, joined_members, joined_rooms, kick_user, leave_room, unban_user,
        },
    },
};
use serde::Serialize;
use trellis_core::{Error, ratelimit::Action};
use trellis_proto::rooms::{
    ForgetRequest, GetMembersRequest, JoinedMembersRequest, JoinedRoomsRequest, MembershipAction, MembershipRequest,
    MutualRoomsRequest,
};

use super::{raw_list, stored_id, uint};
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::{Authed, Ruma},
    response::Rendered,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(join_room_by_id_or_alias_route)
        .ruma(join_room_by_id_route)
        .ruma(knock_room_route)
        .ruma(invite_user_route)
        .ruma(leave_room_route)
        .ruma(kick_user_route)
        .ruma(ban_user_route)
        .ruma(unban_user_route)
        .ruma(forget_room_route)
        .ruma(joined_rooms_route)
        .ruma(get_member_events_route)
        .ruma(joined_members_route)
        .ruma(get_mutual_rooms_route)
        .ruma(get_mutual_rooms_unstable_route)
}

/// One membership change; answers with the room ID (joins, knocks and invites are rate
/// limited by their callers, which know the user's override).
async fn change(
    s: &AppState,
    sender: String,
    room: String,
    action: MembershipAction,
    target: Option<String>,
    reason: Option<String>,
    content_json: Option<String>,
) -> ApiResult<OwnedRoomId> {
    let req = MembershipRequest { sender, room, action: action as i32, target, reason, content_json };
    stored_id(s.services.rooms.change_membership(req).await?.room_id)
}

/// A join; the body's other keys become member content, as Synapse keeps them (ruma's
/// request type does not model them, so they are read from the body as sent).
async fn join(
    s: &AppState,
    body: serde_json::Map<String, serde_json::Value>,
    user: &Authed,
    room: String,
    reason: Option<String>,
) -> ApiResult<OwnedRoomId> {
    s.limit_user(Action::Join, user).await?;
    let content_json = Some(serde_json::Value::Object(body).to_string());
    change(s, user.user_id.clone(), room, MembershipAction::Join, None, reason, content_json).await
}

/// # `POST /_matrix/client/v3/join/{roomIdOrAlias}`
async fn join_room_by_id_or_alias_route(
    s: AppState,
    req: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> ApiResult<join_room_by_id_or_alias::v3::Response> {
    req.user.not_suspended()?;
    // `via`/`server_name` only matter over federation; local rooms need no hint.
    let (room, reason) = (req.body.room_id_or_alias.to_string(), req.body.reason.clone());
    let room_id = join(&s, req.json_object()?, &req.user, room, reason).await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/join`
async fn join_room_by_id_route(
    s: AppState,
    req: Ruma<join_room_by_id::v3::Request>,
) -> ApiResult<join_room_by_id::v3::Response> {
    req.user.not_suspended()?;
    let (room, reason) = (req.body.room_id.to_string(), req.body.reason.clone());
    let room_id = join(&s, req.json_object()?, &req.user, room, reason).await?;
    Ok(join_room_by_id::v3::Response::new(room_id))
}

/// # `POST /_matrix/client/v3/knock/{roomIdOrAlias}`
async fn knock_room_route(s: AppState, req: Ruma<knock_room::v3::Request>) -> ApiResult<knock_room::v3::Response> {
    req.user.not_suspended()?;
    s.limit_user(Action::Join, &req.user).await?;
    let (sender, room) = (req.user.user_id, req.body.room_id_or_alias.to_string());
    let room_id = change(&s, sender, room, MembershipAction::Knock, None, req.body.reason, None).await?;
    Ok(knock_room::v3::Response::new(room_id))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/invite`
async fn invite_user_route(s: AppState, req: Ruma<invite_user::v3::Request>) -> ApiResult<invite_user::v3::Response> {
    req.user.not_suspended()?;
    s.limit_user(Action::Invite, &req.user).await?;
    // Shadow-banned: the invite seems to go out and goes nowhere.
    let shadow_banned = req.user.shadow_banned;
    let (invitee, reason) = match req.body.recipient {
        invite_user::v3::InvitationRecipient::UserId(invitee) => (invitee.user_id.to_string(), invitee.reason),
        // A 3PID: the user the identity server has it bound to is invited; if nobody has
        // bound it, the invite waits in the room for whoever binds it.
        invite_user::v3::InvitationRecipient::ThirdPartyId(threepid) => {
            match super::threepid::invitee(&s, &threepid).await? {
                Some(user_id) => (user_id, None),
                None if shadow_banned => return Ok(invite_user::v3::Response::new()),
                None => {
                    let room = req.body.room_id.as_str();
                    super::threepid_invite::invite_unbound(&s, &req.user.user_id, room, &threepid).await?;
                    return Ok(invite_user::v3::Response::new());
                }
            }
        }
        _ => return Err(ApiError(Error::bad_json("Unknown invitation recipient"))),
    };
    if shadow_banned {
        return Ok(invite_user::v3::Response::new());
    }
    let (sender, room, target) = (req.user.user_id, req.body.room_id.to_string(), Some(invitee));
    change(&s, sender, room, MembershipAction::Invite, target, reason, None).await?;
    Ok(invite_user::v3::Response::new())
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/leave`
async fn leave_room_route(s: AppState, req: Ruma<leave_room::v3::Request>) -> ApiResult<leave_room::v3::Response> {
    let (sender, room) = (req.user.user_id, req.body.room_id.to_string());
    change(&s, sender, room, MembershipAction::Leave, None, req.body.reason, None).await?;
    Ok(leave_room::v3::Response::new())
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/kick`
async fn kick_user_route(s: AppState, req: Ruma<kick_user::v3::Request>) -> ApiResult<kick_user::v3::Response> {
    let (sender, room, target) = (req.user.user_id, req.body.room_id.to_string(), Some(req.body.user_id.to_string()));
    change(&s, sender, room, MembershipAction::Kick, target, req.body.reason, None).await?;
    Ok(kick_user::v3::Response::new())
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/ban`
async fn ban_user_route(s: AppState, req: Ruma<ban_user::v3::Request>) -> ApiResult<ban_user::v3::Response> {
    let (sender, room, target) = (req.user.user_id, req.body.room_id.to_string(), Some(req.body.user_id.to_string()));
    change(&s, sender, room, MembershipAction::Ban, target, req.body.reason, None).await?;
    Ok(ban_user::v3::Response::new())
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/unban`
async fn unban_user_route(s: AppState, req: Ruma<unban_user::v3::Request>) -> ApiResult<unban_user::v3::Response> {
    let (sender, room, target) = (req.user.user_id, req.body.room_id.to_string(), Some(req.body.user_id.to_string()));
    change(&s, sender, room, MembershipAction::Unban, target, req.body.reason, None).await?;
    Ok(unban_user::v3::Response::new())
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/forget`
async fn forget_room_route(s: AppState, req: Ruma<forget_room::v3::Request>) -> ApiResult<forget_room::v3::Response> {
    s.services.rooms.forget(ForgetRequest { user_id: req.user.user_id, room_id: req.body.room_id.to_string() }).await?;
    Ok(forget_room::v3::Response::new())
}

/// # `GET /_matrix/client/v3/joined_rooms`
async fn joined_rooms_route(
    s: AppState,
    req: Ruma<joined_rooms::v3::Request>,
) -> ApiResult<joined_rooms::v3::Response> {
    let resp = s.services.rooms.joined_rooms(JoinedRoomsRequest { user_id: req.user.user_id }).await?;
    Ok(joined_rooms::v3::Response::new(resp.room_ids.into_iter().map(stored_id).collect::<ApiResult<_>>()?))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/members`
async fn get_member_events_route(
    s: AppState,
    req: Ruma<get_member_events::v3::Request>,
) -> ApiResult<get_member_events::v3::Response> {
    let (user_id, req) = (req.user.user_id, req.body);
    let resp = s
        .services
        .rooms
        .get_members(GetMembersRequest {
            user_id,
            room_id: req.room_id.to_string(),
            at: req.at,
            membership: req.membership.map(|m| m.as_str().to_owned()),
            not_membership: req.not_membership.map(|m| m.as_str().to_owned()),
        })
        .await?;
    Ok(get_member_events::v3::Response::new(raw_list(resp.events_json)?))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
///
/// Synapse's shape: ruma's `RoomMember` leaves out an unset name or avatar; Synapse always
/// sends both keys (null when unset), and SyTest and older clients read them as keys.
async fn joined_members_route(
    s: AppState,
    req: Ruma<joined_members::v3::Request>,
) -> ApiResult<Rendered<joined_members::v3::Response>> {
    #[derive(Serialize)]
    struct JoinedMember {
        display_name: Option<String>,
        avatar_url: Option<String>,
    }
    #[derive(Serialize)]
    struct JoinedMembers {
        joined: BTreeMap<String, JoinedMember>,
    }
    let ask = JoinedMembersRequest { user_id: req.user.user_id, room_id: req.body.room_id.to_string() };
    let resp = s.services.rooms.joined_members(ask).await?;
    let joined = resp
        .members
        .into_iter()
        .map(|m| (m.user_id, JoinedMember { display_name: m.display_name, avatar_url: m.avatar_url }))
        .collect();
    Rendered::shaped(&JoinedMembers { joined })
}

/// # `GET /_matrix/client/v1/mutual_rooms`
async fn get_mutual_rooms_route(
    s: AppState,
    req: Ruma<get_mutual_rooms::v1::Request>,
) -> ApiResult<get_mutual_rooms::v1::Response> {
    let (count, joined, next_batch) = mutual(&s, req.user.user_id, req.body.user_id.to_string(), req.body.from).await?;
    let mut out = get_mutual_rooms::v1::Response::new(count, joined);
    out.next_batch = next_batch;
    Ok(out)
}

/// # `GET /_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms`
async fn get_mutual_rooms_unstable_route(
    s: AppState,
    req: Ruma<get_mutual_rooms::unstable::Request>,
) -> ApiResult<get_mutual_rooms::unstable::Response> {
    let (_, joined, next_batch) = mutual(&s, req.user.user_id, req.body.user_id.to_string(), req.body.from).await?;
    let mut out = get_mutual_rooms::unstable::Response::new(joined);
    out.next_batch = next_batch;
    Ok(out)
}

async fn mutual(
    s: &AppState,
    user_id: String,
    other_user_id: String,
    from: Option<String>,
) -> ApiResult<(ruma::UInt, Vec<OwnedRoomId>, Option<String>)> {
    let resp = s.services.rooms.mutual_rooms(MutualRoomsRequest { user_id, other_user_id, from }).await?;
    let joined = resp.room_ids.into_iter().map(stored_id).collect::<ApiResult<_>>()?;
    Ok((uint(resp.count), joined, resp.next_batch))
}
