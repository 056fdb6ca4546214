//! `/sync` and stored filters. The sync worker renders the whole body; the gateway passes
//! it through untouched (megabytes on an initial sync: it is never parsed here).

use axum::{Router, extract::State, http::Uri};
use ruma::api::client::{
    filter::{create_filter, get_filter},
    sync::sync_events,
};
use serde::Deserialize;
use trellis_core::Error;
use trellis_proto::sync::{CreateFilterRequest, GetFilterRequest, SyncRequest};

use super::query;
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::{Authed, Ruma},
    response::Rendered,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .json_endpoint::<sync_events::v3::Request, _, _>(sync_events_route)
        .ruma(create_filter_route)
        .ruma(get_filter_route)
}

/// Query parameters of `/sync`, read as Synapse reads them: an empty `timeout` is 0 and the
/// filter goes to the sync worker as sent, which answers a bad one with `M_BAD_JSON` (ruma's
/// parser would refuse both with `M_INVALID_PARAM`). Anything else (`access_token`, unstable
/// flags) is ignored.
#[derive(Deserialize, Default)]
struct SyncQuery {
    since: Option<String>,
    filter: Option<String>,
    timeout: Option<String>,
    full_state: Option<String>,
    set_presence: Option<String>,
}

/// # `GET /_matrix/client/v3/sync`
async fn sync_events_route(
    State(s): State<AppState>,
    auth: Authed,
    uri: Uri,
) -> ApiResult<Rendered<sync_events::v3::Response>> {
    let q: SyncQuery = query(&uri)?;
    let timeout_ms = match q.timeout.as_deref() {
        None | Some("") => 0,
        Some(t) => t.parse::<u64>().map_err(|_| ApiError(Error::invalid_param("timeout must be a number")))?,
    };
    let full_state = match q.full_state.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError(Error::invalid_param("full_state must be true or false"))),
    };
    let resp = s
        .services
        .sync
        .sync(SyncRequest {
            user_id: auth.user_id,
            device_id: auth.device_id,
            since: q.since,
            filter: q.filter,
            timeout_ms,
            full_state,
            set_presence: q.set_presence.unwrap_or_default(),
        })
        .await?;
    Ok(Rendered::new(resp.body_json))
}

/// # `POST /_matrix/client/v3/user/{userId}/filter`
async fn create_filter_route(
    s: AppState,
    req: Ruma<create_filter::v3::Request>,
) -> ApiResult<create_filter::v3::Response> {
    let (auth, req) = (req.user, req.body);
    let resp = s
        .services
        .sync
        .create_filter(CreateFilterRequest {
            user_id: req.user_id.to_string(),
            filter_json: serde_json::to_string(&req.filter)?,
            requester: auth.user_id,
        })
        .await?;
    Ok(create_filter::v3::Response::new(resp.filter_id))
}

/// # `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
///
/// The filter as stored (the client's JSON, kept as sent).
async fn get_filter_route(
    s: AppState,
    req: Ruma<get_filter::v3::Request>,
) -> ApiResult<Rendered<get_filter::v3::Response>> {
    let (auth, req) = (req.user, req.body);
    let resp = s
        .services
        .sync
        .get_filter(GetFilterRequest {
            user_id: req.user_id.to_string(),
            filter_id: req.filter_id,
            requester: auth.user_id,
        })
        .await?;
    Ok(Rendered::new(resp.filter_json))
}
