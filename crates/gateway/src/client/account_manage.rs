//! Account management: password change, deactivation (auth first, then the rooms service
//! makes the user leave every room), and third-party identifiers, which this server does not
//! support (an empty list; adding or binding one is refused, as Synapse without 3PIDs does).

use axum::{Json, Router, extract::State};
use ruma::api::client::account::{
    add_3pid, bind_3pid, change_password, deactivate, delete_3pid, get_3pids, request_3pid_management_token_via_email,
    request_3pid_management_token_via_msisdn, unbind_3pid,
};
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_core::{Error, ErrorCode};
use trellis_proto::{
    auth::{ChangePasswordRequest, DeactivateRequest},
    rooms::LeaveAllRoomsRequest,
    sync::delete_device_pushers_request::Which,
};

use super::devices::{delete_pushers, forget_devices};
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::{Authed, JsonObject, from_object},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<change_password::v3::Request, _, _>(password_route)
        .ruma::<deactivate::v3::Request, _, _>(deactivate_route)
        .ruma::<get_3pids::v3::Request, _, _>(threepids_route)
        .ruma::<add_3pid::v3::Request, _, _>(threepid_refused_route)
        .ruma::<bind_3pid::v3::Request, _, _>(threepid_refused_route)
        .ruma::<request_3pid_management_token_via_email::v3::Request, _, _>(threepid_token_route)
        .ruma::<request_3pid_management_token_via_msisdn::v3::Request, _, _>(threepid_token_route)
        .ruma::<delete_3pid::v3::Request, _, _>(threepid_removed_route)
        .ruma::<unbind_3pid::v3::Request, _, _>(threepid_removed_route)
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
struct PasswordBody {
    new_password: Option<String>,
    #[serde(default = "default_true")]
    logout_devices: bool,
    auth: Option<Value>,
}

/// # `POST /_matrix/client/v3/account/password`
async fn password_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let body: PasswordBody = from_object(body)?;
    let new_password = body.new_password.ok_or_else(|| Error::missing_param("Missing params: new_password"))?;
    let req = ChangePasswordRequest {
        user_id: auth.user_id.clone(),
        device_id: auth.device_id.clone(),
        new_password,
        logout_devices: body.logout_devices,
        auth_json: body.auth.map(|a| a.to_string()).unwrap_or_default(),
    };
    s.services.auth.change_password(req).await?;
    if body.logout_devices {
        delete_pushers(&s, &auth.user_id, Which::AllBut(auth.device_id.clone())).await?;
        let own = auth.device_id;
        forget_devices(&s, &auth.user_id, move |d| d != own);
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct DeactivateBody {
    auth: Option<Value>,
    #[serde(default)]
    erase: bool,
}

/// # `POST /_matrix/client/v3/account/deactivate`
async fn deactivate_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let body: DeactivateBody = from_object(body)?;
    let req = DeactivateRequest {
        user_id: auth.user_id.clone(),
        auth_json: body.auth.map(|a| a.to_string()).unwrap_or_default(),
        erase: body.erase,
    };
    s.services.auth.deactivate(req).await?;
    delete_pushers(&s, &auth.user_id, Which::All(true)).await?;
    forget_devices(&s, &auth.user_id, |_| true);
    s.services.rooms.leave_all_rooms(LeaveAllRoomsRequest { user_id: auth.user_id }).await?;
    Ok(Json(json!({ "id_server_unbind_result": "no-support" })))
}

/// # `GET /_matrix/client/v3/account/3pid`
async fn threepids_route(_auth: Authed) -> Json<Value> {
    Json(json!({ "threepids": [] }))
}

fn threepid_denied() -> ApiError {
    ApiError(Error::new(ErrorCode::ThreepidDenied, "Third-party identifiers are not supported on this server"))
}

/// # `POST /_matrix/client/v3/account/3pid/{add,bind}`
async fn threepid_refused_route(_auth: Authed) -> ApiError {
    threepid_denied()
}

/// # `POST /_matrix/client/v3/account/3pid/{email,msisdn}/requestToken` (no auth needed)
async fn threepid_token_route() -> ApiError {
    threepid_denied()
}

/// # `POST /_matrix/client/v3/account/3pid/{delete,unbind}`: there is nothing to remove.
async fn threepid_removed_route(_auth: Authed) -> Json<Value> {
    Json(json!({ "id_server_unbind_result": "no-support" }))
}
