//! Account management: password change, deactivation (auth first, then the rooms service
//! makes the user leave every room), and third-party identifiers, which this server does not
//! support (an empty list; adding or binding one is refused, as Synapse without 3PIDs does).

use axum::Router;
use ruma::api::{
    auth_scheme::AccessToken,
    client::account::{
        ThirdPartyIdRemovalStatus, add_3pid, bind_3pid, change_password, deactivate, delete_3pid, get_3pids,
        request_3pid_management_token_via_email, request_3pid_management_token_via_msisdn, unbind_3pid,
    },
};
use trellis_core::{Error, ErrorCode};
use trellis_proto::{
    auth::{ChangePasswordRequest, DeactivateRequest},
    rooms::LeaveAllRoomsRequest,
    sync::delete_device_pushers_request::Which,
};

use super::devices::devices_removed;
use crate::{
    AppState,
    adjust::Uia,
    error::{ApiError, ApiResult},
    extract::Ruma,
    response::Rendered,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(change_password_route)
        .ruma(deactivate_route)
        .ruma(get_3pids_route)
        .ruma(add_3pid_route)
        .ruma(bind_3pid_route)
        .ruma(request_3pid_management_token_via_email_route)
        .ruma(request_3pid_management_token_via_msisdn_route)
        .ruma(delete_3pid_route)
        .ruma(unbind_3pid_route)
}

/// # `POST /_matrix/client/v3/account/password`
///
/// A token is required (ruma's metadata calls it optional, for servers that let a user
/// prove themselves by e-mail instead; Trellis has no such flow).
async fn change_password_route(
    s: AppState,
    req: Ruma<Uia<change_password::v3::Request>, AccessToken>,
) -> ApiResult<change_password::v3::Response> {
    let (auth, body) = (req.user, req.body);
    let logout_devices = body.request.logout_devices;
    let change = ChangePasswordRequest {
        user_id: auth.user_id.clone(),
        device_id: auth.device_id.clone(),
        new_password: body.request.new_password.clone(),
        logout_devices,
        auth_json: body.auth_json(),
    };
    s.services.auth.change_password(change).await?;
    if logout_devices {
        devices_removed(&s, &auth.user_id, Which::AllBut(auth.device_id)).await?;
    }
    Ok(change_password::v3::Response::new())
}

/// # `POST /_matrix/client/v3/account/deactivate`
///
/// A token is required, as Synapse requires it (ruma's metadata calls it optional).
async fn deactivate_route(
    s: AppState,
    req: Ruma<Uia<deactivate::v3::Request>, AccessToken>,
) -> ApiResult<deactivate::v3::Response> {
    let user_id = req.user.user_id.clone();
    let deactivate = DeactivateRequest {
        user_id: user_id.clone(),
        auth_json: req.body.auth_json(),
        erase: req.body.request.erase,
        appservice_id: req.user.appservice_id.clone(),
    };
    s.services.auth.deactivate(deactivate).await?;
    finish_deactivation(&s, user_id).await?;
    Ok(deactivate::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}

/// After the auth service deactivated an account (here or through the admin API): its
/// pushers go, this gateway forgets its tokens, and the rooms service has it leave its rooms.
pub(crate) async fn finish_deactivation(s: &AppState, user_id: String) -> ApiResult<()> {
    devices_removed(s, &user_id, Which::All(true)).await?;
    s.services.rooms.leave_all_rooms(LeaveAllRoomsRequest { user_id }).await?;
    Ok(())
}

/// # `GET /_matrix/client/v3/account/3pid`
///
/// Synapse sends the empty list (ruma's type leaves an empty one out).
async fn get_3pids_route(_: AppState, _: Ruma<get_3pids::v3::Request>) -> ApiResult<Rendered<get_3pids::v3::Response>> {
    Ok(Rendered::new(r#"{"threepids":[]}"#.to_owned()))
}

fn threepid_denied() -> ApiError {
    ApiError(Error::new(ErrorCode::ThreepidDenied, "Third-party identifiers are not supported on this server"))
}

/// # `POST /_matrix/client/v3/account/3pid/add`
async fn add_3pid_route(_: AppState, _: Ruma<Uia<add_3pid::v3::Request>>) -> ApiResult<add_3pid::v3::Response> {
    Err(threepid_denied())
}

/// # `POST /_matrix/client/v3/account/3pid/bind`
async fn bind_3pid_route(_: AppState, _: Ruma<bind_3pid::v3::Request>) -> ApiResult<bind_3pid::v3::Response> {
    Err(threepid_denied())
}

/// # `POST /_matrix/client/v3/account/3pid/email/requestToken` (no auth needed)
async fn request_3pid_management_token_via_email_route(
    _: AppState,
    _: Ruma<request_3pid_management_token_via_email::v3::Request>,
) -> ApiResult<request_3pid_management_token_via_email::v3::Response> {
    Err(threepid_denied())
}

/// # `POST /_matrix/client/v3/account/3pid/msisdn/requestToken` (no auth needed)
async fn request_3pid_management_token_via_msisdn_route(
    _: AppState,
    _: Ruma<request_3pid_management_token_via_msisdn::v3::Request>,
) -> ApiResult<request_3pid_management_token_via_msisdn::v3::Response> {
    Err(threepid_denied())
}

/// # `POST /_matrix/client/v3/account/3pid/delete`: there is nothing to remove.
async fn delete_3pid_route(_: AppState, _: Ruma<delete_3pid::v3::Request>) -> ApiResult<delete_3pid::v3::Response> {
    Ok(delete_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}

/// # `POST /_matrix/client/v3/account/3pid/unbind`: there is nothing to remove.
async fn unbind_3pid_route(_: AppState, _: Ruma<unbind_3pid::v3::Request>) -> ApiResult<unbind_3pid::v3::Response> {
    Ok(unbind_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}
