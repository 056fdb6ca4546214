//! What the OAuth endpoints and pages share: the RFC 6749 error body, the public base URL,
//! cookies, CSRF tokens and form bodies.

use axum::{
    Json,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};
use trellis_core::{Error, ids::random_string};

use crate::{AppState, error::ApiError};

/// The browser session cookie (its value is the auth service's session token).
pub const SESSION_COOKIE: &str = "trellis_oauth_session";
/// The double-submit CSRF cookie every form repeats in its `csrf` field.
pub const CSRF_COOKIE: &str = "trellis_oauth_csrf";

/// An OAuth endpoint's refusal: `{"error", "error_description"}` with the RFC's status when
/// the auth service named an OAuth error, else the Matrix error body (`M_UNRECOGNIZED` while
/// the API is off; `M_UNKNOWN` for internal failures, logged once).
pub struct OauthError(pub Error);

impl From<Error> for OauthError {
    fn from(e: Error) -> OauthError {
        OauthError(e)
    }
}

impl From<ApiError> for OauthError {
    fn from(e: ApiError) -> OauthError {
        OauthError(e.0)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// The RFC's error value of an error from the auth service, if it is an OAuth refusal.
pub fn oauth_kind(err: &Error) -> Option<&str> {
    err.matrix().and_then(|m| m.extra.get("oauth_error")).and_then(|v| v.as_str())
}

impl IntoResponse for OauthError {
    fn into_response(self) -> Response {
        let Some(kind) = oauth_kind(&self.0) else { return ApiError(self.0).into_response() };
        let message = self.0.matrix().map(|m| m.message.as_str()).unwrap_or_default();
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::BAD_REQUEST);
        no_store((status, Json(ErrorBody { error: kind, error_description: message })).into_response())
    }
}

/// RFC 6749 §5.1: token answers are never cached.
pub fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An `invalid_request` for a body that does not parse.
pub fn invalid_request(description: &str) -> OauthError {
    OauthError(Error::invalid_param(description).with_field("oauth_error", "invalid_request"))
}

/// Parses an `application/x-www-form-urlencoded` body.
pub fn form<T: DeserializeOwned>(body: &[u8]) -> Result<T, OauthError> {
    serde_urlencoded::from_bytes(body).map_err(|_| invalid_request("The body is not a valid form"))
}

/// The public base URL, without a trailing slash: `public_baseurl`, or the host reached.
pub fn base_url(s: &AppState, host: Option<&str>) -> String {
    s.settings.base_url(host).trim_end_matches('/').to_owned()
}

/// A cookie's value.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value for the pages (`Secure` when they are served over https).
pub fn set_cookie(s: &AppState, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = s.settings.public_baseurl.as_deref().is_some_and(|b| b.starts_with("https://"));
    let mut cookie = format!("{name}={value}; Path=/_trellis; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The CSRF token of this browser (a new one to set when it has none).
pub fn csrf_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE) {
        Some(t) => (t.to_owned(), false),
        None => (random_string(32), true),
    }
}

/// Whether a form's `csrf` field repeats the browser's CSRF cookie (compared in constant
/// time).
pub fn csrf_ok(headers: &HeaderMap, field: &str) -> bool {
    let Some(cookie) = cookie(headers, CSRF_COOKIE) else { return false };
    cookie.len() == field.len() && cookie.bytes().zip(field.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_csrf() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; trellis_oauth_csrf=abc; b="));
        assert_eq!(cookie(&h, "a"), Some("1"));
        assert_eq!(cookie(&h, "b"), None);
        assert!(csrf_ok(&h, "abc"));
        assert!(!csrf_ok(&h, "abd"));
        assert!(!csrf_ok(&HeaderMap::new(), ""));
        assert_eq!(csrf_token(&h), ("abc".to_owned(), false));
        assert!(csrf_token(&HeaderMap::new()).1);
    }
}
