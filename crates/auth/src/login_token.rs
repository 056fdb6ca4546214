//! `m.login.token` tokens from `POST /login/get_token` (spec 1.7, MSC3882): a signed-in user
//! confirms their password (every time: the spec forbids skipping UIA here) and gets a
//! short-lived token that signs one new device in. Stored hashed; a login deletes it, so it
//! works once. Upstream sign-ins (`sso/`) hand out the same tokens.

use deadpool_postgres::GenericClient;
use tracing::{info, instrument};
use trellis_core::{Error, Result, time::now_ms};
use trellis_proto::auth::{CreateLoginTokenRequest, LoginToken};

use crate::{
    service::Auth,
    token::{LOGIN_PREFIX, TokenHash, hash_token, lifetime_ms, new_token},
};

const INSERT: &str = "INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)";
const CONSUME: &str = "DELETE FROM login_tokens WHERE token_hash = $1 RETURNING user_id, expires_ts";
const PURGE: &str = "DELETE FROM login_tokens WHERE expires_ts <= $1";

/// The `uia_sessions.kind` of login-token requests.
const UIA_KIND: &str = "get_login_token";

/// Uses up a login token: the user it signs in, unless it is unknown, used or expired.
pub async fn consume(c: &impl GenericClient, hash: &TokenHash) -> Result<Option<String>> {
    let stmt = c.prepare_cached(CONSUME).await?;
    let Some(row) = c.query_opt(&stmt, &[&hash.as_slice()]).await? else { return Ok(None) };
    let expires_ts: i64 = row.get(1);
    Ok((expires_ts > now_ms()).then(|| row.get(0)))
}

/// Stores a new login token for `user_id`, usable for `lifetime` (an upstream sign-in's).
pub async fn insert(c: &impl GenericClient, user_id: &str, lifetime: std::time::Duration) -> Result<String> {
    let token = new_token(LOGIN_PREFIX);
    let now = now_ms();
    c.execute(&c.prepare_cached(PURGE).await?, &[&now]).await?;
    let stmt = c.prepare_cached(INSERT).await?;
    c.execute(&stmt, &[&hash_token(&token).as_slice(), &user_id, &now.saturating_add(lifetime_ms(lifetime))]).await?;
    Ok(token)
}

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_create_login_token(&self, req: CreateLoginTokenRequest) -> Result<LoginToken> {
        if !self.config.login_token_enabled {
            return Err(Error::unrecognized("Login tokens are not enabled on this server").with_status(404));
        }
        // A session is used up when it completes, so each token needs the password again.
        self.require_uia(&req.user_id, UIA_KIND, None, &req.auth_json).await?;
        let token = insert(&self.pool.get().await?, &req.user_id, self.config.login_token_lifetime).await?;
        let lifetime = lifetime_ms(self.config.login_token_lifetime);
        info!(user_id = %req.user_id, "login token issued");
        Ok(LoginToken { login_token: token, expires_in_ms: lifetime })
    }
}
