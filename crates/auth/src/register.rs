//! Registration (user and guest accounts, and guests upgraded to users) and username
//! availability.

use std::sync::atomic::Ordering;

use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result, ids::validate_new_localpart};
use trellis_proto::auth::{CheckUsernameRequest, CheckUsernameResponse, RegisterRequest, RegisterResponse};

use crate::{
    guest,
    login::{Issued, issue_token, requested_device_id},
    password,
    service::Auth,
    store, uia,
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

/// What to create in the registration transaction.
struct NewAccount {
    password_hash: Option<String>,
    is_guest: bool,
    /// The guest account of this localpart becomes a full account (see `guest.rs`).
    upgrade: bool,
    /// The UIA session to consume.
    session: Option<String>,
    /// `None` with `inhibit_login`: no device and no token.
    login: Option<NewLogin>,
}

struct NewLogin {
    device_id: Option<String>,
    display_name: Option<String>,
}

impl Auth {
    #[instrument(skip_all, fields(username = req.username.as_deref(), guest = req.guest))]
    pub(crate) async fn do_register(&self, req: RegisterRequest) -> Result<RegisterResponse> {
        if req.guest {
            return self.register_guest(req.initial_device_display_name).await;
        }
        if !self.config.registration_enabled {
            return Err(Error::forbidden("Registration has been disabled"));
        }
        // Everything a client can fix is checked before user-interactive auth starts.
        match (req.username.as_deref(), req.guest_access_token.as_deref()) {
            (Some(localpart), Some(token)) => self.check_guest_upgrade(localpart, token).await?,
            (Some(localpart), None) => self.check_available(localpart).await?,
            (None, Some(_)) => return Err(Error::missing_param("username is required to upgrade a guest account")),
            (None, None) => {}
        }
        let password = password::check_new(req.password.as_deref(), self.config.min_password_len)?;
        let device_id = requested_device_id(req.device_id.as_deref())?;
        let round = uia::Round {
            kind: UIA_KIND,
            user_id: None,
            flows: uia::REGISTER_FLOWS,
            auth_json: &req.auth_json,
            server_name: &self.config.server_name,
        };
        let session = self.uia.check(&self.pool, round).await?;

        let account = NewAccount {
            password_hash: Some(password::hash(password.to_owned()).await?),
            is_guest: false,
            upgrade: req.guest_access_token.is_some(),
            session,
            login: (!req.inhibit_login)
                .then_some(NewLogin { device_id, display_name: req.initial_device_display_name }),
        };
        let (user_id, issued) = match req.username.as_deref() {
            Some(localpart) => (self.user_id(localpart), self.create_account(localpart, &account).await?),
            None => self.create_numeric_account(&account).await?,
        };
        info!(user_id = %user_id, device_id = issued.as_ref().map(|i| i.device_id.as_str()), "user registered");
        Ok(response(user_id, issued))
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
            login: Some(NewLogin { device_id: None, display_name }),
        };
        let (user_id, issued) = self.create_numeric_account(&account).await?;
        info!(user_id = %user_id, "guest registered");
        Ok(response(user_id, issued))
    }

    #[instrument(skip_all, fields(username = %req.username))]
    pub(crate) async fn do_check_username(&self, req: CheckUsernameRequest) -> Result<CheckUsernameResponse> {
        if !self.config.registration_enabled {
            return Err(Error::forbidden("Registration has been disabled"));
        }
        self.check_available(&req.username).await?;
        Ok(CheckUsernameResponse { available: true })
    }

    async fn check_available(&self, localpart: &str) -> Result<()> {
        check_localpart(localpart, &self.config.server_name)?;
        let client = self.pool.get().await?;
        if store::user_exists(&client, &self.user_id(localpart)).await? {
            return Err(Error::new(ErrorCode::UserInUse, "User ID already taken."));
        }
        Ok(())
    }

    fn user_id(&self, localpart: &str) -> String {
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

    /// One transaction: user, profile (display name = localpart, as Synapse), the UIA
    /// session consumed, device and token unless login is inhibited.
    async fn create_account(&self, localpart: &str, account: &NewAccount) -> Result<Option<Issued>> {
        let user_id = self.user_id(localpart);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if account.upgrade {
            guest::upgrade(&tx, &user_id, account.password_hash.as_deref()).await?;
        } else {
            store::create_user(&tx, &user_id, account.password_hash.as_deref(), account.is_guest, localpart).await?;
        }
        if let Some(session) = &account.session
            && !store::delete_uia_session(&tx, session).await?
        {
            // Used up by a concurrent registration with the same session.
            return Err(uia::unknown_session());
        }
        let issued = match &account.login {
            Some(login) => {
                Some(issue_token(&tx, &user_id, login.device_id.clone(), login.display_name.as_deref()).await?)
            }
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

fn response(user_id: String, issued: Option<Issued>) -> RegisterResponse {
    let (access_token, device_id) = match issued {
        Some(i) => (Some(i.access_token), Some(i.device_id)),
        None => (None, None),
    };
    RegisterResponse { user_id, access_token, device_id }
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
        let r = response("@a:hs".into(), None);
        assert_eq!((r.access_token, r.device_id), (None, None));
        let issued = Issued { device_id: "D".into(), access_token: "t".into(), revoked: vec![], device_list_pos: None };
        let r = response("@a:hs".into(), Some(issued));
        assert_eq!((r.access_token.as_deref(), r.device_id.as_deref()), (Some("t"), Some("D")));
    }
}
