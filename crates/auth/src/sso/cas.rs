//! Sign-in through a CAS server (`[sso.cas]`, Synapse's `m.login.cas`): the browser goes to
//! `{server_url}/login?service=...`, comes back to `/login/cas/ticket` with a ticket, which
//! `{server_url}/proxyValidate` must vouch for. The CAS username names the account, mapped
//! to a localpart as Synapse maps it (so accounts carry over): an existing account of that
//! name is signed in to (CAS servers vouch for a directory's names), a new one is made
//! otherwise; the link is kept in `sso_links` under `cas`.

use tracing::{info, instrument, warn};
use trellis_core::{
    Error, Result,
    sso::{CAS_IDP, CasConfig},
};
use trellis_proto::auth::{CasTicketRequest, SsoCallbackResponse};

use super::{store, upstream::provider_failed};
use crate::{register::check_localpart, service::Auth, store as users};

/// Where the browser signs in: the CAS login page, told to come back to `service`.
pub fn login_url(cas: &CasConfig, service: &str) -> Result<String> {
    let base = format!("{}/login", cas.server_url.trim_end_matches('/'));
    let mut url = url::Url::parse(&base).map_err(|e| provider_failed(format!("cas.server_url: {e}")))?;
    url.query_pairs_mut().append_pair("service", service);
    Ok(url.into())
}

/// The user a `proxyValidate` answer vouches for (CAS 2.0 XML), if it is a success.
pub fn validated_user(xml: &str) -> Option<String> {
    if !xml.contains("authenticationSuccess") {
        return None;
    }
    let start = xml.find("<cas:user>")? + "<cas:user>".len();
    let end = start + xml[start..].find("</cas:user>")?;
    let user = xml[start..end].trim();
    let user = user.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'");
    let user = user.replace("&amp;", "&");
    (!user.is_empty()).then_some(user)
}

/// Synapse's mapping of an external username to a localpart: lower case; `a-z 0-9 . _ - /`
/// kept, every other byte (`=` included) written `=xx` in hex; a leading `_` becomes `=5f`.
pub fn map_username(name: &str) -> String {
    let mut out = String::new();
    for b in name.to_lowercase().bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/' => out.push(char::from(b)),
            other => out.push_str(&format!("={other:02x}")),
        }
    }
    match out.strip_prefix('_') {
        Some(rest) => format!("=5f{rest}"),
        None => out,
    }
}

impl Auth {
    #[instrument(skip_all)]
    pub(crate) async fn do_cas_ticket(&self, req: CasTicketRequest) -> Result<SsoCallbackResponse> {
        let cas = self.config.sso.cas.as_ref().ok_or_else(|| Error::not_found("CAS is not configured"))?;
        if req.ticket.is_empty() {
            return Err(Error::missing_param("Missing ticket"));
        }
        let mut url = url::Url::parse(&format!("{}/proxyValidate", cas.server_url.trim_end_matches('/')))
            .map_err(|e| provider_failed(format!("cas.server_url: {e}")))?;
        url.query_pairs_mut().append_pair("ticket", &req.ticket).append_pair("service", &req.service_url);
        let answer = self.sso.get_text(url.as_str()).await?;
        let name = validated_user(&answer).ok_or_else(|| {
            warn!("CAS ticket refused");
            Error::forbidden("The CAS server did not vouch for this ticket")
        })?;
        let localpart = map_username(&name);
        check_localpart(&localpart, &self.config.server_name)
            .map_err(|_| Error::forbidden("The CAS username cannot be a Matrix user ID here"))?;
        let user_id = self.user_id(&localpart);
        if let Some(session) = &req.session {
            return self.sso_uia_record(session, Some(&user_id), CAS_IDP).await;
        }
        let redirect_url = req.redirect_url.ok_or_else(|| Error::missing_param("Missing redirectUrl"))?;
        let created = self.cas_account(&name, &localpart, &user_id).await?;
        info!(user_id = %user_id, created, "signed in through CAS");
        let out = SsoCallbackResponse { user_id, purpose: "login".into(), created, ..Default::default() };
        self.login_redirect(out, &redirect_url).await
    }

    /// The account of a CAS name: linked, existing, or made now.
    async fn cas_account(&self, name: &str, localpart: &str, user_id: &str) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let created = match users::credentials(&tx, user_id).await? {
            Some(c) if c.deactivated => return Err(crate::login::deactivated()),
            Some(c) if c.locked => return Err(crate::login::locked()),
            Some(_) => false,
            None => {
                self.not_claimed(localpart, None)?;
                users::create_user(&tx, user_id, None, false, localpart).await?;
                true
            }
        };
        store::link(&tx, CAS_IDP, name, user_id).await?;
        tx.commit().await?;
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_as_synapse_maps_them() {
        assert_eq!(map_username("cas_user!"), "cas_user=21");
        assert_eq!(map_username("Alice"), "alice");
        assert_eq!(map_username("_bot"), "=5fbot");
        assert_eq!(map_username("a=b c"), "a=3db=20c");
    }

    #[test]
    fn only_a_success_names_a_user() {
        let ok = "<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'><cas:authenticationSuccess>\
                  <cas:user>jo&amp;e</cas:user></cas:authenticationSuccess></cas:serviceResponse>";
        assert_eq!(validated_user(ok).as_deref(), Some("jo&e"));
        let failed = "<cas:serviceResponse><cas:authenticationFailure code='INVALID_TICKET'>no</cas:authenticationFailure>\
                      </cas:serviceResponse>";
        assert_eq!(validated_user(failed), None);
        assert_eq!(validated_user(""), None);
    }
}
