//! The `m.login.sso` stage of user-interactive auth: a signed-in user confirms an operation
//! by signing in at an upstream provider again (from the stage's fallback page). Offered
//! beside the password whenever a provider is configured (as Synapse), so accounts made
//! through a provider, which have no password, can delete devices or deactivate. The
//! provider's identity must be linked to the session's user; another user's marks the
//! session refused (403 when the client goes on with it; the browser is told on a page).

use serde_json::Value;
use tracing::{info, warn};
use trellis_core::{Result, sso::OidcProvider, time::now_ms};
use trellis_proto::auth::SsoCallbackResponse;

use super::{id_token::Claims, store};
use crate::{service::Auth, uia, uia_store};

impl Auth {
    /// The flows a signed-in user's operations offer.
    pub(crate) fn user_flows(&self) -> uia::Flows {
        match self.config.sso.enabled() {
            true => uia::SSO_PASSWORD_FLOWS,
            false => uia::PASSWORD_FLOWS,
        }
    }

    /// A live session of a signed-in user's operation, for `sso_start`.
    pub(crate) async fn sso_uia_session(&self, session: &str) -> Result<()> {
        let client = self.pool.get().await?;
        let row = uia_store::get(&client, session, now_ms() - uia::SESSION_TTL_MS).await?;
        match row {
            Some(row) if row.user_id.is_some() => Ok(()),
            _ => Err(uia::unknown_session()),
        }
    }

    /// Records the stage in `session` if the identity (the account linked to it, if any) is
    /// its user's, else refuses the session.
    pub(crate) async fn sso_uia_complete(
        &self,
        p: &OidcProvider,
        claims: &Claims,
        session: &str,
    ) -> Result<SsoCallbackResponse> {
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        let linked = store::linked(&self.pool.get().await?, &p.idp_id, sub).await?;
        self.sso_uia_record(session, linked.as_deref(), &p.idp_id).await
    }

    /// The stage of `session` by `signed_in` (the account the provider vouched for).
    pub(crate) async fn sso_uia_record(
        &self,
        session: &str,
        signed_in: Option<&str>,
        idp_id: &str,
    ) -> Result<SsoCallbackResponse> {
        let client = self.pool.get().await?;
        let row = uia_store::get(&client, session, now_ms() - uia::SESSION_TTL_MS).await?;
        let owner = row.and_then(|r| r.user_id).ok_or_else(uia::unknown_session)?;
        let refused = signed_in != Some(owner.as_str());
        match refused {
            true => {
                uia_store::mark_stage(&client, session, uia::SSO_OTHER_USER).await?;
                warn!(user_id = %owner, idp_id, "m.login.sso by another identity: session refused");
            }
            false => {
                uia_store::mark_stage(&client, session, uia::SSO).await?;
                info!(user_id = %owner, idp_id, "m.login.sso stage completed");
            }
        }
        Ok(SsoCallbackResponse { user_id: owner, purpose: "uia".into(), refused, ..Default::default() })
    }
}
