//! Application services in the auth service: an `as_token` authenticates the appservice's
//! sender user, or (with the `user_id` query parameter) any registered user of its user
//! namespaces; appservices register their users with `m.login.application_service`;
//! exclusive user namespaces are refused to everyone else; every appservice's sender user
//! exists from start-up.

use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result, appservice::Appservice, ids::validate_new_localpart};
use trellis_proto::auth::{RatelimitOverride, RegisterRequest, RegisterResponse, Requester};

use crate::{
    login::{login_localpart, requested_device_id},
    new_login::NewLogin,
    register::{NewAccount, response},
    service::Auth,
    store,
};

impl Auth {
    /// Creates the sender user of every configured appservice that does not have one yet.
    pub async fn seed_appservice_senders(&self) -> Result<()> {
        let mut client = self.pool.get().await?;
        for appservice in self.appservices.all() {
            let tx = client.transaction().await?;
            if !store::user_exists(&tx, &appservice.sender).await? {
                let localpart = &appservice.registration.sender_localpart;
                match store::create_user(&tx, &appservice.sender, None, false, localpart).await {
                    Ok(()) => {
                        info!(user_id = %appservice.sender, appservice = appservice.id(), "appservice sender created")
                    }
                    // Another auth process created it first.
                    Err(e) if e.code() == ErrorCode::UserInUse => {}
                    Err(e) => return Err(e),
                }
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// The requester an `as_token` stands for: the sender user, or `user_id` when it lies in
    /// the appservice's user namespaces and is registered (403 otherwise, as Synapse).
    pub(crate) async fn authenticate_appservice(
        &self,
        appservice: &Appservice,
        user_id: Option<&str>,
    ) -> Result<Requester> {
        let user_id = user_id.unwrap_or(&appservice.sender);
        if !appservice.is_interested_in_user(user_id) {
            return Err(Error::new(ErrorCode::Exclusive, "Application service cannot masquerade as this user.")
                .with_status(403));
        }
        if user_id != appservice.sender {
            let client = self.pool.get().await?;
            if !store::user_exists(&client, user_id).await? {
                return Err(Error::forbidden(format!("Application service has not registered this user ({user_id})")));
            }
        }
        tracing::Span::current().record("user_id", user_id);
        Ok(Requester {
            user_id: user_id.to_owned(),
            device_id: String::new(),
            appservice_id: Some(appservice.id().to_owned()),
            // `rate_limited: false`: no limits for it or the users it acts as; its sender
            // user is never limited (the spec's "the sender is excluded"). An override of 0
            // messages per second is "no limit" wherever the gateway limits a user.
            ratelimit_override: (!appservice.rate_limited || user_id == appservice.sender)
                .then_some(RatelimitOverride { messages_per_second: 0, burst_count: 0 }),
            ..Requester::default()
        })
    }

    /// `POST /login` with `m.login.application_service` (spec 1.2): the user the appservice
    /// signs in as, which must lie in its user namespaces (`M_EXCLUSIVE`) and be registered;
    /// a token that is no appservice's, or a user who does not exist, is `M_FORBIDDEN`.
    pub(crate) async fn appservice_login_user(&self, token: &str, user: &str) -> Result<String> {
        let appservice = self
            .appservices
            .by_as_token(token)
            .ok_or_else(|| Error::forbidden("The access token is not an application service's."))?;
        let localpart = login_localpart(user, &self.config.server_name)?;
        let user_id = self.user_id(&localpart);
        if !appservice.is_interested_in_user(&user_id) {
            return Err(Error::new(ErrorCode::Exclusive, "This user is not in the application service's namespace.")
                .with_status(403));
        }
        let client = self.pool.get().await?;
        if !store::user_exists(&client, &user_id).await? {
            return Err(Error::forbidden(format!("Application service has not registered this user ({user_id})")));
        }
        Ok(user_id)
    }

    /// `M_EXCLUSIVE` when `localpart` lies in an exclusive user namespace of an appservice
    /// other than `allowed`.
    pub(crate) fn not_claimed(&self, localpart: &str, allowed: Option<&str>) -> Result<()> {
        let user_id = self.user_id(localpart);
        let claimed = self.appservices.user_claimed_by(&user_id);
        if claimed.iter().any(|a| Some(a.id()) != allowed) {
            return Err(Error::new(ErrorCode::Exclusive, "This user ID is reserved by an application service."));
        }
        Ok(())
    }

    /// `POST /register` with `type: m.login.application_service`: a user of the appservice's
    /// namespace, with no password and no user-interactive auth (registration may be closed).
    #[instrument(skip_all, fields(username = req.username.as_deref()))]
    pub(crate) async fn register_appservice_user(&self, token: &str, req: RegisterRequest) -> Result<RegisterResponse> {
        let appservice = self
            .appservices
            .by_as_token(token)
            .ok_or_else(|| Error::new(ErrorCode::UnknownToken, "Invalid application service token."))?;
        let localpart = req
            .username
            .as_deref()
            .map(str::to_lowercase)
            .ok_or_else(|| Error::missing_param("username is required for m.login.application_service"))?;
        validate_new_localpart(&localpart, &self.config.server_name)?;
        let user_id = self.user_id(&localpart);
        if !appservice.is_interested_in_user(&user_id) {
            return Err(Error::new(ErrorCode::Exclusive, "Invalid user localpart for this application service."));
        }
        self.not_claimed(&localpart, Some(appservice.id()))?;
        self.check_available_id(&user_id).await?;
        let login = (!req.inhibit_login).then(|| NewLogin {
            device_id: requested_device_id(req.device_id.as_deref()).ok().flatten(),
            display_name: req.initial_device_display_name.clone(),
            ip: req.ip.clone(),
            user_agent: req.user_agent.clone(),
            token_lifetime: self.token_lifetime(req.refresh_token),
        });
        let account = NewAccount {
            password_hash: None,
            is_guest: false,
            upgrade: false,
            session: None,
            registration_token: None,
            login,
        };
        let issued = self.create_account(&localpart, &account).await?;
        info!(user_id = %user_id, appservice = appservice.id(), "appservice user registered");
        Ok(response(user_id, issued, true))
    }

    async fn check_available_id(&self, user_id: &str) -> Result<()> {
        let client = self.pool.get().await?;
        if store::user_exists(&client, user_id).await? {
            return Err(Error::new(ErrorCode::UserInUse, "User ID already taken."));
        }
        Ok(())
    }
}
