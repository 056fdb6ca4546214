//! Relations and threads: `/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`
//! and `/v1/rooms/{roomId}/threads`.

use axum::Router;
use ruma::{
    UInt,
    api::{
        Direction,
        client::{
            relations::{
                get_relating_events, get_relating_events_with_rel_type,
                get_relating_events_with_rel_type_and_event_type,
            },
            threads::get_threads,
        },
    },
};
use trellis_proto::rooms::{GetRelationsRequest, GetRelationsResponse, GetThreadsRequest};

use super::raw_list;
use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(get_relating_events_route)
        .ruma(get_relating_events_with_rel_type_route)
        .ruma(get_relating_events_with_rel_type_and_event_type_route)
        .ruma(get_threads_route)
}

fn limit(l: Option<UInt>) -> u32 {
    l.map_or(0, |l| u64::from(l).min(u64::from(u32::MAX)) as u32)
}

/// The service request of the three relations endpoints, whose ruma types share these fields.
macro_rules! relations_request {
    ($req:expr) => {
        GetRelationsRequest {
            user_id: $req.user.user_id.clone(),
            device_id: $req.user.device_id.clone(),
            room_id: $req.body.room_id.to_string(),
            event_id: $req.body.event_id.to_string(),
            from: $req.body.from.clone(),
            to: $req.body.to.clone(),
            limit: limit($req.body.limit),
            forwards: $req.body.dir == Direction::Forward,
            recurse: $req.body.recurse,
            ..Default::default()
        }
    };
}

/// The three relations endpoints answer alike (ruma has one response type per endpoint).
macro_rules! relations_response {
    ($endpoint:ident, $resp:expr) => {{
        let resp: GetRelationsResponse = $resp;
        let mut out = $endpoint::v1::Response::new(raw_list(resp.chunk_json)?);
        out.next_batch = resp.next_batch;
        out.prev_batch = resp.prev_batch;
        out.recursion_depth = resp.recursion_depth.map(UInt::from);
        Ok(out)
    }};
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}`
async fn get_relating_events_route(
    s: AppState,
    req: Ruma<get_relating_events::v1::Request>,
) -> ApiResult<get_relating_events::v1::Response> {
    relations_response!(get_relating_events, s.services.rooms.get_relations(relations_request!(req)).await?)
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}`
async fn get_relating_events_with_rel_type_route(
    s: AppState,
    req: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> ApiResult<get_relating_events_with_rel_type::v1::Response> {
    let ask = GetRelationsRequest { rel_type: Some(req.body.rel_type.to_string()), ..relations_request!(req) };
    relations_response!(get_relating_events_with_rel_type, s.services.rooms.get_relations(ask).await?)
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`
async fn get_relating_events_with_rel_type_and_event_type_route(
    s: AppState,
    req: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> ApiResult<get_relating_events_with_rel_type_and_event_type::v1::Response> {
    let (rel_type, event_type) = (Some(req.body.rel_type.to_string()), Some(req.body.event_type.to_string()));
    let ask = GetRelationsRequest { rel_type, event_type, ..relations_request!(req) };
    relations_response!(get_relating_events_with_rel_type_and_event_type, s.services.rooms.get_relations(ask).await?)
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/threads`
async fn get_threads_route(s: AppState, req: Ruma<get_threads::v1::Request>) -> ApiResult<get_threads::v1::Response> {
    let (auth, req) = (req.user, req.body);
    let resp = s
        .services
        .rooms
        .get_threads(GetThreadsRequest {
            user_id: auth.user_id,
            device_id: auth.device_id,
            room_id: req.room_id.to_string(),
            participated: req.include == get_threads::v1::IncludeThreads::Participated,
            limit: limit(req.limit),
            from: req.from,
        })
        .await?;
    let mut out = get_threads::v1::Response::new(raw_list(resp.chunk_json)?);
    out.next_batch = resp.next_batch;
    Ok(out)
}
