//! Server-side key backup (`/room_keys/...`): backup versions and the backed-up sessions,
//! at the three depths the spec offers (all rooms, one room, one session).

use axum::Router;
use ruma::{
    OwnedRoomId, UInt,
    api::client::backup::{
        BackupAlgorithm, RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session,
        create_backup_version, delete_backup_keys, delete_backup_keys_for_room, delete_backup_keys_for_session,
        delete_backup_version, get_backup_info, get_backup_keys, get_backup_keys_for_room, get_backup_keys_for_session,
        get_latest_backup_info, update_backup_version,
    },
    serde::Raw,
};
use serde_json::{Value, json};
use trellis_core::Error;
use trellis_proto::auth::{
    BackupVersion, CreateBackupVersionRequest, GetBackupVersionRequest, PutRoomKeysRequest, RoomKeysCount,
    RoomKeysRequest, UpdateBackupVersionRequest,
};

use super::raw;
use crate::{AppState, error::ApiResult, extract::Ruma, response::Rendered, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(create_backup_version_route)
        .ruma(get_latest_backup_info_route)
        .ruma(get_backup_info_route)
        .ruma(update_backup_version_route)
        .ruma(delete_backup_version_route)
        .ruma(get_backup_keys_route)
        .ruma(get_backup_keys_for_room_route)
        .ruma(get_backup_keys_for_session_route)
        .ruma(add_backup_keys_route)
        .ruma(add_backup_keys_for_room_route)
        .ruma(add_backup_keys_for_session_route)
        .ruma(delete_backup_keys_route)
        .ruma(delete_backup_keys_for_room_route)
        .ruma(delete_backup_keys_for_session_route)
}

/// A version's `algorithm` and `auth_data`. The auth data is opaque to the server: any JSON
/// value (the spec describes an object per algorithm, but Synapse stores whatever a client
/// sends, and clients rely on that); only its presence is required.
fn algorithm(body: &Raw<BackupAlgorithm>) -> ApiResult<(String, String, Option<Value>)> {
    let bad = |m: &str| Error::bad_json(m.to_owned());
    let mut body: serde_json::Map<String, Value> =
        serde_json::from_str(body.json().get()).map_err(|_| bad("the body must be an object"))?;
    let algorithm = body
        .remove("algorithm")
        .and_then(|a| a.as_str().map(str::to_owned))
        .ok_or_else(|| bad("algorithm must be a string"))?;
    let auth_data = body.remove("auth_data").ok_or_else(|| bad("auth_data is required"))?;
    Ok((algorithm, auth_data.to_string(), body.remove("version")))
}

/// A stored version as the spec's answer (`algorithm` and `auth_data` flattened in).
fn info(v: BackupVersion) -> ApiResult<(Raw<BackupAlgorithm>, UInt, String, String)> {
    let auth_data: Value = serde_json::from_str(&v.auth_data_json)?;
    let algorithm = raw(json!({ "algorithm": v.algorithm, "auth_data": auth_data }).to_string())?;
    Ok((algorithm, UInt::try_from(v.count).unwrap_or(UInt::MAX), v.etag, v.version))
}

/// # `POST /_matrix/client/v3/room_keys/version`
async fn create_backup_version_route(
    s: AppState,
    req: Ruma<create_backup_version::v3::Request>,
) -> ApiResult<create_backup_version::v3::Response> {
    let (algorithm, auth_data_json, _) = algorithm(&req.body.algorithm)?;
    let create = CreateBackupVersionRequest { user_id: req.user.user_id, algorithm, auth_data_json };
    Ok(create_backup_version::v3::Response::new(s.services.auth.create_backup_version(create).await?.version))
}

/// # `GET /_matrix/client/v3/room_keys/version`
async fn get_latest_backup_info_route(
    s: AppState,
    req: Ruma<get_latest_backup_info::v3::Request>,
) -> ApiResult<get_latest_backup_info::v3::Response> {
    let ask = GetBackupVersionRequest { user_id: req.user.user_id, version: None };
    let (algorithm, count, etag, version) = info(s.services.auth.get_backup_version(ask).await?)?;
    Ok(get_latest_backup_info::v3::Response::new(algorithm, count, etag, version))
}

/// # `GET /_matrix/client/v3/room_keys/version/{version}`
async fn get_backup_info_route(
    s: AppState,
    req: Ruma<get_backup_info::v3::Request>,
) -> ApiResult<get_backup_info::v3::Response> {
    let ask = GetBackupVersionRequest { user_id: req.user.user_id, version: Some(req.body.version) };
    let (algorithm, count, etag, version) = info(s.services.auth.get_backup_version(ask).await?)?;
    Ok(get_backup_info::v3::Response::new(algorithm, count, etag, version))
}

/// # `PUT /_matrix/client/v3/room_keys/version/{version}`
async fn update_backup_version_route(
    s: AppState,
    req: Ruma<update_backup_version::v3::Request>,
) -> ApiResult<update_backup_version::v3::Response> {
    let (algorithm, auth_data_json, body_version) = algorithm(&req.body.algorithm)?;
    // The body's `version`, if any, must name the path's: as a string (the spec) or a number
    // (what older clients send).
    let version = req.body.version;
    let same = match &body_version {
        None | Some(Value::Null) => true,
        Some(Value::String(v)) => *v == version,
        Some(Value::Number(n)) => n.to_string() == version,
        Some(_) => false,
    };
    if !same {
        return Err(Error::invalid_param("version in body does not match the path").into());
    }
    let update = UpdateBackupVersionRequest { user_id: req.user.user_id, version, algorithm, auth_data_json };
    s.services.auth.update_backup_version(update).await?;
    Ok(update_backup_version::v3::Response::new())
}

/// # `DELETE /_matrix/client/v3/room_keys/version/{version}`
async fn delete_backup_version_route(
    s: AppState,
    req: Ruma<delete_backup_version::v3::Request>,
) -> ApiResult<delete_backup_version::v3::Response> {
    let ask = GetBackupVersionRequest { user_id: req.user.user_id, version: Some(req.body.version) };
    s.services.auth.delete_backup_version(ask).await?;
    Ok(delete_backup_version::v3::Response::new())
}

/// The backup version and the depth (room, session) of a `/room_keys/keys` request.
fn keys(user_id: String, version: String, room: Option<&OwnedRoomId>, session: Option<&str>) -> RoomKeysRequest {
    let (room_id, session_id) = (room.map(ToString::to_string), session.map(str::to_owned));
    RoomKeysRequest { user_id, version, room_id, session_id }
}

/// The stored keys at one depth, as the auth service renders them.
async fn get_keys<R>(s: &AppState, ask: RoomKeysRequest) -> ApiResult<Rendered<R>> {
    Ok(Rendered::new(s.services.auth.get_room_keys(ask).await?.json))
}

/// # `GET /_matrix/client/v3/room_keys/keys`
async fn get_backup_keys_route(
    s: AppState,
    req: Ruma<get_backup_keys::v3::Request>,
) -> ApiResult<Rendered<get_backup_keys::v3::Response>> {
    get_keys(&s, keys(req.user.user_id, req.body.version, None, None)).await
}

/// # `GET /_matrix/client/v3/room_keys/keys/{roomId}`
async fn get_backup_keys_for_room_route(
    s: AppState,
    req: Ruma<get_backup_keys_for_room::v3::Request>,
) -> ApiResult<Rendered<get_backup_keys_for_room::v3::Response>> {
    let body = req.body;
    get_keys(&s, keys(req.user.user_id, body.version, Some(&body.room_id), None)).await
}

/// # `GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn get_backup_keys_for_session_route(
    s: AppState,
    req: Ruma<get_backup_keys_for_session::v3::Request>,
) -> ApiResult<Rendered<get_backup_keys_for_session::v3::Response>> {
    let body = req.body;
    get_keys(&s, keys(req.user.user_id, body.version, Some(&body.room_id), Some(&body.session_id))).await
}

/// Stores keys (every depth goes to the service in the full `rooms` form); the new count.
async fn put_keys(s: &AppState, user_id: String, version: String, rooms: Value) -> ApiResult<(String, UInt)> {
    let put = PutRoomKeysRequest { user_id, version, rooms_json: json!({ "rooms": rooms }).to_string() };
    count(s.services.auth.put_room_keys(put).await?)
}

fn count(c: RoomKeysCount) -> ApiResult<(String, UInt)> {
    Ok((c.etag, UInt::try_from(c.count).unwrap_or(UInt::MAX)))
}

/// # `PUT /_matrix/client/v3/room_keys/keys`
async fn add_backup_keys_route(
    s: AppState,
    req: Ruma<add_backup_keys::v3::Request>,
) -> ApiResult<add_backup_keys::v3::Response> {
    let rooms = serde_json::to_value(&req.body.rooms)?;
    let (etag, count) = put_keys(&s, req.user.user_id, req.body.version, rooms).await?;
    Ok(add_backup_keys::v3::Response::new(etag, count))
}

/// # `PUT /_matrix/client/v3/room_keys/keys/{roomId}`
async fn add_backup_keys_for_room_route(
    s: AppState,
    req: Ruma<add_backup_keys_for_room::v3::Request>,
) -> ApiResult<add_backup_keys_for_room::v3::Response> {
    let body = req.body;
    let rooms = json!({ body.room_id.as_str(): RoomKeyBackup::new(body.sessions) });
    let (etag, count) = put_keys(&s, req.user.user_id, body.version, rooms).await?;
    Ok(add_backup_keys_for_room::v3::Response::new(etag, count))
}

/// # `PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn add_backup_keys_for_session_route(
    s: AppState,
    req: Ruma<add_backup_keys_for_session::v3::Request>,
) -> ApiResult<add_backup_keys_for_session::v3::Response> {
    let body = req.body;
    let rooms = json!({ body.room_id.as_str(): { "sessions": { body.session_id: body.session_data } } });
    let (etag, count) = put_keys(&s, req.user.user_id, body.version, rooms).await?;
    Ok(add_backup_keys_for_session::v3::Response::new(etag, count))
}

async fn delete_keys(s: &AppState, ask: RoomKeysRequest) -> ApiResult<(String, UInt)> {
    count(s.services.auth.delete_room_keys(ask).await?)
}

/// # `DELETE /_matrix/client/v3/room_keys/keys`
async fn delete_backup_keys_route(
    s: AppState,
    req: Ruma<delete_backup_keys::v3::Request>,
) -> ApiResult<delete_backup_keys::v3::Response> {
    let (etag, count) = delete_keys(&s, keys(req.user.user_id, req.body.version, None, None)).await?;
    Ok(delete_backup_keys::v3::Response::new(etag, count))
}

/// # `DELETE /_matrix/client/v3/room_keys/keys/{roomId}`
async fn delete_backup_keys_for_room_route(
    s: AppState,
    req: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> ApiResult<delete_backup_keys_for_room::v3::Response> {
    let body = req.body;
    let (etag, count) = delete_keys(&s, keys(req.user.user_id, body.version, Some(&body.room_id), None)).await?;
    Ok(delete_backup_keys_for_room::v3::Response::new(etag, count))
}

/// # `DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn delete_backup_keys_for_session_route(
    s: AppState,
    req: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> ApiResult<delete_backup_keys_for_session::v3::Response> {
    let body = req.body;
    let ask = keys(req.user.user_id, body.version, Some(&body.room_id), Some(&body.session_id));
    let (etag, count) = delete_keys(&s, ask).await?;
    Ok(delete_backup_keys_for_session::v3::Response::new(etag, count))
}
