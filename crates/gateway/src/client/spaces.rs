//! Spaces and room previews: `GET /v1/rooms/{roomId}/hierarchy` and
//! `GET /v1/room_summary/{roomIdOrAlias}` (MSC3266, also on its unstable path), answered
//! with ruma's response types.

use axum::Router;
use ruma::{
    RoomVersionId, UInt,
    api::client::{
        room::get_summary,
        space::{SpaceHierarchyRoomsChunk, get_hierarchy},
    },
    events::room::member::MembershipState,
    room::{JoinRuleSummary, RestrictedSummary, RoomSummary},
    serde::Raw,
};
use serde_json::value::RawValue;
use trellis_core::Error;
use trellis_proto::rooms::{self as pb, HierarchyRequest, RoomSummaryRequest};

use super::stored_id;
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::Ruma,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(get_hierarchy_route).ruma(get_summary_route)
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`
async fn get_hierarchy_route(
    s: AppState,
    req: Ruma<get_hierarchy::v1::Request>,
) -> ApiResult<get_hierarchy::v1::Response> {
    let (auth, req) = (req.user, req.body);
    let small = |n: Option<UInt>| n.map(|n| u32::try_from(u64::from(n)).unwrap_or(u32::MAX));
    let resp = s
        .services
        .rooms
        .get_hierarchy(HierarchyRequest {
            user_id: auth.user_id,
            room_id: req.room_id.to_string(),
            from: req.from,
            limit: small(req.limit),
            max_depth: small(req.max_depth),
            suggested_only: req.suggested_only,
        })
        .await?;
    let mut out = get_hierarchy::v1::Response::new();
    out.next_batch = resp.next_batch;
    for room in resp.rooms {
        let summary = summary(room.summary.ok_or_else(|| Error::internal("hierarchy room without summary"))?)?;
        let children = room
            .children_state_json
            .into_iter()
            .map(|c| Ok(Raw::from_json(RawValue::from_string(c)?)))
            .collect::<ApiResult<_>>()?;
        out.rooms.push(SpaceHierarchyRoomsChunk::new(summary, children));
    }
    Ok(out)
}

/// # `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`
async fn get_summary_route(s: AppState, req: Ruma<get_summary::v1::Request>) -> ApiResult<get_summary::v1::Response> {
    let (auth, req) = (req.user, req.body);
    // `via` only matters over federation.
    let resp = s
        .services
        .rooms
        .get_room_summary(RoomSummaryRequest {
            user_id: auth.map(|a| a.user_id),
            room: req.room_id_or_alias.to_string(),
        })
        .await?;
    let mut out = get_summary::v1::Response::new(summary(
        resp.summary.ok_or_else(|| Error::internal("room summary without summary"))?,
    )?);
    out.membership = resp.membership.map(|m| MembershipState::from(m.as_str()));
    Ok(out)
}

/// The service's summary as ruma's.
fn summary(s: pb::RoomSummary) -> Result<RoomSummary, ApiError> {
    let allowed = || -> Result<Vec<_>, ApiError> { s.allowed_room_ids.iter().cloned().map(stored_id).collect() };
    let join_rule = match s.join_rule.as_str() {
        "public" => JoinRuleSummary::Public,
        "knock" => JoinRuleSummary::Knock,
        "private" => JoinRuleSummary::Private,
        "restricted" => JoinRuleSummary::Restricted(RestrictedSummary::new(allowed()?)),
        "knock_restricted" => JoinRuleSummary::KnockRestricted(RestrictedSummary::new(allowed()?)),
        // `invite`, and rules the spec does not know (joinable only by invite).
        _ => JoinRuleSummary::Invite,
    };
    let members = UInt::try_from(s.num_joined_members).unwrap_or(UInt::MAX);
    let mut out = RoomSummary::new(stored_id(s.room_id)?, join_rule, s.guest_can_join, members, s.world_readable);
    // State written by clients: a malformed alias or avatar is left out rather than failing.
    out.canonical_alias = s.canonical_alias.and_then(|a| a.try_into().ok());
    out.avatar_url = s.avatar_url.map(Into::into);
    out.name = s.name;
    out.topic = s.topic;
    out.room_type = s.room_type.map(Into::into);
    out.encryption = s.encryption.map(Into::into);
    out.room_version = RoomVersionId::try_from(s.room_version).ok();
    Ok(out)
}
