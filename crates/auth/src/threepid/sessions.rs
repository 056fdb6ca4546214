//! Email validation sessions: `/requestToken` mails a link carrying a token, and following
//! the link (`/_synapse/client/email/submit_token`) validates the session. A validated
//! session then proves the address to `/3pid/add`, `/3pid/bind` and the
//! `m.login.email.identity` stage.

use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result, ids::random_string, time::now_ms};
use trellis_proto::auth::{
    RequestThreepidTokenRequest, SubmitThreepidTokenRequest, ThreepidPurpose, ThreepidSession, ThreepidValidated,
};

use super::store::{self, NewSession};
use crate::{service::Auth, token::hash_token};

/// The only medium this server validates itself.
pub const EMAIL: &str = "email";

/// Longest address accepted (RFC 5321's path limit).
const MAX_ADDRESS_LEN: usize = 320;
/// Length of a session ID and of a mailed token.
const SID_LEN: usize = 24;
const TOKEN_LEN: usize = 32;
/// Where the link in the mail points (Synapse's path, which SyTest and clients know).
pub const SUBMIT_PATH: &str = "/_synapse/client/email/submit_token";

/// An email address as stored and compared: trimmed, in lower case (as Synapse), and shaped
/// like `local@domain`; `M_INVALID_PARAM` otherwise.
pub fn canonical_email(address: &str) -> Result<String> {
    let address = address.trim();
    let bad = || Error::invalid_param("Unable to parse email address");
    let (local, domain) = address.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || address.len() > MAX_ADDRESS_LEN
        || address.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(address.to_lowercase())
}

/// The spec's client secret: 1 to 255 of `[0-9a-zA-Z.=_-]`.
pub fn check_client_secret(secret: &str) -> Result<()> {
    let ok = (1..=255).contains(&secret.len())
        && secret.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '=' | '_' | '-'));
    match ok {
        true => Ok(()),
        false => Err(Error::invalid_param("Invalid client_secret")),
    }
}

/// `next_link` must be a web URL (the page redirects the browser there).
fn check_next_link(link: Option<&str>) -> Result<()> {
    match link.map(url::Url::parse) {
        None => Ok(()),
        Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => Ok(()),
        Some(_) => Err(Error::invalid_param("next_link must be an http or https URL")),
    }
}

impl Auth {
    #[instrument(skip_all, fields(purpose = req.purpose))]
    pub(crate) async fn do_request_threepid_token(&self, req: RequestThreepidTokenRequest) -> Result<ThreepidSession> {
        let purpose = ThreepidPurpose::try_from(req.purpose).unwrap_or(ThreepidPurpose::Unspecified);
        let Some(mailer) = self.mailer.as_ref() else {
            return Err(Error::new(
                ErrorCode::ThreepidMediumNotSupported,
                "Email validation is not configured on this server",
            ));
        };
        check_client_secret(&req.client_secret)?;
        check_next_link(req.next_link.as_deref())?;
        let address = canonical_email(&req.email)?;
        let send_attempt =
            i64::try_from(req.send_attempt).map_err(|_| Error::invalid_param("send_attempt is too large"))?;
        let client = self.pool.get().await?;
        let owner = store::owner(&client, EMAIL, &address).await?;
        match (purpose, owner) {
            (ThreepidPurpose::Add | ThreepidPurpose::Register, Some(_)) => {
                return Err(Error::new(ErrorCode::ThreepidInUse, "Email is already in use"));
            }
            (ThreepidPurpose::PasswordReset, None) => {
                return Err(Error::new(ErrorCode::ThreepidNotFound, "Email not found"));
            }
            (ThreepidPurpose::Unspecified, _) => return Err(Error::invalid_param("unknown purpose")),
            _ => {}
        }
        let now = now_ms();
        let existing = store::session_by_secret(&client, &req.client_secret, EMAIL, &address, now).await?;
        // The same attempt again (a client retrying) answers the same session, mailing nothing.
        if let Some((sid, last)) = &existing
            && send_attempt <= *last
        {
            return Ok(ThreepidSession { sid: sid.clone() });
        }
        let known = existing.is_some();
        let sid = existing.map(|(sid, _)| sid).unwrap_or_else(|| random_string(SID_LEN));
        let token = random_string(TOKEN_LEN);
        let token_hash = hash_token(&token);
        let session = NewSession {
            sid: &sid,
            client_secret: &req.client_secret,
            medium: EMAIL,
            address: &address,
            token_hash: &token_hash,
            send_attempt,
            next_link: req.next_link.as_deref(),
            now,
            expires: now + self.email_token_lifetime_ms(),
        };
        match known {
            true => store::resend(&client, &session).await?,
            false => store::insert_session(&client, &session).await?,
        }
        if store::purge_sessions(&client, now).await? > 0 {
            tracing::debug!("expired 3pid sessions purged");
        }
        let link = self.submit_link(&sid, &req.client_secret, &token);
        let (subject, intro) = match purpose {
            ThreepidPurpose::PasswordReset => {
                ("Reset your password", "A password reset was requested for your account")
            }
            ThreepidPurpose::Register => ("Validate your email", "You asked to register an account with this address"),
            _ => ("Validate your email", "You asked to add this address to your account"),
        };
        let body = format!(
            "{intro} on {server}.\n\nTo confirm, open this link:\n\n{link}\n\nIf this was not you, ignore this mail.\n",
            server = self.config.server_name,
        );
        mailer.send(&address, subject, body).await?;
        info!(sid = %sid, "validation mail sent");
        Ok(ThreepidSession { sid })
    }

    #[instrument(skip_all, fields(sid = %req.sid))]
    pub(crate) async fn do_submit_threepid_token(&self, req: SubmitThreepidTokenRequest) -> Result<ThreepidValidated> {
        if !plausible(&req.sid) || !plausible(&req.client_secret) || !plausible(&req.token) {
            return Err(auth_failed());
        }
        let client = self.pool.get().await?;
        match store::validate(&client, &req.sid, &req.client_secret, &hash_token(&req.token), now_ms()).await? {
            Some(next_link) => {
                info!("3pid session validated");
                Ok(ThreepidValidated { next_link })
            }
            None => Err(auth_failed()),
        }
    }

    fn email_token_lifetime_ms(&self) -> i64 {
        let ms = self.config.email.as_ref().map_or(0, |e| e.validation_token_lifetime_ms);
        i64::try_from(ms).unwrap_or(i64::MAX / 2)
    }

    /// The link the mail carries.
    fn submit_link(&self, sid: &str, secret: &str, token: &str) -> String {
        let query = serde_urlencoded::to_string([("token", token), ("client_secret", secret), ("sid", sid)])
            .unwrap_or_default();
        format!("{}{SUBMIT_PATH}?{query}", self.config.public_baseurl)
    }

    /// The 3PID a validated session proves: medium, address, when validated;
    /// `M_THREEPID_AUTH_FAILED` for a session unknown, expired or not validated.
    pub(crate) async fn validated_threepid(&self, sid: &str, secret: &str) -> Result<(String, String, i64)> {
        if !plausible(sid) || !plausible(secret) {
            return Err(auth_failed());
        }
        let client = self.pool.get().await?;
        store::validated(&client, sid, secret, now_ms()).await?.ok_or_else(auth_failed)
    }
}

/// Whether a session ID, client secret or token could be one this server handed out or
/// accepted (the client-secret grammar; ours are alphanumeric): anything else names no
/// session, and never reaches PostgreSQL (which refuses NUL in text outright).
fn plausible(value: &str) -> bool {
    check_client_secret(value).is_ok()
}

/// A token that is wrong or expired, or a session not validated.
pub fn auth_failed() -> Error {
    Error::new(ErrorCode::ThreepidAuthFailed, "No validated 3pid session found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_canonical() {
        assert_eq!(canonical_email(" Bob@Example.COM ").unwrap(), "bob@example.com");
        for bad in ["", "bob", "@example.com", "bob@", "a@b@c", "bo b@example.com"] {
            assert_eq!(canonical_email(bad).unwrap_err().code(), ErrorCode::InvalidParam, "{bad:?}");
        }
    }

    #[test]
    fn implausible_session_values_name_no_session() {
        assert!(plausible("aBc123"));
        for bad in ["", "a\0b", "a b", "é", &"x".repeat(256)] {
            assert!(!plausible(bad), "{bad:?}");
        }
    }

    #[test]
    fn client_secrets_follow_the_spec() {
        check_client_secret("0123Az.=_-").unwrap();
        for bad in ["", "a b", "a/b", &"x".repeat(256)] {
            assert_eq!(check_client_secret(bad).unwrap_err().code(), ErrorCode::InvalidParam);
        }
    }

    #[test]
    fn next_links_are_web_urls() {
        check_next_link(None).unwrap();
        check_next_link(Some("https://example.org/done")).unwrap();
        assert!(check_next_link(Some("javascript:alert(1)")).is_err());
        assert!(check_next_link(Some("not a url")).is_err());
    }
}
