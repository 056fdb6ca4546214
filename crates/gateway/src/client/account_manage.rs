//! Account management: password change (or reset, proved by email: `threepid.rs` has the
//! 3PID endpoints), deactivation (the auth service deactivates and has the rooms service make
//! the user leave every room), and phone numbers, which this server does not validate.

use axum::Router;
use ruma::api::{
    auth_scheme::AccessToken,
    client::account::{
        ThirdPartyIdRemovalStatus, change_password, deactivate, request_3pid_management_token_via_msisdn,
        request_password_change_token_via_msisdn, request_registration_token_via_msisdn,
    },
};
use trellis_core::{Error, ErrorCode};
use trellis_proto::{
    auth::{ChangePasswordRequest, DeactivateRequest, ResetPasswordRequest},
    sync::delete_device_pushers_request::Which,
};

use super::devices::devices_removed;
use crate::{
    AppState,
    adjust::Uia,
    error::{ApiError, ApiResult},
    extract::Ruma,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(change_password_route)
        .ruma(deactivate_route)
        .ruma(request_3pid_management_token_via_msisdn_route)
        .ruma(request_registration_token_via_msisdn_route)
        .ruma(request_password_change_token_via_msisdn_route)
}

/// # `POST /_matrix/client/v3/account/password`
///
/// Without an access token it is a password reset: the `m.login.email.identity` stage
/// names the account by an address of it.
async fn change_password_route(
    s: AppState,
    req: Ruma<Uia<change_password::v3::Request>>,
) -> ApiResult<change_password::v3::Response> {
    let (auth, body) = (req.user, req.body);
    let logout_devices = body.request.logout_devices;
    let Some(auth) = auth else {
        let reset = ResetPasswordRequest {
            new_password: body.request.new_password.clone(),
            logout_devices,
            auth_json: body.auth_json(),
        };
        let reset = s.services.auth.reset_password(reset).await?;
        if logout_devices {
            devices_removed(&s, &reset.user_id, Which::All(true)).await?;
        }
        return Ok(change_password::v3::Response::new());
    };
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
    let unbound = s.services.auth.deactivate(deactivate).await?;
    devices_removed(&s, &user_id, Which::All(true)).await?;
    Ok(deactivate::v3::Response::new(match unbound.id_server_unbind_result.as_str() {
        "success" => ThirdPartyIdRemovalStatus::Success,
        _ => ThirdPartyIdRemovalStatus::NoSupport,
    }))
}

fn threepid_denied() -> ApiError {
    ApiError(Error::new(ErrorCode::ThreepidDenied, "Phone numbers are not supported on this server"))
}

/// # `POST /_matrix/client/v3/account/3pid/msisdn/requestToken` (no auth needed)
async fn request_3pid_management_token_via_msisdn_route(
    _: AppState,
    _: Ruma<request_3pid_management_token_via_msisdn::v3::Request>,
) -> ApiResult<request_3pid_management_token_via_msisdn::v3::Response> {
    Err(threepid_denied())
}

/// # `POST /_matrix/client/v3/register/msisdn/requestToken`
async fn request_registration_token_via_msisdn_route(
    _: AppState,
    _: Ruma<request_registration_token_via_msisdn::v3::Request>,
) -> ApiResult<request_registration_token_via_msisdn::v3::Response> {
    Err(threepid_denied())
}

/// # `POST /_matrix/client/v3/account/password/msisdn/requestToken`
async fn request_password_change_token_via_msisdn_route(
    _: AppState,
    _: Ruma<request_password_change_token_via_msisdn::v3::Request>,
) -> ApiResult<request_password_change_token_via_msisdn::v3::Response> {
    Err(threepid_denied())
}
