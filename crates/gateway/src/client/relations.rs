//! Relations and threads: `/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`
//! and `/v1/rooms/{roomId}/threads`.

use axum::{Json, Router, extract::State};
use ruma::api::{
    Direction,
    client::{
        relations::{
            get_relating_events, get_relating_events_with_rel_type, get_relating_events_with_rel_type_and_event_type,
        },
        threads::get_threads,
    },
};
use serde_json::{Value, json};
use trellis_proto::rooms::{GetRelationsRequest, GetThreadsRequest};

use super::raw_events;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, Ruma},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<get_relating_events::v1::Request, _, _>(relations_route)
        .ruma::<get_relating_events_with_rel_type::v1::Request, _, _>(relations_by_type_route)
        .ruma::<get_relating_events_with_rel_type_and_event_type::v1::Request, _, _>(relations_by_event_type_route)
        .ruma::<get_threads::v1::Request, _, _>(threads_route)
}

fn limit(l: Option<ruma::UInt>) -> u32 {
    l.map_or(0, |l| u64::from(l).min(u64::from(u32::MAX)) as u32)
}

/// The service request of the three relations endpoints, whose ruma types share these fields.
macro_rules! relations_request {
    ($auth:expr, $req:expr) => {
        GetRelationsRequest {
            user_id: $auth.user_id,
            device_id: $auth.device_id,
            room_id: $req.room_id.to_string(),
            event_id: $req.event_id.to_string(),
            from: $req.from,
            to: $req.to,
            limit: limit($req.limit),
            forwards: $req.dir == Direction::Forward,
            recurse: $req.recurse,
            ..Default::default()
        }
    };
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}`
async fn relations_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_relating_events::v1::Request>,
) -> ApiResult<Json<Value>> {
    relations(&s, relations_request!(auth, req)).await
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}`
async fn relations_by_type_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> ApiResult<Json<Value>> {
    let rel_type = Some(req.rel_type.to_string());
    relations(&s, GetRelationsRequest { rel_type, ..relations_request!(auth, req) }).await
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`
async fn relations_by_event_type_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> ApiResult<Json<Value>> {
    let (rel_type, event_type) = (Some(req.rel_type.to_string()), Some(req.event_type.to_string()));
    relations(&s, GetRelationsRequest { rel_type, event_type, ..relations_request!(auth, req) }).await
}

async fn relations(s: &AppState, req: GetRelationsRequest) -> ApiResult<Json<Value>> {
    let resp = s.services.rooms.get_relations(req).await?;
    let mut out = json!({ "chunk": raw_events(resp.chunk_json)? });
    if let Some(next) = resp.next_batch {
        out["next_batch"] = json!(next);
    }
    if let Some(prev) = resp.prev_batch {
        out["prev_batch"] = json!(prev);
    }
    if let Some(depth) = resp.recursion_depth {
        out["recursion_depth"] = json!(depth);
    }
    Ok(Json(out))
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/threads`
async fn threads_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_threads::v1::Request>,
) -> ApiResult<Json<Value>> {
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
    let mut out = json!({ "chunk": raw_events(resp.chunk_json)? });
    if let Some(next) = resp.next_batch {
        out["next_batch"] = json!(next);
    }
    Ok(Json(out))
}
