//! Sessions: password and `m.login.token` login, issuing tokens for devices, resolving
//! tokens (expired ones answer a soft logout), logout.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result, ids::new_device_id, time::now_ms};
use trellis_proto::auth::{AuthenticateRequest, LoginRequest, LoginResponse, LogoutRequest, LogoutResponse, Requester};

use crate::{
    devices, login_token,
    new_login::NewLogin,
    password, refresh,
    service::Auth,
    store,
    token::{TokenHash, hash_token},
};

/// Longest device ID a client may choose (as Synapse).
pub const MAX_DEVICE_ID_LEN: usize = 512;

/// Attempts at finding an unused generated device ID before giving up.
const DEVICE_ID_ATTEMPTS: usize = 5;

/// A token issued for a device.
pub struct Issued {
    pub device_id: String,
    pub access_token: String,
    /// With a token lifetime: the refresh token, and how long the access token lives.
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<i64>,
    /// Tokens the device had before (now deleted): evict them once the transaction commits.
    pub revoked: Vec<TokenHash>,
    /// The device is new: its user's device list changed at this position (announce it once
    /// the transaction commits).
    pub device_list_pos: Option<trellis_core::StreamPos>,
}

/// The client's chosen device ID, if any (empty counts as none).
pub fn requested_device_id(device_id: Option<&str>) -> Result<Option<String>> {
    match device_id {
        None | Some("") => Ok(None),
        Some(id) if id.chars().count() > MAX_DEVICE_ID_LEN => {
            Err(Error::invalid_param(format!("Device ID cannot be longer than {MAX_DEVICE_ID_LEN} characters")))
        }
        Some(id) => Ok(Some(id.to_owned())),
    }
}

/// The localpart to log in as: `user` is a localpart or a full user ID of this server.
/// Looked up in lower case, as Synapse does (new localparts are always lower case).
pub fn login_localpart(user: &str, server_name: &str) -> Result<String> {
    let localpart = match user.strip_prefix('@') {
        Some(rest) => {
            let (localpart, server) = rest.split_once(':').ok_or_else(invalid_login)?;
            if server != server_name {
                return Err(Error::forbidden("User ID does not belong to this server"));
            }
            localpart
        }
        None => user,
    };
    if localpart.is_empty() {
        return Err(invalid_login());
    }
    Ok(localpart.to_lowercase())
}

fn invalid_login() -> Error {
    Error::forbidden("Invalid username or password")
}

/// The account is deactivated: no session may be opened for it.
pub fn deactivated() -> Error {
    Error::new(ErrorCode::UserDeactivated, "This account has been deactivated")
}

/// An admin locked the account (spec 1.8: 401, soft logout, so the client keeps its state).
pub fn locked() -> Error {
    Error::new(ErrorCode::UserLocked, "This account has been locked").with_field("soft_logout", true)
}

fn unknown_token() -> Error {
    Error::new(ErrorCode::UnknownToken, "Invalid access token passed.").with_field("soft_logout", false)
}

/// An access token past its lifetime: the device's session goes on with a refresh (or a new
/// login on the same device ID), so the client keeps its state (spec: "Soft logout").
pub fn expired_token() -> Error {
    Error::new(ErrorCode::UnknownToken, "Access token has expired").with_field("soft_logout", true)
}

/// Makes sure the device exists (creating it if not), replaces its tokens with a new one. Run
/// it in a transaction.
pub async fn issue_token(c: &impl GenericClient, user_id: &str, login: &NewLogin) -> Result<Issued> {
    let (device_id, created) = match &login.device_id {
        Some(id) => (id.clone(), devices::create_device(c, user_id, id, login).await?),
        None => (new_device(c, user_id, login).await?, true),
    };
    let device_list_pos = match created {
        true => Some(crate::keys::changes::record(c, user_id).await?),
        false => None,
    };
    // The spec: a login on a device ID ends every access and refresh token it had.
    let revoked = store::delete_device_tokens(c, user_id, &device_id).await?;
    refresh::delete_device(c, user_id, &device_id).await?;
    let pair = refresh::issue(c, user_id, &device_id, login.token_lifetime, None).await?;
    Ok(Issued {
        device_id,
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        expires_in_ms: pair.expires_in_ms,
        revoked,
        device_list_pos,
    })
}

pub(crate) async fn new_device(c: &impl GenericClient, user_id: &str, login: &NewLogin) -> Result<String> {
    for _ in 0..DEVICE_ID_ATTEMPTS {
        let id = new_device_id().to_string();
        if devices::create_device(c, user_id, &id, login).await? {
            return Ok(id);
        }
    }
    Err(Error::internal("no free device ID found"))
}

impl Auth {
    #[instrument(skip_all, fields(user = %req.user))]
    pub(crate) async fn do_login(&self, req: LoginRequest) -> Result<LoginResponse> {
        let device_id = requested_device_id(req.device_id.as_deref())?;
        let user_id = match (&req.login_token, &req.appservice_token) {
            (Some(token), _) => self.consume_login_token(token).await?,
            (None, Some(as_token)) => self.appservice_login_user(as_token, &req.user).await?,
            (None, None) if !self.legacy_passwords() => {
                return Err(Error::new(
                    ErrorCode::Unknown,
                    "Password login is disabled: sign in through the OAuth 2.0 API",
                )
                .with_status(400));
            }
            (None, None) => {
                let user = match (&req.medium, &req.address) {
                    (Some(medium), Some(address)) => self.threepid_owner_for_login(medium, address).await?,
                    _ => req.user.clone(),
                };
                self.check_password_login(&user, req.password).await?
            }
        };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let login = NewLogin {
            device_id,
            display_name: req.initial_device_display_name,
            ip: req.ip,
            user_agent: req.user_agent,
            token_lifetime: self.token_lifetime(req.refresh_token),
        };
        let issued = issue_token(&tx, &user_id, &login).await?;
        tx.commit().await?;
        if !issued.revoked.is_empty() {
            self.tokens.revoke(&issued.revoked).await;
        }
        if let Some(pos) = issued.device_list_pos {
            self.announce_device_list(&user_id, pos).await;
        }
        info!(user_id = %user_id, device_id = %issued.device_id, token = req.login_token.is_some(), "user logged in");
        Ok(LoginResponse {
            user_id,
            access_token: issued.access_token,
            device_id: issued.device_id,
            refresh_token: issued.refresh_token,
            expires_in_ms: issued.expires_in_ms,
        })
    }

    /// Whether `/login` and `/register` take passwords: always, unless the OAuth 2.0 API is
    /// on with `oauth.password_login = false` (then accounts are made and signed in to in
    /// the browser).
    pub(crate) fn legacy_passwords(&self) -> bool {
        !self.config.oauth.enabled || self.config.oauth.password_login
    }

    /// The lifetime of a new access token: only a client that supports refresh tokens gets
    /// one that expires (as Synapse), and only when a lifetime is configured.
    pub(crate) fn token_lifetime(&self, client_refreshes: bool) -> Option<Duration> {
        self.config.access_token_lifetime.filter(|_| client_refreshes)
    }

    /// The user `user` names, if `password` is theirs and the account is active.
    pub(crate) async fn check_password_login(&self, user: &str, password: String) -> Result<String> {
        let localpart = login_localpart(user, &self.config.server_name)?;
        let user_id = format!("@{localpart}:{}", self.config.server_name);
        let credentials = {
            let client = self.pool.get().await?;
            store::credentials(&client, &user_id).await?
        };
        let (stored, is_deactivated, is_locked) = match credentials {
            Some(c) => (c.password_hash, c.deactivated, c.locked),
            None => (None, false, false),
        };
        if !password::verify(password, stored).await? {
            return Err(invalid_login());
        }
        // Only after the password matched, so the answer reveals nothing to a stranger.
        if is_deactivated {
            return Err(deactivated());
        }
        if is_locked {
            return Err(locked());
        }
        Ok(user_id)
    }

    /// The user a login token signs in (the token is used up); `M_FORBIDDEN` for one unknown,
    /// used or expired (the spec's answer), `M_USER_DEACTIVATED` if the account is gone,
    /// `M_USER_LOCKED` if an admin locked it.
    async fn consume_login_token(&self, token: &str) -> Result<String> {
        let client = self.pool.get().await?;
        let user_id = login_token::consume(&client, &hash_token(token)).await?;
        let user_id = user_id.ok_or_else(|| Error::forbidden("Invalid login token"))?;
        match store::credentials(&client, &user_id).await? {
            Some(c) if c.deactivated => Err(deactivated()),
            // Made before an admin locked the account: it signs in no more than a password.
            Some(c) if c.locked => Err(locked()),
            _ => Ok(user_id),
        }
    }

    #[instrument(skip_all, fields(user_id = tracing::field::Empty))]
    pub(crate) async fn do_authenticate(&self, req: AuthenticateRequest) -> Result<Requester> {
        if let Some(appservice) = self.appservices.by_as_token(&req.access_token) {
            return self.authenticate_appservice(appservice, req.user_id.as_deref()).await;
        }
        let hash = hash_token(&req.access_token);
        if let Some(requester) = self.tokens.get(&hash).await {
            tracing::Span::current().record("user_id", requester.user_id.as_str());
            self.note_seen(&requester, req.ip, req.user_agent).await;
            return Ok(requester);
        }
        let epoch = self.tokens.epoch();
        let found = {
            let client = self.pool.get().await?;
            let found = store::lookup_token(&client, &hash).await?.ok_or_else(unknown_token)?;
            if found.expired(now_ms()) {
                return Err(expired_token());
            }
            if found.locked {
                return Err(locked());
            }
            if let Some(refresh) = &found.unused_refresh {
                refresh::first_use(&client, refresh).await?;
            }
            found
        };
        let requester = found.requester;
        tracing::Span::current().record("user_id", requester.user_id.as_str());
        self.tokens.insert(hash, requester.clone(), epoch).await;
        self.note_seen(&requester, req.ip, req.user_agent).await;
        Ok(requester)
    }

    #[instrument(skip_all, fields(all_devices = req.all_devices, user_id = tracing::field::Empty))]
    pub(crate) async fn do_logout(&self, req: LogoutRequest) -> Result<LogoutResponse> {
        let hash = hash_token(&req.access_token);
        let mut client = self.pool.get().await?;
        let requester = store::lookup_token(&client, &hash).await?.ok_or_else(unknown_token)?.requester;
        let (user_id, device_id) = (&requester.user_id, &requester.device_id);
        tracing::Span::current().record("user_id", user_id.as_str());
        let tx = client.transaction().await?;
        let mut removed = if req.all_devices {
            devices::delete_all_devices(&tx, user_id, None).await?
        } else {
            devices::delete_devices(&tx, user_id, std::slice::from_ref(device_id)).await?
        };
        tx.commit().await?;
        // A concurrent logout may have deleted the row first; the token is gone either way.
        removed.revoked.push(hash);
        let tokens = removed.revoked.len() - 1;
        self.removed(user_id, removed).await;
        if req.all_devices {
            info!(user_id = %user_id, tokens, "user logged out everywhere");
        } else {
            info!(user_id = %user_id, device_id = %device_id, "device logged out");
        }
        Ok(LogoutResponse {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names() {
        assert_eq!(login_localpart("alice", "hs").unwrap(), "alice");
        assert_eq!(login_localpart("Alice", "hs").unwrap(), "alice");
        assert_eq!(login_localpart("@Alice:hs", "hs").unwrap(), "alice");
        let other = login_localpart("@alice:other", "hs").unwrap_err();
        assert_eq!((other.code(), other.status()), (ErrorCode::Forbidden, 403));
        for bad in ["", "@", "@alice", "@:hs"] {
            assert_eq!(login_localpart(bad, "hs").unwrap_err().code(), ErrorCode::Forbidden, "{bad:?}");
        }
    }

    #[test]
    fn device_ids() {
        assert_eq!(requested_device_id(None).unwrap(), None);
        assert_eq!(requested_device_id(Some("")).unwrap(), None);
        assert_eq!(requested_device_id(Some("PHONE")).unwrap().as_deref(), Some("PHONE"));
        let long = "D".repeat(MAX_DEVICE_ID_LEN + 1);
        assert_eq!(requested_device_id(Some(&long)).unwrap_err().code(), ErrorCode::InvalidParam);
    }

    #[test]
    fn unknown_token_is_401_without_soft_logout() {
        let err = unknown_token();
        assert_eq!((err.code(), err.status()), (ErrorCode::UnknownToken, 401));
        assert_eq!(err.client_body()["soft_logout"], false);
        let expired = expired_token();
        assert_eq!((expired.code(), expired.status()), (ErrorCode::UnknownToken, 401));
        assert_eq!(expired.client_body()["soft_logout"], true);
    }
}
