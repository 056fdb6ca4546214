//! Admin API handlers for accounts: list, query, create or modify, deactivate, reset a
//! password, whois, joined rooms, devices, the admin flag, and a token to act as a user.
//! The auth service owns the rules; these handlers translate Synapse's shapes.

use axum::{Router, http::StatusCode};
use ruma::api::client::admin::get_user_info::v3 as whois;
use trellis_core::Error;
use trellis_proto::{
    auth::{
        AdminDeactivateRequest, AdminDeleteDevicesRequest, AdminListUsersRequest, AdminLoginAsRequest,
        AdminPutUserRequest, AdminResetPasswordRequest, AdminUser, AdminUserRequest, ListDevicesRequest, WhoisRequest,
    },
    rooms::JoinedRoomsRequest,
    sync::delete_device_pushers_request::Which,
};

use super::{
    DEFAULT_LIMIT, ServerAdmin, WithStatus,
    api::{self, ListedUser, UserDetails},
    backwards, existing_user, next_from,
};
use crate::{
    AppState,
    client::{devices_removed, forget_devices, these, whois_response},
    error::ApiResult,
    extract::Ruma,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(server_version_route)
        .ruma(list_users_v2_route)
        .ruma(list_users_v3_route)
        .ruma(get_user_route)
        .ruma(put_user_route)
        .ruma(deactivate_route)
        .ruma(reset_password_route)
        .ruma_on(vec!["/_synapse/admin/v1/whois/{user_id}".to_owned()], whois_route)
        .ruma(joined_rooms_route)
        .ruma(get_admin_route)
        .ruma(set_admin_route)
        .ruma(list_devices_route)
        .ruma(delete_devices_route)
        .ruma(delete_device_route)
        .ruma(login_as_route)
}

fn listed(u: AdminUser) -> ListedUser {
    ListedUser {
        name: u.user_id,
        user_type: None,
        is_guest: u.is_guest,
        admin: u.admin,
        deactivated: u.deactivated,
        erased: u.erased,
        shadow_banned: u.shadow_banned,
        displayname: u.displayname,
        avatar_url: u.avatar_url,
        creation_ts: u.creation_ts,
        approved: true,
        locked: u.locked,
        last_seen_ts: u.last_seen_ts,
    }
}

fn details(u: AdminUser) -> UserDetails {
    UserDetails {
        name: u.user_id,
        displayname: u.displayname,
        threepids: Vec::new(),
        avatar_url: u.avatar_url,
        is_guest: u.is_guest,
        admin: u.admin,
        deactivated: u.deactivated,
        erased: u.erased,
        shadow_banned: u.shadow_banned,
        creation_ts: u.creation_ts / 1000,
        appservice_id: None,
        consent_server_notice_sent: None,
        consent_version: None,
        consent_ts: None,
        external_ids: Vec::new(),
        user_type: None,
        locked: u.locked,
        suspended: u.suspended,
        last_seen_ts: u.last_seen_ts,
    }
}

/// # `GET /_synapse/admin/v1/server_version`
async fn server_version_route(
    _: AppState,
    _: Ruma<api::server_version::Request>,
) -> ApiResult<api::server_version::Response> {
    Ok(api::server_version::Response { server_version: format!("Trellis {}", env!("CARGO_PKG_VERSION")) })
}

/// The service's list request for Synapse's query parameters (`deactivated` already read
/// as the version of the endpoint means it).
fn list_request(
    from: Option<i64>,
    limit: Option<i64>,
    (user_id, name): (Option<String>, Option<String>),
    guests: Option<bool>,
    deactivated: Option<bool>,
    admins: Option<bool>,
    (order_by, dir): (Option<String>, Option<String>),
) -> ApiResult<AdminListUsersRequest> {
    let backwards = backwards(dir.as_deref(), false)?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    let limit = i32::try_from(limit).map_err(|_| Error::invalid_param("limit is out of range"))?;
    Ok(AdminListUsersRequest {
        from: from.unwrap_or(0),
        limit,
        user_id,
        name,
        guests: guests.unwrap_or(true),
        deactivated,
        admins,
        order_by: order_by.unwrap_or_default(),
        backwards,
    })
}

async fn list_users(s: &AppState, req: AdminListUsersRequest) -> ApiResult<(Vec<ListedUser>, Option<String>, i64)> {
    let (from, limit) = (req.from, i64::from(req.limit));
    let found = s.services.auth.admin_list_users(req).await?;
    let next = next_from(from, limit, found.total).map(|n| n.to_string());
    Ok((found.users.into_iter().map(listed).collect(), next, found.total))
}

/// # `GET /_synapse/admin/v2/users`
///
/// `deactivated=true` includes deactivated accounts; otherwise they are left out.
async fn list_users_v2_route(
    s: AppState,
    req: Ruma<api::list_users_v2::Request, ServerAdmin>,
) -> ApiResult<api::list_users_v2::Response> {
    let q = req.body;
    let deactivated = (q.deactivated != Some(true)).then_some(false);
    let list =
        list_request(q.from, q.limit, (q.user_id, q.name), q.guests, deactivated, q.admins, (q.order_by, q.dir))?;
    let (users, next_token, total) = list_users(&s, list).await?;
    Ok(api::list_users_v2::Response { users, next_token, total })
}

/// # `GET /_synapse/admin/v3/users`
///
/// `deactivated` filters both ways: true only deactivated accounts, false only active ones.
async fn list_users_v3_route(
    s: AppState,
    req: Ruma<api::list_users_v3::Request, ServerAdmin>,
) -> ApiResult<api::list_users_v3::Response> {
    let q = req.body;
    let list =
        list_request(q.from, q.limit, (q.user_id, q.name), q.guests, q.deactivated, q.admins, (q.order_by, q.dir))?;
    let (users, next_token, total) = list_users(&s, list).await?;
    Ok(api::list_users_v3::Response { users, next_token, total })
}

/// # `GET /_synapse/admin/v2/users/{userId}`
async fn get_user_route(
    s: AppState,
    req: Ruma<api::get_user::Request, ServerAdmin>,
) -> ApiResult<api::get_user::Response> {
    let user = s.services.auth.admin_get_user(AdminUserRequest { user_id: req.body.user_id.to_string() }).await?;
    Ok(api::get_user::Response { user: details(user) })
}

/// # `PUT /_synapse/admin/v2/users/{userId}`
///
/// 201 when the account was created, 200 when it was modified (as Synapse).
async fn put_user_route(
    s: AppState,
    req: Ruma<api::put_user::Request, ServerAdmin>,
) -> ApiResult<WithStatus<api::put_user::Response>> {
    let (admin, b) = (req.user.user_id, req.body);
    let put = AdminPutUserRequest {
        admin,
        user_id: b.user_id.to_string(),
        password: b.password,
        logout_devices: b.logout_devices.unwrap_or(true),
        displayname: b.displayname,
        avatar_url: b.avatar_url,
        make_admin: b.admin,
        deactivated: b.deactivated,
        locked: b.locked,
    };
    let done = s.services.auth.admin_put_user(put).await?;
    let user = done.user.ok_or_else(|| Error::internal("no user in the answer"))?;
    // A deactivation (whose rooms the auth service has left) or a logout removed every
    // device: their pushers go and this gateway forgets their tokens.
    if done.deactivated_now || done.devices_logged_out {
        devices_removed(&s, &user.user_id, Which::All(true)).await?;
    }
    if user.locked {
        forget_devices(&s, &user.user_id, |_| true);
    }
    let status = if done.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(WithStatus(status, api::put_user::Response { user: details(user) }))
}

/// # `POST /_synapse/admin/v1/deactivate/{userId}`
async fn deactivate_route(
    s: AppState,
    req: Ruma<api::deactivate::Request, ServerAdmin>,
) -> ApiResult<api::deactivate::Response> {
    let user_id = req.body.user_id.to_string();
    let deactivate =
        AdminDeactivateRequest { admin: req.user.user_id, user_id: user_id.clone(), erase: req.body.erase };
    s.services.auth.admin_deactivate(deactivate).await?;
    devices_removed(&s, &user_id, Which::All(true)).await?;
    // No identity servers are bound here, so there was nothing to unbind.
    Ok(api::deactivate::Response { id_server_unbind_result: "success".to_owned() })
}

/// # `POST /_synapse/admin/v1/reset_password/{userId}`
async fn reset_password_route(
    s: AppState,
    req: Ruma<api::reset_password::Request, ServerAdmin>,
) -> ApiResult<api::reset_password::Response> {
    let (admin, b) = (req.user.user_id, req.body);
    let logout_devices = b.logout_devices.unwrap_or(true);
    let user_id = b.user_id.to_string();
    let reset =
        AdminResetPasswordRequest { admin, user_id: user_id.clone(), new_password: b.new_password, logout_devices };
    s.services.auth.admin_reset_password(reset).await?;
    if logout_devices {
        devices_removed(&s, &user_id, Which::All(true)).await?;
    }
    Ok(api::reset_password::Response {})
}

/// # `GET /_synapse/admin/v1/whois/{userId}`: the client API's whois, for admins.
async fn whois_route(s: AppState, req: Ruma<whois::Request, ServerAdmin>) -> ApiResult<whois::Response> {
    let ask = WhoisRequest { requester: req.user.user_id, user_id: req.body.user_id.to_string() };
    let found = s.services.auth.whois(ask).await?;
    Ok(whois_response(req.body.user_id, found))
}

/// # `GET /_synapse/admin/v1/users/{userId}/joined_rooms`
async fn joined_rooms_route(
    s: AppState,
    req: Ruma<api::joined_rooms::Request, ServerAdmin>,
) -> ApiResult<api::joined_rooms::Response> {
    let user_id = existing_user(&s, &req.body.user_id).await?;
    let rooms = s.services.rooms.joined_rooms(JoinedRoomsRequest { user_id }).await?.room_ids;
    let joined_rooms = rooms.into_iter().map(crate::client::stored_id).collect::<ApiResult<Vec<_>>>()?;
    Ok(api::joined_rooms::Response { total: joined_rooms.len(), joined_rooms })
}

/// # `GET /_synapse/admin/v1/users/{userId}/admin`
async fn get_admin_route(
    s: AppState,
    req: Ruma<api::get_admin::Request, ServerAdmin>,
) -> ApiResult<api::get_admin::Response> {
    let user = s.services.auth.admin_get_user(AdminUserRequest { user_id: req.body.user_id.to_string() }).await?;
    Ok(api::get_admin::Response { admin: user.admin })
}

/// # `PUT /_synapse/admin/v1/users/{userId}/admin`: only an existing account.
async fn set_admin_route(
    s: AppState,
    req: Ruma<api::set_admin::Request, ServerAdmin>,
) -> ApiResult<api::set_admin::Response> {
    let user_id = existing_user(&s, &req.body.user_id).await?;
    let put = AdminPutUserRequest {
        admin: req.user.user_id,
        user_id,
        make_admin: Some(req.body.admin),
        ..AdminPutUserRequest::default()
    };
    s.services.auth.admin_put_user(put).await?;
    Ok(api::set_admin::Response {})
}

/// # `GET /_synapse/admin/v2/users/{userId}/devices`
async fn list_devices_route(
    s: AppState,
    req: Ruma<api::list_devices::Request, ServerAdmin>,
) -> ApiResult<api::list_devices::Response> {
    let user_id = existing_user(&s, &req.body.user_id).await?;
    let found = s.services.auth.list_devices(ListDevicesRequest { user_id: user_id.clone() }).await?;
    let devices: Vec<_> = found
        .devices
        .into_iter()
        .map(|d| api::AdminDevice {
            device_id: d.device_id,
            display_name: d.display_name,
            last_seen_ip: d.last_seen_ip,
            last_seen_ts: d.last_seen_ts,
            last_seen_user_agent: None,
            user_id: user_id.clone(),
        })
        .collect();
    Ok(api::list_devices::Response { total: devices.len(), devices })
}

async fn delete_devices(s: &AppState, admin: String, user_id: String, device_ids: Vec<String>) -> ApiResult<()> {
    let req = AdminDeleteDevicesRequest { admin, user_id: user_id.clone(), device_ids: device_ids.clone() };
    s.services.auth.admin_delete_devices(req).await?;
    devices_removed(s, &user_id, these(device_ids)).await
}

/// # `POST /_synapse/admin/v2/users/{userId}/delete_devices`
async fn delete_devices_route(
    s: AppState,
    req: Ruma<api::delete_devices::Request, ServerAdmin>,
) -> ApiResult<api::delete_devices::Response> {
    let devices = req.body.devices.iter().map(ToString::to_string).collect();
    delete_devices(&s, req.user.user_id, req.body.user_id.to_string(), devices).await?;
    Ok(api::delete_devices::Response {})
}

/// # `DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}`
async fn delete_device_route(
    s: AppState,
    req: Ruma<api::delete_device::Request, ServerAdmin>,
) -> ApiResult<api::delete_device::Response> {
    let devices = vec![req.body.device_id.to_string()];
    delete_devices(&s, req.user.user_id, req.body.user_id.to_string(), devices).await?;
    Ok(api::delete_device::Response {})
}

/// # `POST /_synapse/admin/v1/users/{userId}/login`
async fn login_as_route(
    s: AppState,
    req: Ruma<api::login_as::Request, ServerAdmin>,
) -> ApiResult<api::login_as::Response> {
    let ask = AdminLoginAsRequest {
        admin: req.user.user_id,
        user_id: req.body.user_id.to_string(),
        valid_until_ms: req.body.valid_until_ms,
    };
    let token = s.services.auth.admin_login_as(ask).await?;
    Ok(api::login_as::Response { access_token: token.access_token })
}
