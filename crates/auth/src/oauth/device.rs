//! The device authorization grant (RFC 8628, spec 1.18): a device code the client polls the
//! token endpoint with, and a short user code a signed-in user enters (or follows in a link)
//! on the device-link page to approve or deny it.

use tracing::{info, instrument};
use trellis_core::{Error, Result, ids::random_string, time::now_ms};
use trellis_proto::auth::{
    OauthApproveDeviceRequest, OauthDeviceApproval, OauthDeviceAuthorization, OauthDeviceAuthorizationRequest,
};

use super::{
    clients::{self, DEVICE_CODE},
    ms, oauth_error, scope,
};
use crate::{service::Auth, token::hash_token};

const INSERT: &str = "INSERT INTO oauth_grants (code_hash, kind, client_id, scope, device_id, user_code, status, expires_ts) \
                      VALUES ($1, 'device', $2, $3, $4, $5, 'pending', $6)";
const DECIDE: &str = "UPDATE oauth_grants SET status = $3, user_id = $4 \
                      WHERE user_code = $1 AND kind = 'device' AND status = 'pending' AND expires_ts > $2 \
                      RETURNING client_id, device_id";
const PURGE: &str = "DELETE FROM oauth_grants WHERE expires_ts <= $1";

/// User codes use consonants only (no words, no look-alikes), as RFC 8628 §6.1 suggests.
const USER_CODE_CHARS: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;

fn new_user_code() -> String {
    // `random_string` gives alphanumerics; map each to the consonant alphabet.
    random_string(USER_CODE_LEN)
        .bytes()
        .map(|b| USER_CODE_CHARS[usize::from(b) % USER_CODE_CHARS.len()] as char)
        .collect()
}

/// A user code as typed: case and dashes or spaces do not matter.
pub fn normalize_user_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

impl Auth {
    #[instrument(skip_all, fields(client_id = %req.client_id))]
    pub(crate) async fn do_oauth_device_authorize(
        &self,
        req: OauthDeviceAuthorizationRequest,
    ) -> Result<OauthDeviceAuthorization> {
        self.require_oauth()?;
        let client = self.pool.get().await?;
        let registered = clients::load(&client, &req.client_id).await?;
        if !registered.metadata.unwrap_or_default().grant_types.iter().any(|g| g == DEVICE_CODE) {
            return Err(oauth_error("unauthorized_client", 400, "The client did not register the device_code grant"));
        }
        let scope = scope::parse(&req.scope)?;
        let device_code = random_string(40);
        let user_code = new_user_code();
        let now = now_ms();
        client.execute(&client.prepare_cached(PURGE).await?, &[&now]).await?;
        let expires = now.saturating_add(ms(self.config.oauth.device_code_lifetime_ms));
        let stmt = client.prepare_cached(INSERT).await?;
        let hash = hash_token(&device_code);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&hash.as_slice(), &req.client_id, &scope.as_string(), &scope.device_id, &user_code, &expires];
        client.execute(&stmt, &params).await?;
        info!(client_id = %req.client_id, device_id = %scope.device_id, "device authorization started");
        Ok(OauthDeviceAuthorization {
            device_code,
            user_code,
            expires_in: ms(self.config.oauth.device_code_lifetime_ms) / 1000,
            interval: i64::try_from(self.config.oauth.device_poll_interval_s).unwrap_or(5),
        })
    }

    #[instrument(skip_all, fields(approve = req.approve))]
    pub(crate) async fn do_oauth_approve_device(&self, req: OauthApproveDeviceRequest) -> Result<OauthDeviceApproval> {
        self.require_oauth()?;
        let user_id = self.browser_user(&req.session_token).await?;
        let status = if req.approve { "approved" } else { "denied" };
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(DECIDE).await?;
        let code = normalize_user_code(&req.user_code);
        let row = client.query_opt(&stmt, &[&code, &now_ms(), &status, &user_id]).await?;
        let row = row.ok_or_else(|| Error::not_found("Unknown or expired code"))?;
        let (client_id, device_id): (String, String) = (row.get(0), row.get(1));
        let registered = clients::load(&client, &client_id).await?;
        info!(user_id = %user_id, client_id = %client_id, device_id = %device_id, status, "device authorization decided");
        Ok(OauthDeviceApproval {
            client_name: registered.metadata.unwrap_or_default().client_name.unwrap_or(client_id),
            device_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes() {
        let code = new_user_code();
        assert_eq!(code.len(), USER_CODE_LEN);
        assert!(code.bytes().all(|b| USER_CODE_CHARS.contains(&b)));
        assert_eq!(normalize_user_code("bcdf-ghjk"), "BCDFGHJK");
    }
}
