//! Registration (user and guest accounts, and guests upgraded to users) and username
//! availability.
//!
//! As Synapse: the first request may be `{}` (the answer is the UIA challenge); the session
//! remembers the parameters and the password's hash, so the last stage may send only `auth`;
//! and a completed session, replayed, answers with the same account (logged in again)
//! instead of registering another.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result, ids::validate_new_localpart, time::now_ms};
use trellis_proto::auth::{CheckUsernameRequest, CheckUsernameResponse, RegisterRequest, RegisterResponse};

use crate::{
    guest,
    login::{Issued, issue_token, requested_device_id},
    new_login::NewLogin,
    password, registration_tokens,
    service::Auth,
    store, uia, uia_store,
};

/// The `uia_sessions.kind` of registration sessions.
const UIA_KIND: &str = "register";

/// Attempts at claiming a generated numeric localpart before giving up.
const NUMERIC_ATTEMPTS: usize = 10;

/// Checks a localpart chosen by a client: the spec's grammar for new IDs plus Synapse's
/// reservations (numeric localparts are generated ones; `_` prefixes belong to bridges).
pub fn check_localpart(localpart: &str, server_name: &str) -> Result<()> {
    validate_new_localpart(localpart, server_name)?;
    if localpart.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::new(ErrorCode::InvalidUsername, "Numeric user IDs are reserved for guest users."));
    }
    if localpart.starts_with('_') {
        return Err(Error::new(ErrorCode::InvalidUsername, "User ID may not begin with _"));
    }
    Ok(())
}

/// The registration parameters a UIA session remembers between its requests (the password
/// is kept apart, as its hash).
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Params {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    initial_device_display_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    inhibit_login: bool,
    /// Upgrading a guest: the guest's access token (`username` is the guest's localpart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    guest_access_token: Option<String>,
}

/// What to create in the registration transaction.
pub(crate) struct NewAccount {
    pub(crate) password_hash: Option<String>,
    pub(crate) is_guest: bool,
    /// The guest account of this localpart becomes a full account (see `guest.rs`).
    pub(crate) upgrade: bool,
    /// The UIA session that authorised it: it records the account, for replays.
    pub(crate) session: Option<String>,
    /// The registration token the session reserved a use of: the use is now completed.
    pub(crate) registration_token: Option<String>,
    /// `None` with `inhibit_login`: no device and no token.
    pub(crate) login: Option<NewLogin>,
}

impl Auth {
    #[instrument(skip_all, fields(username = req.username.as_deref(), guest = req.guest))]
    pub(crate) async fn do_register(&self, req: RegisterRequest) -> Result<RegisterResponse> {
        if req.guest {
            return self.register_guest(req.initial_device_display_name).await;
        }
        if let Some(token) = req.appservice_token.clone() {
            return self.register_appservice_user(&token, req).await;
        }
        if !self.config.registration_enabled {
            return Err(Error::forbidden("Registration has been disabled"));
        }
        if !self.legacy_passwords() {
            return Err(Error::forbidden("Accounts are created in the browser: use the OAuth 2.0 API"));
        }
        // Everything a client can fix is checked before user-interactive auth starts; a
        // missing password only once the stages are done (the first request may be `{}`).
        let password = match req.password.as_deref() {
            Some(p) => Some(password::check_new(Some(p), self.config.min_password_len)?.to_owned()),
            None => None,
        };
        let params = Params {
            // Synapse registers capitals in lower case rather than refusing them.
            username: req.username.map(|u| u.to_lowercase()),
            device_id: requested_device_id(req.device_id.as_deref())?,
            // As Synapse: a display name sent without a password is a client's stray retry,
            // which must not replace the parameters remembered in the session.
            initial_device_display_name: req.initial_device_display_name.filter(|_| password.is_some()),
            inhibit_login: req.inhibit_login,
            guest_access_token: req.guest_access_token,
        };
        let replayed = self.registered_in_session(&req.auth_json).await?;
        match (params.username.as_deref(), params.guest_access_token.as_deref()) {
            // A guest's numeric localpart is its own to keep.
            (Some(localpart), Some(token)) => self.check_guest_upgrade(localpart, token).await?,
            (Some(localpart), None) => {
                check_localpart(localpart, &self.config.server_name)?;
                // A replayed session's own account is not "in use" for it.
                if replayed.as_deref() != Some(self.user_id(localpart).as_str()) {
                    self.check_available(localpart).await?;
                }
                self.not_claimed(localpart, None)?;
            }
            (None, Some(_)) => return Err(Error::missing_param("username is required to upgrade a guest account")),
            (None, None) => {}
        }
        let round = uia::Round {
            kind: UIA_KIND,
            user_id: None,
            target: None,
            params: (params != Params::default()).then(|| serde_json::to_string(&params)).transpose()?,
            flows: register_flows(&self.config),
            auth_json: &req.auth_json,
            server_name: &self.config.server_name,
            recaptcha: self.config.recaptcha.as_ref(),
            ip: req.ip.as_deref(),
        };
        let session = match self.uia.check(&self.pool, round).await? {
            uia::Outcome::Complete(session) => session,
            uia::Outcome::Incomplete { session, body } => {
                // Kept for the last stage, which need not send the password again.
                if let Some(password) = password
                    && session.row.password_hash.is_none()
                {
                    let hash = password::hash(password).await?;
                    uia_store::set_password_hash(&self.pool.get().await?, &session.id, &hash).await?;
                }
                return Err(Error::uia(body));
            }
        };
        let params = match session.as_ref().and_then(|s| s.row.params.as_deref()) {
            Some(json) => serde_json::from_str(json)?,
            None => params,
        };
        let login = (!params.inhibit_login).then(|| NewLogin {
            device_id: params.device_id.clone(),
            display_name: params.initial_device_display_name.clone(),
            ip: req.ip,
            user_agent: req.user_agent,
            token_lifetime: self.token_lifetime(req.refresh_token),
        });
        if let Some(user_id) = session.as_ref().and_then(|s| s.row.registered_user_id.clone()) {
            // The session already registered its account: the same answer again, with a
            // login of its own (Synapse makes registration idempotent so).
            let issued = match login {
                Some(login) => Some(self.log_in_again(&user_id, &login).await?),
                None => None,
            };
            info!(user_id = %user_id, "registration session replayed");
            return Ok(response(user_id, issued, false));
        }
        let password_hash = match password {
            Some(password) => password::hash(password).await?,
            None => session
                .as_ref()
                .and_then(|s| s.row.password_hash.clone())
                .ok_or_else(|| Error::missing_param("Missing params: password"))?,
        };
        let account = NewAccount {
            password_hash: Some(password_hash),
            is_guest: false,
            upgrade: params.guest_access_token.is_some(),
            registration_token: session.as_ref().and_then(|s| s.row.registration_token.clone()),
            session: session.map(|s| s.id),
            login,
        };
        let (user_id, issued) = match params.username.as_deref() {
            Some(localpart) => (self.user_id(localpart), self.create_account(localpart, &account).await?),
            None => self.create_numeric_account(&account).await?,
        };
        info!(user_id = %user_id, device_id = issued.as_ref().map(|i| i.device_id.as_str()), "user registered");
        Ok(response(user_id, issued, true))
    }

    /// The account the UIA session named in `auth_json` registered, if it did.
    async fn registered_in_session(&self, auth_json: &str) -> Result<Option<String>> {
        let Some(session) = uia::parse(auth_json)?.and_then(|d| d.session) else { return Ok(None) };
        let client = self.pool.get().await?;
        let row = uia_store::get(&client, &session, now_ms() - uia::SESSION_TTL_MS).await?;
        Ok(row.filter(|r| r.kind == UIA_KIND).and_then(|r| r.registered_user_id))
    }

    /// A new token (and device, unless the login names an existing one) for an account.
    async fn log_in_again(&self, user_id: &str, login: &NewLogin) -> Result<Issued> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let issued = issue_token(&tx, user_id, login).await?;
        tx.commit().await?;
        if !issued.revoked.is_empty() {
            self.tokens.revoke(&issued.revoked).await;
        }
        if let Some(pos) = issued.device_list_pos {
            self.announce_device_list(user_id, pos).await;
        }
        Ok(issued)
    }

    async fn register_guest(&self, display_name: Option<String>) -> Result<RegisterResponse> {
        if !self.config.allow_guests {
            return Err(Error::new(ErrorCode::GuestAccessForbidden, "Guest access is disabled"));
        }
        // The spec: everything but the device display name is ignored for guests.
        let account = NewAccount {
            password_hash: None,
            is_guest: true,
            upgrade: false,
            session: None,
            registration_token: None,
            login: Some(NewLogin { display_name, ..NewLogin::default() }),
        };
        let (user_id, issued) = self.create_numeric_account(&account).await?;
        info!(user_id = %user_id, "guest registered");
        Ok(response(user_id, issued, true))
    }

    #[instrument(skip_all, fields(username = %req.username))]
    pub(crate) async fn do_check_username(&self, req: CheckUsernameRequest) -> Result<CheckUsernameResponse> {
        if !self.config.registration_enabled {
            return Err(Error::forbidden("Registration has been disabled"));
        }
        self.check_available(&req.username).await?;
        self.not_claimed(&req.username, None)?;
        Ok(CheckUsernameResponse { available: true })
    }

    pub(crate) async fn check_available(&self, localpart: &str) -> Result<()> {
        check_localpart(localpart, &self.config.server_name)?;
        let client = self.pool.get().await?;
        if store::user_exists(&client, &self.user_id(localpart)).await? {
            return Err(Error::new(ErrorCode::UserInUse, "User ID already taken."));
        }
        Ok(())
    }

    pub(crate) fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.config.server_name)
    }

    /// Creates the account under the next free numeric localpart.
    async fn create_numeric_account(&self, account: &NewAccount) -> Result<(String, Option<Issued>)> {
        for _ in 0..NUMERIC_ATTEMPTS {
            if self.last_numeric.load(Ordering::SeqCst) == 0 {
                self.sync_numeric().await?;
            }
            let localpart = (self.last_numeric.fetch_add(1, Ordering::SeqCst) + 1).to_string();
            match self.create_account(&localpart, account).await {
                // Taken by another process (or an admin): catch up with the database.
                Err(e) if e.code() == ErrorCode::UserInUse => self.sync_numeric().await?,
                Ok(issued) => return Ok((self.user_id(&localpart), issued)),
                Err(e) => return Err(e),
            }
        }
        Err(Error::internal("no free numeric localpart found"))
    }

    async fn sync_numeric(&self) -> Result<()> {
        let client = self.pool.get().await?;
        let max = store::max_numeric_localpart(&client).await?;
        self.last_numeric.fetch_max(max, Ordering::SeqCst);
        Ok(())
    }

    /// One transaction: user, profile (display name = localpart, as Synapse), the account
    /// recorded in its UIA session, device and token unless login is inhibited.
    pub(crate) async fn create_account(&self, localpart: &str, account: &NewAccount) -> Result<Option<Issued>> {
        let user_id = self.user_id(localpart);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if account.upgrade {
            guest::upgrade(&tx, &user_id, account.password_hash.as_deref()).await?;
        } else {
            store::create_user(&tx, &user_id, account.password_hash.as_deref(), account.is_guest, localpart).await?;
        }
        if let Some(session) = &account.session
            && !uia_store::set_registered(&tx, session, &user_id).await?
        {
            // A concurrent registration with the same session created its account first.
            return Err(uia::unknown_session());
        }
        if let Some(session) = &account.session {
            crate::threepid::stage::add_registered(&tx, session, &user_id).await?;
        }
        if let Some(token) = &account.registration_token {
            registration_tokens::complete(&tx, token).await?;
        }
        let issued = match &account.login {
            Some(login) => Some(issue_token(&tx, &user_id, login).await?),
            None => None,
        };
        tx.commit().await?;
        if account.upgrade {
            self.forget_guest_tokens(&user_id).await?;
        }
        if let Some(pos) = issued.as_ref().and_then(|i| i.device_list_pos) {
            self.announce_device_list(&user_id, pos).await;
        }
        Ok(issued)
    }
}

pub(crate) fn response(user_id: String, issued: Option<Issued>, created: bool) -> RegisterResponse {
    let Some(i) = issued else {
        return RegisterResponse { user_id, created, ..RegisterResponse::default() };
    };
    RegisterResponse {
        user_id,
        access_token: Some(i.access_token),
        device_id: Some(i.device_id),
        refresh_token: i.refresh_token,
        expires_in_ms: i.expires_in_ms,
        created,
    }
}

/// The registration flows the configuration asks for: a registration token and the captcha
/// when required, before the dummy stage.
/// With email validation configured, each flow also comes with the email stage in place of
/// the dummy one.
pub(crate) fn register_flows(config: &crate::AuthConfig) -> uia::Flows {
    let captcha = config.recaptcha.as_ref().is_some_and(|r| r.required);
    let flows = match (config.registration_requires_token, captcha) {
        (true, true) => uia::TOKEN_CAPTCHA_REGISTER_FLOWS,
        (true, false) => uia::TOKEN_REGISTER_FLOWS,
        (false, true) => uia::CAPTCHA_REGISTER_FLOWS,
        (false, false) => uia::REGISTER_FLOWS,
    };
    match config.email {
        Some(_) => crate::threepid::stage::register_flows(flows),
        None => flows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localpart_rules() {
        assert!(check_localpart("alice", "hs").is_ok());
        assert!(check_localpart("a1", "hs").is_ok());
        assert!(check_localpart("a_b", "hs").is_ok());
        for bad in ["", "Alice", "al ice", "123", "_bridge"] {
            let err = check_localpart(bad, "hs").unwrap_err();
            assert_eq!((err.code(), err.status()), (ErrorCode::InvalidUsername, 400), "{bad:?}");
        }
    }

    #[test]
    fn inhibited_login_has_no_token_or_device() {
        let r = response("@a:hs".into(), None, true);
        assert_eq!((r.access_token, r.device_id), (None, None));
        let issued = Issued {
            device_id: "D".into(),
            access_token: "t".into(),
            refresh_token: None,
            expires_in_ms: None,
            revoked: vec![],
            device_list_pos: None,
        };
        let r = response("@a:hs".into(), Some(issued), false);
        assert_eq!((r.access_token.as_deref(), r.device_id.as_deref()), (Some("t"), Some("D")));
    }
}
