//! The OAuth 2.0 API (spec 1.15+, `docs/oauth.md`): dynamic client registration
//! (`clients.rs`), authorization requests and codes with PKCE (`authorize.rs`), the browser
//! sessions behind the login, consent and account pages (`browser.rs`), the device
//! authorization grant (`device.rs`) and the token and revocation endpoints (`tokens.rs`).
//!
//! Tokens are the service's ordinary access and refresh tokens, bound to the device the
//! `urn:matrix:client:device:<id>` scope names, so every other endpoint works unchanged.
//! Codes, device codes and session cookies are stored as SHA-256 only, like tokens.

mod authorize;
mod browser;
mod clients;
mod device;
mod scope;
mod tokens;

use trellis_core::{Error, ErrorCode, Result};

use crate::service::Auth;

/// An OAuth refusal: the RFC's `error` value travels as the `oauth_error` field of the body,
/// which the gateway's OAuth endpoints answer as `{"error", "error_description"}`.
pub(crate) fn oauth_error(kind: &'static str, status: u16, description: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidParam, description).with_status(status).with_field("oauth_error", kind)
}

pub(crate) fn invalid_request(description: impl Into<String>) -> Error {
    oauth_error("invalid_request", 400, description)
}

pub(crate) fn invalid_client(description: impl Into<String>) -> Error {
    oauth_error("invalid_client", 401, description)
}

pub(crate) fn invalid_grant(description: impl Into<String>) -> Error {
    oauth_error("invalid_grant", 400, description)
}

/// A configured duration in milliseconds, as timestamps count.
pub(crate) fn ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Compares two secrets (PKCE challenges) without an early exit.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// Every OAuth operation answers 404 `M_UNRECOGNIZED` unless the API is enabled.
    pub(crate) fn require_oauth(&self) -> Result<()> {
        match self.config.oauth.enabled {
            true => Ok(()),
            false => Err(Error::unrecognized("The OAuth 2.0 API is not enabled on this server")),
        }
    }
}
