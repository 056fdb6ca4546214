//! The pre-r0 API of the oldest tutorials: `/initialSync`, `/events` and
//! `/rooms/{roomId}/initialSync` (the `/_matrix/client/api/v1` prefix is mapped onto r0 by
//! the edge). ruma has no types for it, so these are axum handlers reading the query as
//! Synapse reads it; the README's curl tutorial and SyTest's `tests/90jira` and
//! `tests/30rooms/*initialsync*` files use them.

use axum::{
    Router,
    extract::{RawPathParams, State},
    http::Uri,
    routing::get,
};
use serde::Deserialize;
use trellis_core::Error;
use trellis_proto::sync::{EventsRequest, InitialSyncRequest, RoomInitialSyncRequest};

use super::{param, query};
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::Authed,
    response::Rendered,
};

/// The pre-r0 answers, rendered by the sync service: ruma has no types for this API.
type Snapshot = Rendered<serde_json::Value>;

const PREFIXES: &[&str] = &["/_matrix/client/r0", "/_matrix/client/v3"];

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for prefix in PREFIXES {
        router = router
            .route(&format!("{prefix}/initialSync"), get(initial_sync_route))
            .route(&format!("{prefix}/events"), get(events_route))
            .route(&format!("{prefix}/rooms/{{room_id}}/initialSync"), get(room_initial_sync_route));
    }
    router
}

#[derive(Deserialize, Default)]
struct InitialSyncQuery {
    limit: Option<String>,
    archived: Option<String>,
}

/// A non-negative number, else `M_INVALID_PARAM` (an empty value counts as absent).
fn number(v: Option<&str>, what: &str) -> Result<Option<u64>, ApiError> {
    match v {
        None | Some("") => Ok(None),
        Some(n) => n.parse().map(Some).map_err(|_| ApiError(Error::invalid_param(format!("{what} must be a number")))),
    }
}

/// A `limit` parameter: a count of events (`M_INVALID_PARAM` if negative or not a number).
fn limit(v: Option<&str>) -> Result<Option<u32>, ApiError> {
    Ok(number(v, "limit")?.map(|n| n.min(u64::from(u32::MAX)) as u32))
}

/// # `GET /_matrix/client/r0/initialSync`
async fn initial_sync_route(State(s): State<AppState>, auth: Authed, uri: Uri) -> ApiResult<Snapshot> {
    let q: InitialSyncQuery = query(&uri)?;
    let req = InitialSyncRequest {
        user_id: auth.user_id,
        device_id: auth.device_id,
        limit: limit(q.limit.as_deref())?,
        archived: q.archived.as_deref() == Some("true"),
    };
    Ok(Rendered::new(s.services.sync.initial_sync(req).await?.body_json))
}

#[derive(Deserialize, Default)]
struct EventsQuery {
    from: Option<String>,
    timeout: Option<String>,
    limit: Option<String>,
    room_id: Option<String>,
}

/// # `GET /_matrix/client/r0/events`
async fn events_route(State(s): State<AppState>, auth: Authed, uri: Uri) -> ApiResult<Snapshot> {
    let q: EventsQuery = query(&uri)?;
    let req = EventsRequest {
        user_id: auth.user_id,
        device_id: auth.device_id,
        from: q.from,
        timeout_ms: number(q.timeout.as_deref(), "timeout")?.unwrap_or(0),
        limit: limit(q.limit.as_deref())?,
        room_id: q.room_id,
        is_guest: auth.is_guest,
    };
    Ok(Rendered::new(s.services.sync.events(req).await?.body_json))
}

#[derive(Deserialize, Default)]
struct RoomInitialSyncQuery {
    limit: Option<String>,
}

/// # `GET /_matrix/client/r0/rooms/{roomId}/initialSync`
async fn room_initial_sync_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    uri: Uri,
) -> ApiResult<Snapshot> {
    let q: RoomInitialSyncQuery = query(&uri)?;
    let req = RoomInitialSyncRequest {
        user_id: auth.user_id,
        device_id: auth.device_id,
        room_id: param(&params, "room_id")?,
        limit: limit(q.limit.as_deref())?,
    };
    Ok(Rendered::new(s.services.sync.room_initial_sync(req).await?.body_json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_counts() {
        let ok = |v| limit(v).ok().expect("a valid limit");
        assert_eq!(ok(None), None);
        assert_eq!(ok(Some("")), None);
        assert_eq!(ok(Some("0")), Some(0));
        assert_eq!(ok(Some("5")), Some(5));
        for bad in ["-2", "hello", "1.5"] {
            let err = limit(Some(bad)).expect_err("refused");
            assert_eq!((err.0.code(), err.0.status()), (trellis_core::ErrorCode::InvalidParam, 400), "{bad}");
        }
    }
}
