//! Server-side key backup (`/room_keys/...`): backup versions and the backed-up sessions,
//! at the three depths the spec offers (all rooms, one room, one session).

use axum::{
    Json, Router,
    extract::{RawPathParams, State},
    http::Uri,
};
use ruma::api::client::backup::{
    add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session, create_backup_version, delete_backup_keys,
    delete_backup_keys_for_room, delete_backup_keys_for_session, delete_backup_version, get_backup_info,
    get_backup_keys, get_backup_keys_for_room, get_backup_keys_for_session, get_latest_backup_info,
    update_backup_version,
};
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_core::Error;
use trellis_proto::auth::{
    BackupVersion, CreateBackupVersionRequest, GetBackupVersionRequest, PutRoomKeysRequest, RoomKeysCount,
    RoomKeysRequest, UpdateBackupVersionRequest,
};

use super::{param, query};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, JsonObject, from_object},
    response::Rendered,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .json_endpoint::<create_backup_version::v3::Request, _, _>(create_version_route)
        .json_endpoint::<get_latest_backup_info::v3::Request, _, _>(latest_version_route)
        .json_endpoint::<get_backup_info::v3::Request, _, _>(get_version_route)
        .json_endpoint::<update_backup_version::v3::Request, _, _>(update_version_route)
        .json_endpoint::<delete_backup_version::v3::Request, _, _>(delete_version_route)
        .json_endpoint::<get_backup_keys::v3::Request, _, _>(get_keys_route::<get_backup_keys::v3::Response>)
        .json_endpoint::<get_backup_keys_for_room::v3::Request, _, _>(
            get_keys_route::<get_backup_keys_for_room::v3::Response>,
        )
        .json_endpoint::<get_backup_keys_for_session::v3::Request, _, _>(
            get_keys_route::<get_backup_keys_for_session::v3::Response>,
        )
        .json_endpoint::<add_backup_keys::v3::Request, _, _>(put_keys_route)
        .json_endpoint::<add_backup_keys_for_room::v3::Request, _, _>(put_keys_route)
        .json_endpoint::<add_backup_keys_for_session::v3::Request, _, _>(put_keys_route)
        .json_endpoint::<delete_backup_keys::v3::Request, _, _>(delete_keys_route)
        .json_endpoint::<delete_backup_keys_for_room::v3::Request, _, _>(delete_keys_route)
        .json_endpoint::<delete_backup_keys_for_session::v3::Request, _, _>(delete_keys_route)
}

#[derive(Deserialize)]
struct VersionBody {
    algorithm: String,
    /// Opaque to the server: any JSON value (the spec describes an object per algorithm, but
    /// Synapse stores whatever a client sends, and clients rely on that).
    auth_data: Value,
    /// The version it updates, as a string (the spec) or a number (what older clients send).
    version: Option<Value>,
}

/// A body's `version`, which must name the path's version if present.
fn same_version(body: Option<&Value>, path: &str) -> bool {
    match body {
        None | Some(Value::Null) => true,
        Some(Value::String(v)) => v == path,
        Some(Value::Number(n)) => n.to_string() == path,
        Some(_) => false,
    }
}

fn version_json(v: BackupVersion) -> ApiResult<Json<Value>> {
    let auth_data: Value = serde_json::from_str(&v.auth_data_json)?;
    Ok(Json(json!({
        "algorithm": v.algorithm,
        "auth_data": auth_data,
        "count": v.count,
        "etag": v.etag,
        "version": v.version,
    })))
}

/// # `POST /_matrix/client/v3/room_keys/version`
async fn create_version_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let body: VersionBody = from_object(body)?;
    let req = CreateBackupVersionRequest {
        user_id: auth.user_id,
        algorithm: body.algorithm,
        auth_data_json: body.auth_data.to_string(),
    };
    let created = s.services.auth.create_backup_version(req).await?;
    Ok(Json(json!({ "version": created.version })))
}

/// # `GET /_matrix/client/v3/room_keys/version`
async fn latest_version_route(State(s): State<AppState>, auth: Authed) -> ApiResult<Json<Value>> {
    let req = GetBackupVersionRequest { user_id: auth.user_id, version: None };
    version_json(s.services.auth.get_backup_version(req).await?)
}

/// # `GET /_matrix/client/v3/room_keys/version/{version}`
async fn get_version_route(State(s): State<AppState>, auth: Authed, params: RawPathParams) -> ApiResult<Json<Value>> {
    let req = GetBackupVersionRequest { user_id: auth.user_id, version: Some(param(&params, "version")?) };
    version_json(s.services.auth.get_backup_version(req).await?)
}

/// # `PUT /_matrix/client/v3/room_keys/version/{version}`
async fn update_version_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let version = param(&params, "version")?;
    let body: VersionBody = from_object(body)?;
    if !same_version(body.version.as_ref(), &version) {
        return Err(Error::invalid_param("version in body does not match the path").into());
    }
    let req = UpdateBackupVersionRequest {
        user_id: auth.user_id,
        version,
        algorithm: body.algorithm,
        auth_data_json: body.auth_data.to_string(),
    };
    s.services.auth.update_backup_version(req).await?;
    Ok(Json(json!({})))
}

/// # `DELETE /_matrix/client/v3/room_keys/version/{version}`
async fn delete_version_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
) -> ApiResult<Json<Value>> {
    let req = GetBackupVersionRequest { user_id: auth.user_id, version: Some(param(&params, "version")?) };
    s.services.auth.delete_backup_version(req).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<String>,
}

/// The backup version and the depth (room, session) a `/room_keys/keys` request names.
fn keys_request(auth: Authed, uri: &Uri, params: &RawPathParams) -> ApiResult<RoomKeysRequest> {
    let q: VersionQuery = query(uri)?;
    let version = q.version.ok_or_else(|| Error::missing_param("Missing query parameter: version"))?;
    let opt = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned());
    Ok(RoomKeysRequest { user_id: auth.user_id, version, room_id: opt("room_id"), session_id: opt("session_id") })
}

fn count_json(c: RoomKeysCount) -> Json<Value> {
    Json(json!({ "etag": c.etag, "count": c.count }))
}

/// # `GET /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]`
async fn get_keys_route<R>(
    State(s): State<AppState>,
    auth: Authed,
    uri: Uri,
    params: RawPathParams,
) -> ApiResult<Rendered<R>> {
    let req = keys_request(auth, &uri, &params)?;
    Ok(Rendered::new(s.services.auth.get_room_keys(req).await?.json))
}

/// # `PUT /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]`
async fn put_keys_route(
    State(s): State<AppState>,
    auth: Authed,
    uri: Uri,
    params: RawPathParams,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let req = keys_request(auth, &uri, &params)?;
    // Every depth is sent on as the full `rooms` form.
    let body = Value::Object(body);
    let rooms = match (&req.room_id, &req.session_id) {
        (Some(room), Some(session)) => json!({ room: { "sessions": { session: body } } }),
        (Some(room), None) => json!({ room: body }),
        _ => body.get("rooms").cloned().unwrap_or(Value::Null),
    };
    let put = PutRoomKeysRequest {
        user_id: req.user_id,
        version: req.version,
        rooms_json: json!({ "rooms": rooms }).to_string(),
    };
    Ok(count_json(s.services.auth.put_room_keys(put).await?))
}

/// # `DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]`
async fn delete_keys_route(
    State(s): State<AppState>,
    auth: Authed,
    uri: Uri,
    params: RawPathParams,
) -> ApiResult<Json<Value>> {
    let req = keys_request(auth, &uri, &params)?;
    Ok(count_json(s.services.auth.delete_room_keys(req).await?))
}
