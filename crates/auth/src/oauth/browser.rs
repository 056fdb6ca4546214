//! Browser sessions of the OAuth pages (login, registration, consent, device link, account):
//! a password sign-in or a new account opens one; the cookie's value is stored as its
//! SHA-256 and expires after `oauth.session_lifetime_ms`. The account page's actions (delete
//! a device, change the password) run for the session's user.

use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result, time::now_ms};
use trellis_proto::auth::{
    AuthAck, OauthBrowserLoginRequest, OauthBrowserSession, OauthChangePasswordRequest, OauthDeleteDeviceRequest,
    OauthSessionRequest,
};

use super::ms;
use crate::{
    devices, password,
    register::{NewAccount, check_localpart},
    registration_tokens,
    service::Auth,
    token::{hash_token, new_token},
};

/// The prefix of browser-session cookies.
const SESSION_PREFIX: &str = "trb_";

const INSERT: &str =
    "INSERT INTO oauth_browser_sessions (session_hash, user_id, created_ts, expires_ts) VALUES ($1, $2, $3, $4)";
const SELECT: &str = "SELECT s.user_id FROM oauth_browser_sessions s JOIN users u ON u.user_id = s.user_id \
                      WHERE s.session_hash = $1 AND s.expires_ts > $2 AND NOT u.deactivated AND NOT u.locked";
const DELETE: &str = "DELETE FROM oauth_browser_sessions WHERE session_hash = $1";
const PURGE: &str = "DELETE FROM oauth_browser_sessions WHERE expires_ts <= $1";
const UNRESERVE: &str = "UPDATE registration_tokens SET pending = GREATEST(pending - 1, 0) WHERE token = $1";

fn no_session() -> Error {
    Error::new(ErrorCode::UnknownToken, "Not signed in")
}

impl Auth {
    /// The user of a live browser session.
    pub(crate) async fn browser_user(&self, session_token: &str) -> Result<String> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT).await?;
        let row = client.query_opt(&stmt, &[&hash_token(session_token).as_slice(), &now_ms()]).await?;
        row.map(|r| r.get(0)).ok_or_else(no_session)
    }

    #[instrument(skip_all, fields(username = %req.username, register = req.register))]
    pub(crate) async fn do_oauth_browser_login(&self, req: OauthBrowserLoginRequest) -> Result<OauthBrowserSession> {
        self.require_oauth()?;
        let user_id = match req.register {
            true => self.browser_register(&req).await?,
            false => self.check_password_login(&req.username, req.password).await?,
        };
        let session_token = self.open_browser_session(&user_id).await?;
        Ok(OauthBrowserSession { session_token, user_id })
    }

    /// A new browser session of `user_id` (a password sign-in, or one through a provider).
    pub(crate) async fn open_browser_session(&self, user_id: &str) -> Result<String> {
        let session_token = new_token(SESSION_PREFIX);
        let now = now_ms();
        let client = self.pool.get().await?;
        client.execute(&client.prepare_cached(PURGE).await?, &[&now]).await?;
        let stmt = client.prepare_cached(INSERT).await?;
        let expires = now.saturating_add(ms(self.config.oauth.session_lifetime_ms));
        client.execute(&stmt, &[&hash_token(&session_token).as_slice(), &user_id, &now, &expires]).await?;
        info!(user_id = %user_id, "browser session opened");
        Ok(session_token)
    }

    /// A new password account from the registration page, under the same rules as
    /// `/register`: registration open, a valid free localpart, a strong enough password and,
    /// when required, a usable registration token.
    async fn browser_register(&self, req: &OauthBrowserLoginRequest) -> Result<String> {
        if !self.config.registration_enabled {
            return Err(Error::forbidden("Registration has been disabled"));
        }
        let localpart = req.username.to_lowercase();
        check_localpart(&localpart, &self.config.server_name)?;
        self.not_claimed(&localpart, None)?;
        let password = password::check_new(Some(&req.password), self.config.min_password_len)?.to_owned();
        self.check_available(&localpart).await?;
        let token = match self.config.registration_requires_token {
            true => {
                let token = req.registration_token.clone().filter(|t| !t.is_empty());
                let token =
                    token.ok_or_else(|| Error::new(ErrorCode::Unauthorized, "A registration token is required"))?;
                if !registration_tokens::reserve(&self.pool.get().await?, &token).await? {
                    return Err(Error::new(ErrorCode::Unauthorized, "Invalid registration token"));
                }
                Some(token)
            }
            false => None,
        };
        let account = NewAccount {
            password_hash: Some(password::hash(password).await?),
            is_guest: false,
            upgrade: false,
            session: None,
            registration_token: token.clone(),
            login: None,
        };
        if let Err(e) = self.create_account(&localpart, &account).await {
            if let Some(token) = &token {
                let client = self.pool.get().await?;
                client.execute(&client.prepare_cached(UNRESERVE).await?, &[token]).await?;
            }
            return Err(e);
        }
        let user_id = self.user_id(&localpart);
        info!(user_id = %user_id, "user registered through the oauth pages");
        Ok(user_id)
    }

    pub(crate) async fn do_oauth_browser_session(&self, req: OauthSessionRequest) -> Result<OauthBrowserSession> {
        self.require_oauth()?;
        let user_id = self.browser_user(&req.session_token).await?;
        Ok(OauthBrowserSession { session_token: String::new(), user_id })
    }

    pub(crate) async fn do_oauth_browser_logout(&self, req: OauthSessionRequest) -> Result<AuthAck> {
        self.require_oauth()?;
        let client = self.pool.get().await?;
        client.execute(&client.prepare_cached(DELETE).await?, &[&hash_token(&req.session_token).as_slice()]).await?;
        Ok(AuthAck {})
    }

    #[instrument(skip_all, fields(device_id = %req.device_id))]
    pub(crate) async fn do_oauth_delete_device(&self, req: OauthDeleteDeviceRequest) -> Result<AuthAck> {
        self.require_oauth()?;
        let user_id = self.browser_user(&req.session_token).await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let removed = devices::delete_devices(&tx, &user_id, std::slice::from_ref(&req.device_id)).await?;
        tx.commit().await?;
        self.removed(&user_id, removed).await;
        info!(user_id = %user_id, device_id = %req.device_id, "device deleted from the account page");
        Ok(AuthAck {})
    }

    #[instrument(skip_all)]
    pub(crate) async fn do_oauth_change_password(&self, req: OauthChangePasswordRequest) -> Result<AuthAck> {
        self.require_oauth()?;
        let user_id = self.browser_user(&req.session_token).await?;
        let new = password::check_new(Some(&req.new_password), self.config.min_password_len)?.to_owned();
        self.check_password_login(&user_id, req.current_password).await?;
        self.set_password(&user_id, new, None).await?;
        Ok(AuthAck {})
    }
}
