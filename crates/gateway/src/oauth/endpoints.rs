//! The OAuth 2.0 API's machine endpoints: server metadata (`GET /auth_metadata`, and the
//! unstable `auth_issuer` some clients still ask first), dynamic client registration
//! (RFC 7591), the token endpoint (RFC 6749, RFC 8628), revocation (RFC 7009) and device
//! authorization (RFC 8628 §3.1).

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use ruma::{api::client::discovery::get_authorization_server_metadata::v1 as auth_metadata, serde::Raw};
use serde::{Deserialize, Serialize};
use trellis_core::Error;
use trellis_proto::auth::{
    OauthClient, OauthClientMetadata, OauthDeviceAuthorizationRequest, OauthRevokeRequest, OauthTokenRequest,
};

use super::{
    ACCOUNT, PREFIX,
    web::{OauthError, base_url, form, no_store},
};
use crate::{
    AppState,
    client::{devices_removed, these},
    error::ApiResult,
    extract::{Origin, Ruma},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(get_authorization_server_metadata_route)
        .route("/_matrix/client/unstable/org.matrix.msc2965/auth_issuer", get(auth_issuer_route))
        .route(&format!("{PREFIX}/registration"), post(register_client_route))
        .route(&format!("{PREFIX}/token"), post(token_route))
        .route(&format!("{PREFIX}/revoke"), post(revoke_route))
        .route(&format!("{PREFIX}/device"), post(device_authorization_route))
}

/// RFC 8414 metadata as the spec lists it (ruma's type is only ever sent as raw JSON).
#[derive(Serialize)]
struct ServerMetadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    registration_endpoint: String,
    revocation_endpoint: String,
    device_authorization_endpoint: String,
    response_types_supported: [&'static str; 1],
    response_modes_supported: [&'static str; 2],
    grant_types_supported: [&'static str; 3],
    code_challenge_methods_supported: [&'static str; 1],
    token_endpoint_auth_methods_supported: [&'static str; 1],
    revocation_endpoint_auth_methods_supported: [&'static str; 1],
    prompt_values_supported: [&'static str; 1],
    account_management_uri: String,
    account_management_actions_supported: [&'static str; 4],
}

fn enabled(s: &AppState) -> Result<(), Error> {
    match s.settings.oauth_enabled {
        true => Ok(()),
        false => Err(Error::unrecognized("The OAuth 2.0 API is not enabled on this server")),
    }
}

/// # `GET /_matrix/client/v1/auth_metadata`
async fn get_authorization_server_metadata_route(
    s: AppState,
    req: Ruma<auth_metadata::Request>,
) -> ApiResult<auth_metadata::Response> {
    enabled(&s)?;
    let base = base_url(&s, req.origin.host.as_deref());
    let metadata = ServerMetadata {
        issuer: format!("{base}/"),
        authorization_endpoint: format!("{base}{PREFIX}/authorize"),
        token_endpoint: format!("{base}{PREFIX}/token"),
        registration_endpoint: format!("{base}{PREFIX}/registration"),
        revocation_endpoint: format!("{base}{PREFIX}/revoke"),
        device_authorization_endpoint: format!("{base}{PREFIX}/device"),
        response_types_supported: ["code"],
        response_modes_supported: ["query", "fragment"],
        grant_types_supported: ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        code_challenge_methods_supported: ["S256"],
        token_endpoint_auth_methods_supported: ["none"],
        revocation_endpoint_auth_methods_supported: ["none"],
        prompt_values_supported: ["create"],
        account_management_uri: format!("{base}{ACCOUNT}"),
        account_management_actions_supported: [
            "org.matrix.profile",
            "org.matrix.devices_list",
            "org.matrix.device_view",
            "org.matrix.device_delete",
        ],
    };
    Ok(auth_metadata::Response::new(Raw::from_json(serde_json::value::to_raw_value(&metadata)?)))
}

#[derive(Serialize)]
struct Issuer {
    issuer: String,
}

/// # `GET /_matrix/client/unstable/org.matrix.msc2965/auth_issuer` (MSC2965's first draft)
async fn auth_issuer_route(State(s): State<AppState>, origin: Origin) -> Result<Json<Issuer>, OauthError> {
    enabled(&s)?;
    Ok(Json(Issuer { issuer: format!("{}/", base_url(&s, origin.host.as_deref())) }))
}

/// RFC 7591 §2: the metadata Trellis registers (`#lang` variants are ignored).
#[derive(Deserialize)]
struct ClientMetadataBody {
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_uri: Option<String>,
    client_name: Option<String>,
    logo_uri: Option<String>,
    tos_uri: Option<String>,
    policy_uri: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    application_type: Option<String>,
}

/// RFC 7591 §3.2.1: the client ID and the metadata as registered.
#[derive(Serialize)]
struct RegisteredClient {
    client_id: String,
    client_id_issued_at: i64,
    redirect_uris: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tos_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_uri: Option<String>,
    grant_types: Vec<String>,
    response_types: Vec<String>,
    token_endpoint_auth_method: Option<String>,
    application_type: Option<String>,
}

impl From<OauthClient> for RegisteredClient {
    fn from(c: OauthClient) -> RegisteredClient {
        let m = c.metadata.unwrap_or_default();
        RegisteredClient {
            client_id: c.client_id,
            client_id_issued_at: c.client_id_issued_at,
            redirect_uris: m.redirect_uris,
            client_uri: m.client_uri,
            client_name: m.client_name,
            logo_uri: m.logo_uri,
            tos_uri: m.tos_uri,
            policy_uri: m.policy_uri,
            grant_types: m.grant_types,
            response_types: m.response_types,
            token_endpoint_auth_method: m.token_endpoint_auth_method,
            application_type: m.application_type,
        }
    }
}

/// # `POST /_trellis/oauth2/registration` (RFC 7591)
async fn register_client_route(State(s): State<AppState>, body: Bytes) -> Result<Response, OauthError> {
    enabled(&s)?;
    let body: ClientMetadataBody = serde_json::from_slice(&body).map_err(|_| {
        OauthError(
            Error::bad_json("The body is not valid client metadata")
                .with_field("oauth_error", "invalid_client_metadata"),
        )
    })?;
    let metadata = OauthClientMetadata {
        redirect_uris: body.redirect_uris,
        client_uri: body.client_uri,
        client_name: body.client_name,
        logo_uri: body.logo_uri,
        tos_uri: body.tos_uri,
        policy_uri: body.policy_uri,
        has_grant_types: body.grant_types.is_some(),
        grant_types: body.grant_types.unwrap_or_default(),
        has_response_types: body.response_types.is_some(),
        response_types: body.response_types.unwrap_or_default(),
        token_endpoint_auth_method: body.token_endpoint_auth_method,
        application_type: body.application_type,
    };
    let client = s.services.auth.oauth_register_client(metadata).await?;
    Ok(no_store((StatusCode::CREATED, Json(RegisteredClient::from(client))).into_response()))
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    grant_type: String,
    client_id: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    device_code: Option<String>,
}

/// RFC 6749 §5.1.
#[derive(Serialize)]
struct TokenAnswer {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    scope: String,
}

/// # `POST /_trellis/oauth2/token`
async fn token_route(State(s): State<AppState>, origin: Origin, body: Bytes) -> Result<Response, OauthError> {
    enabled(&s)?;
    let f: TokenForm = form(&body)?;
    let req = OauthTokenRequest {
        grant_type: f.grant_type,
        client_id: f.client_id,
        code: f.code,
        redirect_uri: f.redirect_uri,
        code_verifier: f.code_verifier,
        refresh_token: f.refresh_token,
        device_code: f.device_code,
        ip: origin.ip,
        user_agent: origin.user_agent,
    };
    let t = s.services.auth.oauth_token(req).await?;
    // A grant on a device ID that had tokens replaced them: this gateway forgets them now.
    crate::client::forget_devices(&s, &t.user_id, |d| d == t.device_id);
    let answer = TokenAnswer {
        access_token: t.access_token,
        token_type: "Bearer",
        expires_in: t.expires_in,
        refresh_token: t.refresh_token,
        scope: t.scope,
    };
    Ok(no_store(Json(answer).into_response()))
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    token: String,
    client_id: Option<String>,
}

/// # `POST /_trellis/oauth2/revoke` (RFC 7009): 200 whether or not the token was known.
async fn revoke_route(State(s): State<AppState>, body: Bytes) -> Result<Response, OauthError> {
    enabled(&s)?;
    let f: RevokeForm = form(&body)?;
    let ended = s.services.auth.oauth_revoke(OauthRevokeRequest { token: f.token, client_id: f.client_id }).await?;
    if let (Some(user_id), Some(device_id)) = (ended.user_id, ended.device_id) {
        devices_removed(&s, &user_id, these(vec![device_id])).await?;
    }
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
struct DeviceForm {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    scope: String,
}

/// RFC 8628 §3.2.
#[derive(Serialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    expires_in: i64,
    interval: i64,
}

/// # `POST /_trellis/oauth2/device` (RFC 8628 §3.1)
async fn device_authorization_route(
    State(s): State<AppState>,
    origin: Origin,
    body: Bytes,
) -> Result<Response, OauthError> {
    enabled(&s)?;
    let f: DeviceForm = form(&body)?;
    let d = s
        .services
        .auth
        .oauth_device_authorize(OauthDeviceAuthorizationRequest { client_id: f.client_id, scope: f.scope })
        .await?;
    let link = format!("{}{PREFIX}/link", base_url(&s, origin.host.as_deref()));
    let answer = DeviceAnswer {
        verification_uri_complete: format!("{link}?user_code={}", d.user_code),
        verification_uri: link,
        device_code: d.device_code,
        user_code: d.user_code,
        expires_in: d.expires_in,
        interval: d.interval,
    };
    Ok(no_store(Json(answer).into_response()))
}
