//! End-to-end encryption keys: upload, query and claim keys, cross-signing keys and
//! signatures, and device-list changes. Bodies go to the keys service as JSON, which
//! validates them.

use axum::{
    Json, Router,
    extract::State,
    handler::Handler,
    routing::{MethodFilter, on},
};
use ruma::api::{
    Metadata,
    client::keys::{claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys},
    path_builder::PathBuilder,
};
use serde_json::{Map, Value, json};
use trellis_proto::keys::{KeyChangesRequest, KeysRequest};

use super::RawJson;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, JsonObject, Ruma},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    let r = Router::new();
    let r = every_prefix::<upload_keys::v3::Request, _, _>(r, upload_route);
    let r = every_prefix::<get_keys::v3::Request, _, _>(r, query_route);
    let r = every_prefix::<claim_keys::v3::Request, _, _>(r, claim_route);
    let r = every_prefix::<upload_signing_keys::v3::Request, _, _>(r, signing_upload_route);
    let r = every_prefix::<upload_signatures::v3::Request, _, _>(r, signatures_upload_route);
    every_prefix::<get_key_changes::v3::Request, _, _>(r, changes_route)
}

/// The endpoint's ruma paths, plus the `r0` and `unstable` prefixes ruma does not list
/// (clients of every age use them for the keys API, and Synapse serves all three).
fn every_prefix<T: Metadata, H, X>(router: Router<AppState>, handler: H) -> Router<AppState>
where
    H: Handler<X, AppState>,
    X: 'static,
{
    let filter = MethodFilter::try_from(T::METHOD).expect("endpoint methods are standard");
    let known: Vec<&str> = T::PATH_BUILDER.all_paths().collect();
    let rest = known.iter().find_map(|p| p.strip_prefix("/_matrix/client/v3")).expect("a v3 path");
    let mut router = router.ruma::<T, H, X>(handler.clone());
    for prefix in ["r0", "unstable"] {
        let path = format!("/_matrix/client/{prefix}{rest}");
        if !known.contains(&path.as_str()) {
            router = router.route(&path, on(filter, handler.clone()));
        }
    }
    router
}

fn request(auth: Authed, body: Map<String, Value>) -> KeysRequest {
    KeysRequest { user_id: auth.user_id, device_id: auth.device_id, body_json: Value::Object(body).to_string() }
}

/// # `POST /_matrix/client/v3/keys/upload`
async fn upload_route(State(s): State<AppState>, auth: Authed, JsonObject(body): JsonObject) -> ApiResult<RawJson> {
    Ok(RawJson(s.services.keys.upload_keys(request(auth, body)).await?.body_json))
}

/// # `POST /_matrix/client/v3/keys/query`
async fn query_route(State(s): State<AppState>, auth: Authed, JsonObject(body): JsonObject) -> ApiResult<RawJson> {
    Ok(RawJson(s.services.keys.query_keys(request(auth, body)).await?.body_json))
}

/// # `POST /_matrix/client/v3/keys/claim`
async fn claim_route(State(s): State<AppState>, auth: Authed, JsonObject(body): JsonObject) -> ApiResult<RawJson> {
    Ok(RawJson(s.services.keys.claim_keys(request(auth, body)).await?.body_json))
}

/// # `POST /_matrix/client/v3/keys/device_signing/upload`
async fn signing_upload_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<RawJson> {
    Ok(RawJson(s.services.keys.upload_signing_keys(request(auth, body)).await?.body_json))
}

/// # `POST /_matrix/client/v3/keys/signatures/upload`
async fn signatures_upload_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<RawJson> {
    Ok(RawJson(s.services.keys.upload_signatures(request(auth, body)).await?.body_json))
}

/// # `GET /_matrix/client/v3/keys/changes`
async fn changes_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_key_changes::v3::Request>,
) -> ApiResult<Json<Value>> {
    let r =
        s.services.keys.key_changes(KeyChangesRequest { user_id: auth.user_id, from: req.from, to: req.to }).await?;
    Ok(Json(json!({ "changed": r.changed, "left": r.left })))
}
