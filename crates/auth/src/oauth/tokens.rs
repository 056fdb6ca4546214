//! The token endpoint (RFC 6749 §4.1.3 and §6, RFC 8628 §3.4) and revocation (RFC 7009).
//!
//! Every grant ends in the service's ordinary device tokens: the scope's device is created
//! (or its old tokens replaced, as a login on a device ID does), named after the client, and
//! given an access token expiring after `oauth.access_token_lifetime_ms` with a refresh token.
//! The device remembers its client and scope (`oauth_devices`), so only that client
//! refreshes it. Revoking either token ends the device, as a logout does.

use base64::Engine;
use sha2::{Digest, Sha256};
use tracing::{info, instrument};
use trellis_core::{ErrorCode, Result, time::now_ms};
use trellis_proto::auth::{OauthRevokeRequest, OauthRevoked, OauthTokenRequest, OauthTokenResponse};

use super::{
    clients::{self, AUTHORIZATION_CODE, DEVICE_CODE, REFRESH_TOKEN},
    constant_time_eq, invalid_grant, invalid_request, ms, oauth_error,
};
use crate::{devices, login::issue_token, new_login::NewLogin, service::Auth, store, token::hash_token};

const TAKE_CODE: &str = "DELETE FROM oauth_grants WHERE code_hash = $1 AND kind = 'code' \
                         RETURNING client_id, redirect_uri, code_challenge, scope, device_id, user_id, expires_ts";
const DEVICE_GRANT: &str = "SELECT client_id, scope, device_id, user_id, status, last_poll_ts, expires_ts \
                            FROM oauth_grants WHERE code_hash = $1 AND kind = 'device' FOR UPDATE";
const POLLED: &str = "UPDATE oauth_grants SET last_poll_ts = $2 WHERE code_hash = $1";
const DELETE_GRANT: &str = "DELETE FROM oauth_grants WHERE code_hash = $1";
const REFRESH_OWNER: &str = "SELECT r.user_id, r.device_id, o.client_id, o.scope FROM refresh_tokens r \
                             JOIN oauth_devices o ON o.user_id = r.user_id AND o.device_id = r.device_id \
                             WHERE r.token_hash = $1";
const SESSION_OF_REFRESH: &str = "SELECT user_id, device_id FROM refresh_tokens WHERE token_hash = $1";
const RECORD_DEVICE: &str = "INSERT INTO oauth_devices (user_id, device_id, client_id, scope) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (user_id, device_id) DO UPDATE SET client_id = $3, scope = $4";

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
}

/// The S256 challenge of a verifier.
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str> {
    value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| invalid_request(format!("{name} is required")))
}

/// What a grant hands tokens out for.
struct Grant {
    user_id: String,
    device_id: String,
    client_id: String,
    scope: String,
}

impl Auth {
    #[instrument(skip_all, fields(grant_type = %req.grant_type))]
    pub(crate) async fn do_oauth_token(&self, req: OauthTokenRequest) -> Result<OauthTokenResponse> {
        self.require_oauth()?;
        let grant = match req.grant_type.as_str() {
            AUTHORIZATION_CODE => self.code_grant(&req).await?,
            REFRESH_TOKEN => return self.refresh_grant(&req).await,
            DEVICE_CODE => self.device_grant(&req).await?,
            "" => return Err(invalid_request("grant_type is required")),
            _ => return Err(oauth_error("unsupported_grant_type", 400, "Unsupported grant type")),
        };
        self.issue_oauth_tokens(grant, req.ip, req.user_agent).await
    }

    async fn code_grant(&self, req: &OauthTokenRequest) -> Result<Grant> {
        let code = required(&req.code, "code")?;
        let client_id = required(&req.client_id, "client_id")?;
        let redirect_uri = required(&req.redirect_uri, "redirect_uri")?;
        let verifier = required(&req.code_verifier, "code_verifier")?;
        let client = self.pool.get().await?;
        // Taken whatever follows: a code works once.
        let stmt = client.prepare_cached(TAKE_CODE).await?;
        let row = client.query_opt(&stmt, &[&hash_token(code).as_slice()]).await?;
        let row = row.ok_or_else(|| invalid_grant("Unknown or already used code"))?;
        let (bound_client, bound_redirect, challenge): (String, Option<String>, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        let expires_ts: i64 = row.get(6);
        if expires_ts <= now_ms() {
            return Err(invalid_grant("The code has expired"));
        }
        if bound_client != client_id || bound_redirect.as_deref() != Some(redirect_uri) {
            return Err(invalid_grant("The code was issued to another client or redirect URI"));
        }
        let challenge = challenge.unwrap_or_default();
        if !valid_verifier(verifier) || !constant_time_eq(s256(verifier).as_bytes(), challenge.as_bytes()) {
            return Err(invalid_grant("The code verifier does not match the code challenge"));
        }
        let user_id: Option<String> = row.get(5);
        Ok(Grant {
            user_id: user_id.ok_or_else(|| invalid_grant("The code was not approved"))?,
            device_id: row.get(4),
            client_id: bound_client,
            scope: row.get(3),
        })
    }

    async fn device_grant(&self, req: &OauthTokenRequest) -> Result<Grant> {
        let device_code = required(&req.device_code, "device_code")?;
        let client_id = required(&req.client_id, "client_id")?;
        let hash = hash_token(device_code);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx.query_opt(&tx.prepare_cached(DEVICE_GRANT).await?, &[&hash.as_slice()]).await?;
        let row = row.ok_or_else(|| invalid_grant("Unknown device code"))?;
        let bound_client: String = row.get(0);
        if bound_client != client_id {
            return Err(invalid_grant("The device code was issued to another client"));
        }
        let now = now_ms();
        let (status, last_poll, expires_ts): (String, Option<i64>, i64) = (row.get(4), row.get(5), row.get(6));
        if expires_ts <= now {
            return Err(oauth_error("expired_token", 400, "The device code has expired"));
        }
        match status.as_str() {
            "pending" => {
                tx.execute(&tx.prepare_cached(POLLED).await?, &[&hash.as_slice(), &now]).await?;
                tx.commit().await?;
                let interval = ms(self.config.oauth.device_poll_interval_s.saturating_mul(1000));
                return Err(match last_poll.is_some_and(|at| now - at < interval) {
                    true => oauth_error("slow_down", 400, "Polling too often"),
                    false => oauth_error("authorization_pending", 400, "The user has not answered yet"),
                });
            }
            "denied" => {
                tx.execute(&tx.prepare_cached(DELETE_GRANT).await?, &[&hash.as_slice()]).await?;
                tx.commit().await?;
                return Err(oauth_error("access_denied", 400, "The user denied the request"));
            }
            _ => {}
        }
        tx.execute(&tx.prepare_cached(DELETE_GRANT).await?, &[&hash.as_slice()]).await?;
        tx.commit().await?;
        let user_id: Option<String> = row.get(3);
        Ok(Grant {
            user_id: user_id.ok_or_else(|| invalid_grant("The device code was not approved"))?,
            device_id: row.get(2),
            client_id: bound_client,
            scope: row.get(1),
        })
    }

    async fn refresh_grant(&self, req: &OauthTokenRequest) -> Result<OauthTokenResponse> {
        let refresh_token = required(&req.refresh_token, "refresh_token")?;
        let scope = {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(REFRESH_OWNER).await?;
            let row = client.query_opt(&stmt, &[&hash_token(refresh_token).as_slice()]).await?;
            let row = row.ok_or_else(|| invalid_grant("Unknown or already used refresh token"))?;
            let owner: String = row.get(2);
            if req.client_id.as_deref().is_some_and(|c| c != owner) {
                return Err(invalid_grant("The refresh token was issued to another client"));
            }
            row.get::<_, String>(3)
        };
        let lifetime = Some(self.oauth_token_lifetime());
        let (user_id, device_id, pair) =
            self.rotate_refresh(refresh_token, lifetime).await.map_err(|e| match e.code() {
                ErrorCode::UnknownToken => invalid_grant("Unknown or already used refresh token"),
                _ => e,
            })?;
        Ok(OauthTokenResponse {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token.unwrap_or_default(),
            expires_in: pair.expires_in_ms.unwrap_or_default() / 1000,
            scope,
            user_id,
            device_id,
        })
    }

    fn oauth_token_lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.oauth.access_token_lifetime_ms.max(1000))
    }

    /// The grant's device (created if new) with a fresh token pair, recorded as the client's.
    async fn issue_oauth_tokens(
        &self,
        grant: Grant,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Result<OauthTokenResponse> {
        let mut client = self.pool.get().await?;
        match store::credentials(&client, &grant.user_id).await? {
            Some(c) if !c.deactivated && !c.locked => {}
            _ => return Err(invalid_grant("The account can no longer sign in")),
        }
        let registered = clients::load(&client, &grant.client_id).await?;
        let login = NewLogin {
            device_id: Some(grant.device_id.clone()),
            display_name: registered.metadata.unwrap_or_default().client_name,
            ip,
            user_agent,
            token_lifetime: Some(self.oauth_token_lifetime()),
        };
        let tx = client.transaction().await?;
        let issued = issue_token(&tx, &grant.user_id, &login).await?;
        let stmt = tx.prepare_cached(RECORD_DEVICE).await?;
        tx.execute(&stmt, &[&grant.user_id, &grant.device_id, &grant.client_id, &grant.scope]).await?;
        tx.commit().await?;
        if !issued.revoked.is_empty() {
            self.tokens.revoke(&issued.revoked).await;
        }
        if let Some(pos) = issued.device_list_pos {
            self.announce_device_list(&grant.user_id, pos).await;
        }
        info!(user_id = %grant.user_id, device_id = %grant.device_id, client_id = %grant.client_id, "oauth tokens issued");
        Ok(OauthTokenResponse {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token.unwrap_or_default(),
            expires_in: issued.expires_in_ms.unwrap_or_default() / 1000,
            scope: grant.scope,
            user_id: grant.user_id,
            device_id: grant.device_id,
        })
    }

    #[instrument(skip_all)]
    pub(crate) async fn do_oauth_revoke(&self, req: OauthRevokeRequest) -> Result<OauthRevoked> {
        self.require_oauth()?;
        if req.token.is_empty() {
            return Err(invalid_request("token is required"));
        }
        let hash = hash_token(&req.token);
        let mut client = self.pool.get().await?;
        let session = match store::lookup_token(&client, &hash).await? {
            Some(found) => Some((found.requester.user_id, found.requester.device_id)),
            None => {
                let stmt = client.prepare_cached(SESSION_OF_REFRESH).await?;
                client.query_opt(&stmt, &[&hash.as_slice()]).await?.map(|r| (r.get(0), r.get(1)))
            }
        };
        // RFC 7009 §2.2: an unknown or already revoked token is not an error.
        let Some((user_id, device_id)): Option<(String, String)> = session else { return Ok(OauthRevoked::default()) };
        let tx = client.transaction().await?;
        let mut removed = devices::delete_devices(&tx, &user_id, std::slice::from_ref(&device_id)).await?;
        tx.commit().await?;
        removed.revoked.push(hash);
        self.removed(&user_id, removed).await;
        info!(user_id = %user_id, device_id = %device_id, "oauth session revoked");
        Ok(OauthRevoked { user_id: Some(user_id), device_id: Some(device_id) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_of_rfc_7636_appendix_b() {
        assert_eq!(s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(!valid_verifier("short"));
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(!valid_verifier(&"a".repeat(129)));
    }
}
