//! Devices: list, show, rename, delete (one or many, behind user-interactive auth). A
//! deleted device's tokens stop working at once at this gateway (its token cache is told).

use axum::Router;
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::device::{self, delete_device, delete_devices, get_device, get_devices, update_device},
};
use trellis_proto::{
    auth::{DeleteDevicesRequest, GetDeviceRequest, ListDevicesRequest, UpdateDeviceRequest},
    sync::{DeleteDevicePushersRequest, DeviceIdList, delete_device_pushers_request::Which},
};

use crate::{AppState, adjust::Uia, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(get_devices_route)
        .ruma(get_device_route)
        .ruma(update_device_route)
        .ruma(delete_device_route)
        .ruma(delete_devices_route)
}

fn device(d: trellis_proto::auth::Device) -> device::Device {
    let mut out = device::Device::new(d.device_id.into());
    out.display_name = d.display_name;
    out.last_seen_ip = d.last_seen_ip;
    out.last_seen_ts = d.last_seen_ts.and_then(|ts| UInt::try_from(ts).ok()).map(MilliSecondsSinceUnixEpoch);
    out
}

/// Drops this gateway's cached validations of the tokens of the user's devices that
/// `gone` selects (after the auth service removed them).
pub(crate) fn forget_devices(s: &AppState, user_id: &str, gone: impl Fn(&str) -> bool) {
    let Some(cache) = &s.tokens else { return };
    cache.forget(|a| a.user_id == user_id && gone(&a.device_id));
}

/// After the auth service removed the user's devices that `which` names: this gateway
/// forgets their tokens at once, and the sync service deletes the pushers they made (it
/// keeps pushers).
pub(crate) async fn devices_removed(s: &AppState, user_id: &str, which: Which) -> ApiResult<()> {
    match &which {
        Which::Devices(gone) => forget_devices(s, user_id, |d| gone.device_ids.iter().any(|g| g == d)),
        Which::AllBut(kept) => forget_devices(s, user_id, |d| d != kept),
        Which::All(all) => forget_devices(s, user_id, |_| *all),
    }
    let req = DeleteDevicePushersRequest { user_id: user_id.to_owned(), which: Some(which) };
    s.services.sync.delete_device_pushers(req).await?;
    Ok(())
}

/// [`Which`] for a list of devices.
pub(crate) fn these(device_ids: Vec<String>) -> Which {
    Which::Devices(DeviceIdList { device_ids })
}

/// # `GET /_matrix/client/v3/devices`
async fn get_devices_route(s: AppState, req: Ruma<get_devices::v3::Request>) -> ApiResult<get_devices::v3::Response> {
    let list = s.services.auth.list_devices(ListDevicesRequest { user_id: req.user.user_id }).await?;
    Ok(get_devices::v3::Response::new(list.devices.into_iter().map(device).collect()))
}

/// # `GET /_matrix/client/v3/devices/{deviceId}`
async fn get_device_route(s: AppState, req: Ruma<get_device::v3::Request>) -> ApiResult<get_device::v3::Response> {
    let get = GetDeviceRequest { user_id: req.user.user_id, device_id: req.body.device_id.to_string() };
    Ok(get_device::v3::Response::new(device(s.services.auth.get_device(get).await?)))
}

/// # `PUT /_matrix/client/v3/devices/{deviceId}`
async fn update_device_route(
    s: AppState,
    req: Ruma<update_device::v3::Request>,
) -> ApiResult<update_device::v3::Response> {
    let (user_id, device_id, display_name) = (req.user.user_id, req.body.device_id.to_string(), req.body.display_name);
    s.services.auth.update_device(UpdateDeviceRequest { user_id, device_id, display_name }).await?;
    Ok(update_device::v3::Response::new())
}

/// # `DELETE /_matrix/client/v3/devices/{deviceId}`
async fn delete_device_route(
    s: AppState,
    req: Ruma<Uia<delete_device::v3::Request>>,
) -> ApiResult<delete_device::v3::Response> {
    let (user_id, device_id) = (req.user.user_id.clone(), req.body.request.device_id.to_string());
    // An unknown device is 404 before the client is asked for a password.
    s.services.auth.get_device(GetDeviceRequest { user_id: user_id.clone(), device_id: device_id.clone() }).await?;
    let delete = DeleteDevicesRequest {
        user_id: user_id.clone(),
        device_ids: vec![device_id.clone()],
        auth_json: req.body.auth_json(),
    };
    s.services.auth.delete_devices(delete).await?;
    devices_removed(&s, &user_id, these(vec![device_id])).await?;
    Ok(delete_device::v3::Response::new())
}

/// # `POST /_matrix/client/v3/delete_devices`
async fn delete_devices_route(
    s: AppState,
    req: Ruma<Uia<delete_devices::v3::Request>>,
) -> ApiResult<delete_devices::v3::Response> {
    let user_id = req.user.user_id.clone();
    let device_ids: Vec<String> = req.body.request.devices.iter().map(ToString::to_string).collect();
    let delete = DeleteDevicesRequest {
        user_id: user_id.clone(),
        device_ids: device_ids.clone(),
        auth_json: req.body.auth_json(),
    };
    s.services.auth.delete_devices(delete).await?;
    devices_removed(&s, &user_id, these(device_ids)).await?;
    Ok(delete_devices::v3::Response::new())
}
