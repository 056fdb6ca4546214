//! Third-party identifiers (spec "Adding Account Administrative Contact Information"): the
//! email `/requestToken` endpoints (the auth service mails the link itself), the page the
//! link opens, the 3PIDs of an account (list, add, delete) and binding them on an identity
//! server (bind, unbind). Phone numbers are not validated by this server.

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::account::{
        ThirdPartyIdRemovalStatus, add_3pid, bind_3pid, delete_3pid, get_3pids,
        request_3pid_management_token_via_email, request_password_change_token_via_email,
        request_registration_token_via_email, unbind_3pid,
    },
    thirdparty::{Medium, ThirdPartyIdentifier, ThirdPartyIdentifierInit},
};
use serde::{Deserialize, Serialize};
use trellis_core::{Error, ratelimit::Action};
use trellis_proto::auth::{
    AddThreepidRequest, BindThreepidRequest, DeleteThreepidRequest, ListThreepidsRequest, LookupThreepidRequest,
    RequestThreepidTokenRequest, SubmitThreepidTokenRequest, ThreepidPurpose, ThreepidUnbindResult,
};

use crate::{
    AppState,
    adjust::Uia,
    authed::Authed,
    error::{ApiError, ApiResult},
    extract::{JsonObject, Ruma},
    html,
    response::Rendered,
    router::{RumaRoutes, also_under, paths_of},
};

/// The link in a validation mail (Synapse's path: clients and SyTest know it).
const SUBMIT_TOKEN_PATH: &str = "/_synapse/client/email/submit_token";

pub fn routes() -> Router<AppState> {
    let unstable = |paths| also_under(paths, "/_matrix/client/", &["unstable"]);
    let mut router = Router::new()
        .ruma(request_3pid_management_token_via_email_route)
        .ruma(request_registration_token_via_email_route)
        .ruma(request_password_change_token_via_email_route)
        .ruma(add_3pid_route)
        .ruma(delete_3pid_route)
        .ruma_on(unstable(paths_of::<bind_3pid::v3::Request>()), bind_3pid_route)
        .ruma_on(unstable(paths_of::<unbind_3pid::v3::Request>()), unbind_3pid_route)
        .route(SUBMIT_TOKEN_PATH, get(submit_token_route));
    // `GET` lists; the deprecated `POST` on the same path adds (r0 clients, SyTest).
    for path in paths_of::<get_3pids::v3::Request>() {
        router = router.route(&path, get(get_3pids_route).post(add_3pid_deprecated_route));
    }
    router
}

async fn request_token(
    s: &AppState,
    ip: &str,
    purpose: ThreepidPurpose,
    client_secret: &str,
    email: &str,
    send_attempt: UInt,
    next_link: Option<String>,
) -> ApiResult<ruma::OwnedSessionId> {
    s.limit(Action::ThreepidValidation, ip).await?;
    s.limit(Action::ThreepidValidation, &format!("email:{}", email.trim().to_lowercase())).await?;
    let session = s
        .services
        .auth
        .request_threepid_token(RequestThreepidTokenRequest {
            purpose: purpose as i32,
            client_secret: client_secret.to_owned(),
            email: email.to_owned(),
            send_attempt: send_attempt.into(),
            next_link,
        })
        .await?;
    super::stored_id(session.sid)
}

/// # `POST /_matrix/client/v3/account/3pid/email/requestToken`
async fn request_3pid_management_token_via_email_route(
    s: AppState,
    req: Ruma<request_3pid_management_token_via_email::v3::Request>,
) -> ApiResult<request_3pid_management_token_via_email::v3::Response> {
    let (ip, b) = (req.origin.ip_or_unknown(), req.body);
    let sid =
        request_token(&s, &ip, ThreepidPurpose::Add, b.client_secret.as_str(), &b.email, b.send_attempt, b.next_link)
            .await?;
    Ok(request_3pid_management_token_via_email::v3::Response::new(sid))
}

/// # `POST /_matrix/client/v3/register/email/requestToken`
async fn request_registration_token_via_email_route(
    s: AppState,
    req: Ruma<request_registration_token_via_email::v3::Request>,
) -> ApiResult<request_registration_token_via_email::v3::Response> {
    let (ip, b) = (req.origin.ip_or_unknown(), req.body);
    let purpose = ThreepidPurpose::Register;
    let sid = request_token(&s, &ip, purpose, b.client_secret.as_str(), &b.email, b.send_attempt, b.next_link).await?;
    Ok(request_registration_token_via_email::v3::Response::new(sid))
}

/// # `POST /_matrix/client/v3/account/password/email/requestToken`
async fn request_password_change_token_via_email_route(
    s: AppState,
    req: Ruma<request_password_change_token_via_email::v3::Request>,
) -> ApiResult<request_password_change_token_via_email::v3::Response> {
    let (ip, b) = (req.origin.ip_or_unknown(), req.body);
    let purpose = ThreepidPurpose::PasswordReset;
    let sid = request_token(&s, &ip, purpose, b.client_secret.as_str(), &b.email, b.send_attempt, b.next_link).await?;
    Ok(request_password_change_token_via_email::v3::Response::new(sid))
}

/// The query of the link in a validation mail.
#[derive(Deserialize)]
struct SubmitToken {
    token: String,
    client_secret: String,
    sid: String,
}

/// # `GET /_synapse/client/email/submit_token`
///
/// The page a validation mail links to: validates the session, then sends the browser on to
/// the session's `next_link`, if it has one.
async fn submit_token_route(
    State(s): State<AppState>,
    query: Result<Query<SubmitToken>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return html::error_page(StatusCode::BAD_REQUEST, "This link is incomplete.");
    };
    let submit = SubmitThreepidTokenRequest { sid: q.sid, client_secret: q.client_secret, token: q.token };
    match s.services.auth.submit_threepid_token(submit).await {
        Ok(done) => match done.next_link {
            Some(link) => (StatusCode::FOUND, [(header::LOCATION, link)]).into_response(),
            None => html::page(
                StatusCode::OK,
                "Email validated",
                "<p>Your email address has been validated. You may close this page.</p>",
            ),
        },
        Err(e) if e.status() < 500 => {
            html::error_page(StatusCode::BAD_REQUEST, "This link is not valid, or has expired.")
        }
        Err(e) => ApiError(e).into_response(),
    }
}

/// # `GET /_matrix/client/v3/account/3pid`
///
/// Synapse sends an empty list (ruma's type leaves an empty one out).
async fn get_3pids_route(State(s): State<AppState>, auth: Authed) -> ApiResult<Rendered<get_3pids::v3::Response>> {
    let list = s.services.auth.list_threepids(ListThreepidsRequest { user_id: auth.user_id }).await?;
    let threepids: Vec<ThirdPartyIdentifier> = list
        .threepids
        .into_iter()
        .map(|t| {
            let ms = |v: i64| MilliSecondsSinceUnixEpoch(UInt::try_from(v.max(0)).unwrap_or_default());
            ThirdPartyIdentifierInit {
                address: t.address,
                medium: Medium::from(t.medium.as_str()),
                validated_at: ms(t.validated_at),
                added_at: ms(t.added_at),
            }
            .into()
        })
        .collect();
    #[derive(Serialize)]
    struct Listed {
        threepids: Vec<ThirdPartyIdentifier>,
    }
    Rendered::shaped(&Listed { threepids })
}

/// `three_pid_creds` of the deprecated `POST /account/3pid` (also spelled `threePidCreds`).
#[derive(Deserialize)]
struct DeprecatedAdd {
    #[serde(alias = "threePidCreds")]
    three_pid_creds: Creds,
}

#[derive(Deserialize)]
struct Creds {
    sid: String,
    client_secret: String,
}

/// # `POST /_matrix/client/v3/account/3pid` (deprecated since r0.6)
///
/// Adds the validated 3PID without user-interactive auth, as Synapse still does.
async fn add_3pid_deprecated_route(
    State(s): State<AppState>,
    auth: Authed,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<serde_json::Map<String, serde_json::Value>>> {
    // Read as every JSON body is (size limit, NUL refused), then as this endpoint's shape.
    let body: DeprecatedAdd = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|_| Error::bad_json("three_pid_creds with sid and client_secret"))?;
    let add = AddThreepidRequest {
        user_id: auth.user_id,
        sid: body.three_pid_creds.sid,
        client_secret: body.three_pid_creds.client_secret,
        auth_json: String::new(),
        without_uia: true,
    };
    s.services.auth.add_threepid(add).await?;
    Ok(Json(serde_json::Map::new()))
}

/// # `POST /_matrix/client/v3/account/3pid/add`
async fn add_3pid_route(s: AppState, req: Ruma<Uia<add_3pid::v3::Request>>) -> ApiResult<add_3pid::v3::Response> {
    let add = AddThreepidRequest {
        user_id: req.user.user_id.clone(),
        sid: req.body.request.sid.to_string(),
        client_secret: req.body.request.client_secret.to_string(),
        auth_json: req.body.auth_json(),
        without_uia: false,
    };
    s.services.auth.add_threepid(add).await?;
    Ok(add_3pid::v3::Response::new())
}

fn removal_status(result: &ThreepidUnbindResult) -> ThirdPartyIdRemovalStatus {
    match result.id_server_unbind_result.as_str() {
        "success" => ThirdPartyIdRemovalStatus::Success,
        _ => ThirdPartyIdRemovalStatus::NoSupport,
    }
}

/// # `POST /_matrix/client/v3/account/3pid/delete`
async fn delete_3pid_route(s: AppState, req: Ruma<delete_3pid::v3::Request>) -> ApiResult<delete_3pid::v3::Response> {
    let delete = DeleteThreepidRequest {
        user_id: req.user.user_id.clone(),
        medium: req.body.medium.to_string(),
        address: req.body.address,
        id_server: req.body.id_server,
    };
    let result = s.services.auth.delete_threepid(delete).await?;
    Ok(delete_3pid::v3::Response::new(removal_status(&result)))
}

/// # `POST /_matrix/client/v3/account/3pid/unbind`
async fn unbind_3pid_route(s: AppState, req: Ruma<unbind_3pid::v3::Request>) -> ApiResult<unbind_3pid::v3::Response> {
    let unbind = DeleteThreepidRequest {
        user_id: req.user.user_id.clone(),
        medium: req.body.medium.to_string(),
        address: req.body.address,
        id_server: req.body.id_server,
    };
    let result = s.services.auth.unbind_threepid(unbind).await?;
    Ok(unbind_3pid::v3::Response::new(removal_status(&result)))
}

/// # `POST /_matrix/client/v3/account/3pid/bind`
async fn bind_3pid_route(s: AppState, req: Ruma<bind_3pid::v3::Request>) -> ApiResult<bind_3pid::v3::Response> {
    let b = req.body;
    let bind = BindThreepidRequest {
        user_id: req.user.user_id.clone(),
        sid: b.sid.to_string(),
        client_secret: b.client_secret.to_string(),
        id_server: b.identity_server_info.id_server,
        id_access_token: b.identity_server_info.id_access_token,
    };
    s.services.auth.bind_threepid(bind).await?;
    Ok(bind_3pid::v3::Response::new())
}

/// The user an identity server says has the 3PID a third-party invite names (`/invite` with
/// `id_server`, `invite_3pid` on `createRoom`); none if nobody has bound it there.
pub(crate) async fn invitee(
    s: &AppState,
    invite: &ruma::api::client::membership::Invite3pid,
) -> ApiResult<Option<String>> {
    let lookup = LookupThreepidRequest {
        id_server: invite.id_server.clone(),
        id_access_token: invite.id_access_token.clone(),
        medium: invite.medium.to_string(),
        address: invite.address.clone(),
    };
    Ok(s.services.auth.lookup_threepid(lookup).await?.user_id)
}
