//! Devices: list, show, rename, delete (one or many, behind user-interactive auth). A
//! deleted device's tokens stop working at once at this gateway (its token cache is told).

use axum::{
    Json, Router,
    extract::{RawPathParams, State},
};
use ruma::api::client::device::{delete_device, delete_devices, get_device, get_devices, update_device};
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_proto::{
    auth::{DeleteDevicesRequest, Device, GetDeviceRequest, ListDevicesRequest, UpdateDeviceRequest},
    sync::{DeleteDevicePushersRequest, DeviceIdList, delete_device_pushers_request::Which},
};

use super::param;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, JsonObject, from_object},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<get_devices::v3::Request, _, _>(list_route)
        .ruma::<get_device::v3::Request, _, _>(get_route)
        .ruma::<update_device::v3::Request, _, _>(update_route)
        .ruma::<delete_device::v3::Request, _, _>(delete_route)
        .ruma::<delete_devices::v3::Request, _, _>(delete_many_route)
}

fn device_json(d: Device) -> Value {
    let mut out = json!({ "device_id": d.device_id });
    if let Some(name) = d.display_name {
        out["display_name"] = json!(name);
    }
    if let Some(ip) = d.last_seen_ip {
        out["last_seen_ip"] = json!(ip);
    }
    if let Some(ts) = d.last_seen_ts {
        out["last_seen_ts"] = json!(ts);
    }
    out
}

/// Drops this gateway's cached validations of the tokens of the user's devices that
/// `gone` selects (after the auth service removed them).
pub(super) fn forget_devices(s: &AppState, user_id: &str, gone: impl Fn(&str) -> bool) {
    let Some(cache) = &s.tokens else { return };
    cache.forget(|a| a.user_id == user_id && gone(&a.device_id));
}

/// Deletes the pushers the user's removed devices made (the sync service keeps pushers).
pub(super) async fn delete_pushers(s: &AppState, user_id: &str, which: Which) -> ApiResult<()> {
    let req = DeleteDevicePushersRequest { user_id: user_id.to_owned(), which: Some(which) };
    s.services.sync.delete_device_pushers(req).await?;
    Ok(())
}

/// [`Which`] for a list of devices.
pub(super) fn these(device_ids: Vec<String>) -> Which {
    Which::Devices(DeviceIdList { device_ids })
}

/// # `GET /_matrix/client/v3/devices`
async fn list_route(State(s): State<AppState>, auth: Authed) -> ApiResult<Json<Value>> {
    let list = s.services.auth.list_devices(ListDevicesRequest { user_id: auth.user_id }).await?;
    Ok(Json(json!({ "devices": list.devices.into_iter().map(device_json).collect::<Vec<_>>() })))
}

/// # `GET /_matrix/client/v3/devices/{deviceId}`
async fn get_route(State(s): State<AppState>, auth: Authed, params: RawPathParams) -> ApiResult<Json<Value>> {
    let device_id = param(&params, "device_id")?;
    let device = s.services.auth.get_device(GetDeviceRequest { user_id: auth.user_id, device_id }).await?;
    Ok(Json(device_json(device)))
}

#[derive(Deserialize)]
struct UpdateBody {
    display_name: Option<String>,
}

/// # `PUT /_matrix/client/v3/devices/{deviceId}`
async fn update_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let device_id = param(&params, "device_id")?;
    let body: UpdateBody = from_object(body)?;
    let req = UpdateDeviceRequest { user_id: auth.user_id, device_id, display_name: body.display_name };
    s.services.auth.update_device(req).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct DeleteBody {
    auth: Option<Value>,
}

fn auth_json(auth: Option<Value>) -> String {
    auth.map(|a| a.to_string()).unwrap_or_default()
}

/// # `DELETE /_matrix/client/v3/devices/{deviceId}`
async fn delete_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let device_id = param(&params, "device_id")?;
    let body: DeleteBody = from_object(body)?;
    // An unknown device is 404 before the client is asked for a password.
    let get = GetDeviceRequest { user_id: auth.user_id.clone(), device_id: device_id.clone() };
    s.services.auth.get_device(get).await?;
    let req = DeleteDevicesRequest {
        user_id: auth.user_id.clone(),
        device_ids: vec![device_id.clone()],
        auth_json: auth_json(body.auth),
    };
    s.services.auth.delete_devices(req).await?;
    delete_pushers(&s, &auth.user_id, these(vec![device_id.clone()])).await?;
    forget_devices(&s, &auth.user_id, move |d| d == device_id);
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct DeleteManyBody {
    devices: Vec<String>,
    auth: Option<Value>,
}

/// # `POST /_matrix/client/v3/delete_devices`
async fn delete_many_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let body: DeleteManyBody = from_object(body)?;
    let req = DeleteDevicesRequest {
        user_id: auth.user_id.clone(),
        device_ids: body.devices.clone(),
        auth_json: auth_json(body.auth),
    };
    s.services.auth.delete_devices(req).await?;
    delete_pushers(&s, &auth.user_id, these(body.devices.clone())).await?;
    let gone = body.devices;
    forget_devices(&s, &auth.user_id, move |d| gone.iter().any(|g| g == d));
    Ok(Json(json!({})))
}
