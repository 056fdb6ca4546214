//! The one extractor of an endpoint: [`Ruma`], its ruma request (path, query and body parsed
//! as the endpoint's metadata says) with the requester its authentication scheme asks for
//! (from `Authorization: Bearer` or `?access_token=`; a guest only on the endpoints
//! `guest.rs` opens to guests). Every rejection is a Matrix error: `M_MISSING_TOKEN`,
//! `M_NOT_JSON`, `M_BAD_JSON`, `M_INVALID_PARAM` or `M_TOO_LARGE`.

use axum::{
    extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, RawPathParams, Request},
    http::{header, request::Parts},
};
use std::time::Duration;

use axum::body::BodyDataStream;
use bytes::Bytes;
use futures_util::StreamExt;
use ruma::api::{
    IncomingRequest, IncomingRequestExt, Metadata,
    auth_scheme::{
        AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, NoAccessToken, NoAuthentication,
    },
    client::{account::change_password, authenticated_media::get_media_preview, media},
    error::{DeserializationError, FromHttpRequestError},
    path_builder::PathBuilder,
};
use trellis_core::{Error, ErrorCode};

use crate::{AppState, error::ApiError};

pub use crate::authed::{Authed, access_token};

/// A JSON request body read whole, within the JSON size limit, refused if it holds NUL
/// (`input.rs`). A body over the limit is still
/// read (and dropped) within bounds before the refusal goes out: a client that is still
/// sending would otherwise see its connection reset instead of `M_TOO_LARGE`.
pub async fn body_bytes(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut whole = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            // A broken connection has no reader for this answer.
            tracing::debug!(error = %e, "reading request body failed");
            ApiError(Error::bad_json("Request body could not be read"))
        })?;
        if whole.len() + chunk.len() > limit {
            linger(stream, (limit as u64).saturating_add(LINGER_EXTRA_BYTES)).await;
            return Err(ApiError(Error::too_large("Request body too large")));
        }
        whole.extend_from_slice(&chunk);
    }
    crate::input::check_json(&whole)?;
    Ok(whole.freeze())
}

/// Bytes read past a refusal before giving up on the client reading our answer.
pub const LINGER_EXTRA_BYTES: u64 = 4 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(10);

/// Reads and discards up to `limit` more bytes of an unwanted body, for at most
/// `LINGER_TIME`, so that the client reads our answer rather than a reset connection.
pub async fn linger(mut rest: BodyDataStream, limit: u64) {
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = rest.next().await {
            seen += chunk.len() as u64;
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// What an endpoint's authentication scheme (its ruma metadata) asks of a request, and who
/// the request is from once that is done.
pub trait Auth: Sized + Send + 'static {
    /// The requester: [`Authed`] when a token is required, `Option<Authed>` when it is
    /// optional (a token sent is still checked), `()` when the endpoint takes none.
    type Requester: Send + 'static;

    fn authenticate(
        parts: &mut Parts,
        state: &AppState,
    ) -> impl Future<Output = Result<Self::Requester, ApiError>> + Send;
}

impl Auth for AccessToken {
    type Requester = Authed;

    async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Authed, ApiError> {
        <Authed as FromRequestParts<AppState>>::from_request_parts(parts, state).await
    }
}

impl Auth for AccessTokenOptional {
    type Requester = Option<Authed>;

    async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Option<Authed>, ApiError> {
        <Authed as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state).await
    }
}

/// Endpoints open to anyone; a token sent along is not looked at.
macro_rules! no_auth {
    ($($scheme:ty),*) => {$(
        impl Auth for $scheme {
            type Requester = ();

            async fn authenticate(_: &mut Parts, _: &AppState) -> Result<(), ApiError> {
                Ok(())
            }
        }
    )*};
}
no_auth!(NoAuthentication, NoAccessToken);

/// `AppserviceToken`: an application service's `as_token` only (`M_FORBIDDEN` for a user's).
impl Auth for AppserviceToken {
    type Requester = Authed;

    async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Authed, ApiError> {
        let authed = <Authed as FromRequestParts<AppState>>::from_request_parts(parts, state).await?;
        if authed.appservice_id.is_none() {
            return Err(ApiError(Error::forbidden("Only application services can make this request")));
        }
        Ok(authed)
    }
}

/// `AppserviceTokenOptional` (register, login): the token as sent, checked by the auth service
/// only when the body asks for `m.login.application_service`.
impl Auth for AppserviceTokenOptional {
    type Requester = Option<String>;

    async fn authenticate(parts: &mut Parts, _: &AppState) -> Result<Option<String>, ApiError> {
        Ok(access_token(parts))
    }
}

/// An endpoint's request, parsed by ruma from path, query and body, with its requester as
/// the endpoint's metadata asks (`A`, which a handler overrides only where Trellis
/// authenticates otherwise than ruma's metadata says, with a comment saying why).
pub struct Ruma<T: Metadata, A: Auth = <T as Metadata>::Authentication> {
    pub body: T,
    pub user: A::Requester,
    /// Where the request came from (rate limits, a device's last-seen record).
    pub origin: Origin,
    /// The body as sent, for the few endpoints that keep keys ruma's type does not model.
    pub json: Bytes,
}

impl<T: Metadata, A: Auth> Ruma<T, A> {
    /// The body as a JSON object (`{}` when empty).
    pub fn json_object(&self) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
        parse_object(&self.json)
    }
}

impl<T: IncomingRequest + Send + 'static, A: Auth> FromRequest<AppState> for Ruma<T, A> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Ruma<T, A>, ApiError> {
        let (mut parts, body) = req.into_parts();
        // Who asks comes first: a request without a valid token learns nothing about its body.
        let user = A::authenticate(&mut parts, state).await?;
        let origin = origin(&parts, state);
        let (body, json) = parse_ruma(parts, body, state).await?;
        Ok(Ruma { body, user, origin, json })
    }
}

/// Parses path, query and body as `T`'s metadata says; also hands back the body read.
async fn parse_ruma<T: IncomingRequest + 'static>(
    mut parts: Parts,
    body: axum::body::Body,
    state: &AppState,
) -> Result<(T, Bytes), ApiError> {
    let params = RawPathParams::from_request_parts(&mut parts, state)
        .await
        .map_err(|_| Error::invalid_param("invalid path parameter"))?;
    let mut args: Vec<&str> = params.iter().map(|(_, v)| v).collect();
    // A compatibility route may end before the endpoint's last parameters (a state event
    // with an empty state key, `PUT /rooms/{roomId}/state/{eventType}`): they are empty.
    let wanted = T::PATH_BUILDER.all_paths().next().map_or(0, |p| p.matches('{').count());
    args.resize(wanted.max(args.len()), "");
    let mut bytes = body_bytes(body, state.settings.max_json_body_bytes).await?;
    // Clients (matrix-nio, curl) send bodiless POSTs to endpoints whose fields are all
    // optional; every endpoint reads that as `{}`, whether ruma's parser does or not.
    if bytes.iter().all(u8::is_ascii_whitespace) && parts.method != axum::http::Method::GET {
        bytes = Bytes::from_static(b"{}");
    }
    let request = axum::http::Request::from_parts(parts, bytes.as_ref());
    let parse = || T::try_from_http_request(request, &args).map_err(parse_error::<T>);
    let parsed = crate::input::parse_or_refuse(parse).map_err(ApiError)?;
    Ok((parsed, bytes))
}

/// The required fields whose absence Synapse answers with `M_MISSING_PARAM` (it checks them
/// by hand), where ruma's parser would say `M_BAD_JSON`: by endpoint, the field.
fn missing_param<T: 'static>() -> Option<&'static str> {
    use std::any::TypeId;

    use ruma::api::client::backup::*;
    #[allow(deprecated)] // the legacy media endpoints are deprecated, and still served
    let table = [
        (TypeId::of::<crate::adjust::Uia<change_password::v3::Request>>(), "new_password"),
        (TypeId::of::<crate::admin::ResetPasswordRequest>(), "new_password"),
        (TypeId::of::<get_media_preview::v1::Request>(), "url"),
        (TypeId::of::<media::get_media_preview::v3::Request>(), "url"),
        (TypeId::of::<ruma::api::client::uiaa::get_uiaa_fallback_page::v3::Request>(), "session"),
        (TypeId::of::<get_backup_keys::v3::Request>(), "version"),
        (TypeId::of::<get_backup_keys_for_room::v3::Request>(), "version"),
        (TypeId::of::<get_backup_keys_for_session::v3::Request>(), "version"),
        (TypeId::of::<add_backup_keys::v3::Request>(), "version"),
        (TypeId::of::<add_backup_keys_for_room::v3::Request>(), "version"),
        (TypeId::of::<add_backup_keys_for_session::v3::Request>(), "version"),
        (TypeId::of::<delete_backup_keys::v3::Request>(), "version"),
        (TypeId::of::<delete_backup_keys_for_room::v3::Request>(), "version"),
        (TypeId::of::<delete_backup_keys_for_session::v3::Request>(), "version"),
    ];
    table.iter().find(|(t, _)| *t == TypeId::of::<T>()).map(|(_, field)| *field)
}

/// Maps ruma's parse failures to the spec's errcodes.
fn parse_error<T: 'static>(e: FromHttpRequestError) -> Error {
    if let Some(field) = missing_param::<T>()
        && e.to_string().contains(&format!("missing field `{field}`"))
    {
        return Error::missing_param(format!("Missing parameter: {field}"));
    }
    match e {
        FromHttpRequestError::Deserialization(DeserializationError::Json(j)) => match j.classify() {
            // A string that is no room version ID names a version this server does not have
            // (Synapse's answer; a non-string stays M_BAD_JSON).
            serde_json::error::Category::Data if is_unknown_room_version(&j) => {
                Error::new(ErrorCode::UnsupportedRoomVersion, "Your homeserver does not support this room version")
            }
            serde_json::error::Category::Data => Error::bad_json(j.to_string()),
            _ => Error::new(ErrorCode::NotJson, "Content not JSON."),
        },
        FromHttpRequestError::Deserialization(DeserializationError::Utf8(_)) => {
            Error::new(ErrorCode::NotJson, "Content not JSON.")
        }
        FromHttpRequestError::Deserialization(DeserializationError::Ident(e)) => {
            Error::invalid_param(format!("invalid identifier: {e}"))
        }
        FromHttpRequestError::Deserialization(other) => Error::invalid_param(other.to_string()),
        FromHttpRequestError::MethodMismatch { .. } => Error::unrecognized("Unrecognized request").with_status(405),
        other => Error::bad_json(other.to_string()),
    }
}

/// Whether ruma refused a string as a room version ID (its grammar allows only `[a-z0-9.-]`).
fn is_unknown_room_version(e: &serde_json::Error) -> bool {
    let text = e.to_string();
    text.starts_with("invalid value: string") && text.contains("expected a Matrix room version ID")
}

/// A JSON object body, for the routes that are not `Ruma<T>`: compatibility shims ruma has
/// no type for, and the endpoints whose body their service reads (custom profile fields,
/// event contents).
pub struct JsonObject(pub serde_json::Map<String, serde_json::Value>);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<JsonObject, ApiError> {
        let bytes = body_bytes(req.into_body(), state.settings.max_json_body_bytes).await?;
        parse_object(&bytes).map(JsonObject)
    }
}

/// Parses a JSON object body; an empty body counts as `{}`.
pub fn parse_object(bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError(Error::bad_json("Body must be a JSON object"))),
        Err(_) => Err(ApiError(Error::new(ErrorCode::NotJson, "Content not JSON."))),
    }
}

/// Where a request comes from, for a device's last-seen record and rate limits: the client's
/// address (the TCP peer, or with `http.x_forwarded_for` the address the proxy in front
/// appended last to `X-Forwarded-For`; `None` without connect info) and its `User-Agent`.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The `Host` the client reached.
    pub host: Option<String>,
}

impl Origin {
    /// The client's address, as the key of a per-address rate limit.
    pub fn ip_or_unknown(&self) -> String {
        self.ip.clone().unwrap_or_else(|| "unknown".to_owned())
    }
}

/// For plain handlers (the fallback pages' form posts, the OAuth 2.0 pages and endpoints).
impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Origin, Self::Rejection> {
        Ok(origin(parts, state))
    }
}

fn origin(parts: &Parts, state: &AppState) -> Origin {
    let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned);
    Origin { ip: client_ip(parts, state), user_agent: user_agent(parts), host }
}

/// The request's `User-Agent`, if it sent a readable one.
pub(crate) fn user_agent(parts: &Parts) -> Option<String> {
    parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// See [`Origin`]; `None` when the server was started without connect info.
pub(crate) fn client_ip(parts: &Parts, state: &AppState) -> Option<String> {
    if state.settings.x_forwarded_for
        && let Some(forwarded) = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok())
        && let Some(last) = forwarded.rsplit(',').map(str::trim).find(|s| !s.is_empty())
    {
        return Some(last.to_owned());
    }
    parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string())
}
