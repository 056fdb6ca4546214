//! Sessions: password login, issuing tokens for devices, resolving tokens, logout.

use deadpool_postgres::GenericClient;
use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result, ids::new_device_id};
use trellis_proto::auth::{AuthenticateRequest, LoginRequest, LoginResponse, LogoutRequest, LogoutResponse, Requester};

use crate::{
    devices, password,
    service::Auth,
    store,
    token::{TokenHash, hash_token, new_access_token},
};

/// Longest device ID a client may choose (as Synapse).
pub const MAX_DEVICE_ID_LEN: usize = 512;

/// Attempts at finding an unused generated device ID before giving up.
const DEVICE_ID_ATTEMPTS: usize = 5;

/// A token issued for a device.
pub struct Issued {
    pub device_id: String,
    pub access_token: String,
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

fn unknown_token() -> Error {
    Error::new(ErrorCode::UnknownToken, "Invalid access token passed.").with_field("soft_logout", false)
}

/// A login to issue a token for: the device (a new one when `device_id` is `None`), the
/// name a new device gets, and where the request came from (a new device's first last-seen
/// record, so a device is never listed without one).
#[derive(Debug, Clone, Default)]
pub struct NewLogin {
    pub device_id: Option<String>,
    pub display_name: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
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
    let revoked = store::delete_device_tokens(c, user_id, &device_id).await?;
    let access_token = new_access_token();
    store::insert_token(c, &hash_token(&access_token), user_id, &device_id).await?;
    Ok(Issued { device_id, access_token, revoked, device_list_pos })
}

async fn new_device(c: &impl GenericClient, user_id: &str, login: &NewLogin) -> Result<String> {
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
        let localpart = login_localpart(&req.user, &self.config.server_name)?;
        let user_id = format!("@{localpart}:{}", self.config.server_name);
        let credentials = {
            let client = self.pool.get().await?;
            store::credentials(&client, &user_id).await?
        };
        let (stored, deactivated) = match credentials {
            Some(c) => (c.password_hash, c.deactivated),
            None => (None, false),
        };
        if !password::verify(req.password, stored).await? {
            return Err(invalid_login());
        }
        // Only after the password matched, so the answer reveals nothing to a stranger.
        if deactivated {
            return Err(Error::new(ErrorCode::UserDeactivated, "This account has been deactivated"));
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let login = NewLogin {
            device_id,
            display_name: req.initial_device_display_name,
            ip: req.ip,
            user_agent: req.user_agent,
        };
        let issued = issue_token(&tx, &user_id, &login).await?;
        tx.commit().await?;
        if !issued.revoked.is_empty() {
            self.tokens.revoke(&issued.revoked).await;
        }
        if let Some(pos) = issued.device_list_pos {
            self.announce_device_list(&user_id, pos).await;
        }
        info!(user_id = %user_id, device_id = %issued.device_id, "user logged in");
        Ok(LoginResponse { user_id, access_token: issued.access_token, device_id: issued.device_id })
    }

    #[instrument(skip_all, fields(user_id = tracing::field::Empty))]
    pub(crate) async fn do_authenticate(&self, req: AuthenticateRequest) -> Result<Requester> {
        let hash = hash_token(&req.access_token);
        if let Some(requester) = self.tokens.get(&hash).await {
            tracing::Span::current().record("user_id", requester.user_id.as_str());
            self.note_seen(&requester, req.ip, req.user_agent).await;
            return Ok(requester);
        }
        let epoch = self.tokens.epoch();
        let found = {
            let client = self.pool.get().await?;
            store::lookup_token(&client, &hash).await?
        };
        let requester = found.ok_or_else(unknown_token)?;
        tracing::Span::current().record("user_id", requester.user_id.as_str());
        self.tokens.insert(hash, requester.clone(), epoch).await;
        self.note_seen(&requester, req.ip, req.user_agent).await;
        Ok(requester)
    }

    #[instrument(skip_all, fields(all_devices = req.all_devices, user_id = tracing::field::Empty))]
    pub(crate) async fn do_logout(&self, req: LogoutRequest) -> Result<LogoutResponse> {
        let hash = hash_token(&req.access_token);
        let mut client = self.pool.get().await?;
        let requester = store::lookup_token(&client, &hash).await?.ok_or_else(unknown_token)?;
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
    }
}
