//! End-to-end encryption keys: upload, query and claim keys, cross-signing keys and
//! signatures, and device-list changes. Bodies go to the keys service as JSON, which reads
//! them with ruma's types and verifies cross-signing signatures (until its contract is
//! typed); answers are its rendered JSON.

use axum::{Router, extract::State};
use ruma::api::{
    Metadata,
    client::keys::{claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys},
};
use serde_json::{Map, Value};
use trellis_proto::keys::{KeyChangesRequest, KeysRequest};

use super::stored_id;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, JsonObject, Ruma},
    response::Rendered,
    router::{RumaRoutes, also_under, paths_of},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .json_endpoint_on::<upload_keys::v3::Request, _, _>(
            every_prefix::<upload_keys::v3::Request>(),
            upload_keys_route,
        )
        .json_endpoint_on::<get_keys::v3::Request, _, _>(every_prefix::<get_keys::v3::Request>(), get_keys_route)
        .json_endpoint_on::<claim_keys::v3::Request, _, _>(every_prefix::<claim_keys::v3::Request>(), claim_keys_route)
        .json_endpoint_on::<upload_signing_keys::v3::Request, _, _>(
            every_prefix::<upload_signing_keys::v3::Request>(),
            upload_signing_keys_route,
        )
        .json_endpoint_on::<upload_signatures::v3::Request, _, _>(
            every_prefix::<upload_signatures::v3::Request>(),
            upload_signatures_route,
        )
        .ruma_on(every_prefix::<get_key_changes::v3::Request>(), get_key_changes_route)
}

/// The endpoint's ruma paths, plus the `r0` and `unstable` prefixes ruma does not list
/// (clients of every age use them for the keys API, and Synapse serves all three).
fn every_prefix<T: Metadata>() -> Vec<String> {
    also_under(paths_of::<T>(), "/_matrix/client/", &["r0", "unstable"])
}

/// A keys request as the keys service takes it: the body as sent (the service reads it, and
/// its errcodes are what clients see: ruma's parser would answer `M_BAD_JSON` first for
/// much of what the service refuses more precisely) and the requester.
fn request(auth: Authed, body: Map<String, Value>) -> KeysRequest {
    KeysRequest { user_id: auth.user_id, device_id: auth.device_id, body_json: Value::Object(body).to_string() }
}

/// # `POST /_matrix/client/v3/keys/upload`
async fn upload_keys_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<Rendered<upload_keys::v3::Response>> {
    Ok(Rendered::new(s.services.keys.upload_keys(request(auth, body)).await?.body_json))
}

/// # `POST /_matrix/client/v3/keys/query`
async fn get_keys_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<Rendered<get_keys::v3::Response>> {
    Ok(Rendered::new(s.services.keys.query_keys(request(auth, body)).await?.body_json))
}

/// # `POST /_matrix/client/v3/keys/claim`
async fn claim_keys_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<Rendered<claim_keys::v3::Response>> {
    Ok(Rendered::new(s.services.keys.claim_keys(request(auth, body)).await?.body_json))
}

/// # `POST /_matrix/client/v3/keys/device_signing/upload`
async fn upload_signing_keys_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<Rendered<upload_signing_keys::v3::Response>> {
    Ok(Rendered::new(s.services.keys.upload_signing_keys(request(auth, body)).await?.body_json))
}

/// # `POST /_matrix/client/v3/keys/signatures/upload`
async fn upload_signatures_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<Rendered<upload_signatures::v3::Response>> {
    Ok(Rendered::new(s.services.keys.upload_signatures(request(auth, body)).await?.body_json))
}

/// # `GET /_matrix/client/v3/keys/changes`
async fn get_key_changes_route(
    s: AppState,
    req: Ruma<get_key_changes::v3::Request>,
) -> ApiResult<get_key_changes::v3::Response> {
    let ask = KeyChangesRequest { user_id: req.user.user_id, from: req.body.from, to: req.body.to };
    let changes = s.services.keys.key_changes(ask).await?;
    let ids = |list: Vec<String>| list.into_iter().map(stored_id).collect::<ApiResult<Vec<_>>>();
    Ok(get_key_changes::v3::Response::new(ids(changes.changed)?, ids(changes.left)?))
}
