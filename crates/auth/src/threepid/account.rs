//! The 3PIDs of an account: listing, adding a validated one (`/3pid/add`, and the deprecated
//! `POST /account/3pid`), removing one (`/3pid/delete`), binding it on an identity server and
//! unbinding it (`/3pid/bind`, `/3pid/unbind`, and on removal and deactivation), and the
//! password reset an email stage authorises.

use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result, time::now_ms};
use trellis_proto::auth::{
    AddThreepidRequest, AuthAck, BindThreepidRequest, DeleteThreepidRequest, ListThreepidsRequest,
    LookupThreepidRequest, ResetPasswordRequest, ResetPasswordResponse, Threepid, ThreepidList, ThreepidOwner,
    ThreepidUnbindResult,
};

use super::{identity, stage, store, unbind_result};
use crate::{
    password,
    service::Auth,
    uia::{self, Outcome, Round},
    uia_store,
};

impl Auth {
    pub(crate) async fn do_list_threepids(&self, req: ListThreepidsRequest) -> Result<ThreepidList> {
        let client = self.pool.get().await?;
        let threepids = store::list(&client, &req.user_id)
            .await?
            .into_iter()
            .map(|r| Threepid {
                medium: r.medium,
                address: r.address,
                validated_at: r.validated_ts,
                added_at: r.added_ts,
            })
            .collect();
        Ok(ThreepidList { threepids })
    }

    #[instrument(skip_all, fields(user_id = %req.user_id, sid = %req.sid))]
    pub(crate) async fn do_add_threepid(&self, req: AddThreepidRequest) -> Result<AuthAck> {
        if !req.without_uia {
            self.require_uia(&req.user_id, "add_threepid", Some(&req.sid), &req.auth_json).await?;
        }
        let (medium, address, validated) = self.validated_threepid(&req.sid, &req.client_secret).await?;
        let client = self.pool.get().await?;
        if !store::add(&client, &req.user_id, &medium, &address, validated, now_ms()).await? {
            // Adding one's own 3PID again changes nothing.
            if store::owner(&client, &medium, &address).await?.as_deref() != Some(req.user_id.as_str()) {
                return Err(Error::new(ErrorCode::ThreepidInUse, "3PID is already in use"));
            }
        }
        info!(medium = %medium, "3pid added");
        Ok(AuthAck {})
    }

    /// Unbinds the 3PID from identity servers (the one named, else those it was bound on
    /// through this server) and, with `remove`, takes it from the account.
    #[instrument(skip_all, fields(user_id = %req.user_id, remove))]
    pub(crate) async fn do_delete_threepid(
        &self,
        req: DeleteThreepidRequest,
        remove: bool,
    ) -> Result<ThreepidUnbindResult> {
        let address = match req.medium.as_str() {
            super::sessions::EMAIL => super::sessions::canonical_email(&req.address).unwrap_or(req.address.clone()),
            _ => req.address.clone(),
        };
        let servers = match req.id_server.as_deref().filter(|s| !s.is_empty()) {
            Some(server) => vec![server.to_owned()],
            None => store::bindings(&self.pool.get().await?, &req.user_id, &req.medium, &address).await?,
        };
        let unbound = self.unbind(&req.user_id, &req.medium, &address, &servers).await?;
        if remove {
            store::delete(&self.pool.get().await?, &req.user_id, &req.medium, &address).await?;
            info!("3pid removed");
        }
        Ok(unbind_result(unbound))
    }

    #[instrument(skip_all, fields(user_id = %req.user_id, id_server = %req.id_server))]
    pub(crate) async fn do_bind_threepid(&self, req: BindThreepidRequest) -> Result<AuthAck> {
        super::sessions::check_client_secret(&req.client_secret)?;
        let http = self.id_servers.get_or_init(|| identity::client(self.config.insecure_identity_server_tls));
        let bound =
            identity::bind(http, &req.id_server, &req.id_access_token, &req.sid, &req.client_secret, &req.user_id)
                .await?;
        let client = self.pool.get().await?;
        store::add_binding(&client, &req.user_id, &bound.medium, &bound.address, &req.id_server).await?;
        info!(medium = %bound.medium, "3pid bound on an identity server");
        Ok(AuthAck {})
    }

    /// Asks each identity server to unbind; the record of a binding goes once it did.
    /// Whether there was something to unbind and every server did.
    async fn unbind(&self, user_id: &str, medium: &str, address: &str, servers: &[String]) -> Result<bool> {
        let http = self.id_servers.get_or_init(|| identity::client(self.config.insecure_identity_server_tls));
        let mut all = !servers.is_empty();
        for server in servers {
            if identity::unbind(http, server, user_id, medium, address).await {
                store::delete_binding(&self.pool.get().await?, user_id, medium, address, server).await?;
            } else {
                all = false;
            }
        }
        Ok(all)
    }

    #[instrument(skip_all, fields(id_server = %req.id_server))]
    pub(crate) async fn do_lookup_threepid(&self, req: LookupThreepidRequest) -> Result<ThreepidOwner> {
        let address = match req.medium.as_str() {
            super::sessions::EMAIL => super::sessions::canonical_email(&req.address)?,
            _ => req.address.clone(),
        };
        let http = self.id_servers.get_or_init(|| identity::client(self.config.insecure_identity_server_tls));
        let user_id = identity::lookup(http, &req.id_server, &req.id_access_token, &req.medium, &address).await?;
        Ok(ThreepidOwner { user_id })
    }

    /// Every binding of a deactivated user, unbound.
    pub(crate) async fn unbind_everywhere(&self, user_id: &str) -> Result<bool> {
        let bindings = store::all_bindings(&self.pool.get().await?, user_id).await?;
        let mut all = true;
        for (medium, address, server) in bindings {
            all &= self.unbind(user_id, &medium, &address, &[server]).await?;
        }
        Ok(all)
    }

    /// The account a login's 3PID (`m.id.thirdparty`, or the legacy `medium` and `address`)
    /// names; the same refusal as a wrong password when none has it.
    pub(crate) async fn threepid_owner_for_login(&self, medium: &str, address: &str) -> Result<String> {
        let address = match medium {
            super::sessions::EMAIL => super::sessions::canonical_email(address).unwrap_or_default(),
            _ => address.to_owned(),
        };
        store::owner(&self.pool.get().await?, medium, &address)
            .await?
            .ok_or_else(|| Error::forbidden("Invalid username or password"))
    }

    /// `POST /account/password` without an access token: the `m.login.email.identity` stage
    /// proves an address, whose account gets the new password (its devices logged out
    /// unless `logout_devices` is false).
    #[instrument(skip_all)]
    pub(crate) async fn do_reset_password(&self, req: ResetPasswordRequest) -> Result<ResetPasswordResponse> {
        let new = password::check_new(Some(&req.new_password), self.config.min_password_len)?.to_owned();
        let round = Round {
            kind: "reset_password",
            user_id: None,
            target: None,
            params: None,
            flows: stage::RESET_FLOWS,
            auth_json: &req.auth_json,
            server_name: &self.config.server_name,
            recaptcha: None,
            ip: None,
        };
        let session = match self.uia.check(&self.pool, round).await? {
            Outcome::Incomplete { body, .. } => return Err(Error::uia(body)),
            Outcome::Complete(session) => session.ok_or_else(uia::unknown_session)?,
        };
        let (medium, address, _) = stage::proved(&session.row)?;
        let client = self.pool.get().await?;
        if !uia_store::delete(&client, &session.id).await? {
            return Err(uia::unknown_session());
        }
        let user_id = store::owner(&client, &medium, &address)
            .await?
            .ok_or_else(|| Error::new(ErrorCode::ThreepidNotFound, "Email not found"))?;
        drop(client);
        self.set_password(&user_id, new, req.logout_devices.then_some(None)).await?;
        info!(user_id = %user_id, "password reset by email");
        Ok(ResetPasswordResponse { user_id })
    }
}
