//! Refresh tokens (spec 1.3, "Refreshing access tokens"): handed out with an expiring access
//! token to clients that ask for one when `auth.access_token_lifetime_ms` is set, rotated by
//! `POST /refresh`.
//!
//! A refresh hands out a new pair and links the new refresh token to the old one
//! (`prev_hash`). The old refresh token keeps working until the new pair is first used — the
//! new access token authenticating a request, or the new refresh token refreshing — and is
//! deleted then, so a client that lost an answer can refresh again; refreshing it again
//! replaces the pair it handed out before (never used, so never cached anywhere). The old
//! access token works until it expires. Refresh tokens go with their device (logout, device
//! deletion, a new login on the same device ID).

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result, time::now_ms};
use trellis_proto::auth::{RefreshRequest, RefreshResponse};

use crate::{
    service::Auth,
    store,
    token::{REFRESH_PREFIX, TokenHash, hash_token, lifetime_ms, new_access_token, new_token},
};

const INSERT: &str = "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts, prev_hash) \
                      VALUES ($1, $2, $3, $4, $5)";
const SELECT_FOR_UPDATE: &str = "SELECT user_id, device_id FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE";
// The first use of a pair retires the refresh token it replaced.
const FIRST_USE: &str = "WITH first AS (UPDATE refresh_tokens SET used = TRUE WHERE token_hash = $1 AND NOT used \
                         RETURNING prev_hash) \
                         DELETE FROM refresh_tokens WHERE token_hash = (SELECT prev_hash FROM first)";
// The pairs an earlier refresh of this token handed out, never used: the new pair replaces them.
const DELETE_UNUSED_NEXT: &str = "DELETE FROM refresh_tokens WHERE prev_hash = $1 AND NOT used RETURNING token_hash";
const DELETE_ACCESS_OF: &str = "DELETE FROM access_tokens WHERE refresh_hash = ANY($1)";
const DELETE_EXPIRED: &str = "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2 AND expires_ts <= $3";
const DELETE_DEVICE: &str = "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2";

/// A new access token for a device, with its refresh token when `lifetime` is set.
pub struct Pair {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<i64>,
}

/// Issues a device's access token: expiring after `lifetime` with a refresh token linked to
/// `prev` (the one it replaces), or with no `lifetime` one that never expires.
pub async fn issue(
    c: &impl GenericClient,
    user_id: &str,
    device_id: &str,
    lifetime: Option<Duration>,
    prev: Option<&TokenHash>,
) -> Result<Pair> {
    let access_token = new_access_token();
    let Some(lifetime) = lifetime else {
        store::insert_token(c, &hash_token(&access_token), user_id, device_id, None, None).await?;
        return Ok(Pair { access_token, refresh_token: None, expires_in_ms: None });
    };
    let refresh_token = new_token(REFRESH_PREFIX);
    let refresh_hash = hash_token(&refresh_token);
    let stmt = c.prepare_cached(INSERT).await?;
    let prev = prev.map(|h| h.as_slice());
    c.execute(&stmt, &[&refresh_hash.as_slice(), &user_id, &device_id, &now_ms(), &prev]).await?;
    let expires_in_ms = lifetime_ms(lifetime);
    let expires_ts = now_ms().saturating_add(expires_in_ms);
    store::insert_token(c, &hash_token(&access_token), user_id, device_id, Some(expires_ts), Some(&refresh_hash))
        .await?;
    Ok(Pair { access_token, refresh_token: Some(refresh_token), expires_in_ms: Some(expires_in_ms) })
}

/// The first use of a refresh token or of the access token issued with it: the refresh
/// token it replaced stops working.
pub async fn first_use(c: &impl GenericClient, refresh: &TokenHash) -> Result<()> {
    let stmt = c.prepare_cached(FIRST_USE).await?;
    c.execute(&stmt, &[&refresh.as_slice()]).await?;
    Ok(())
}

/// Deletes a device's refresh tokens (a new login on its ID replaces its session).
pub async fn delete_device(c: &impl GenericClient, user_id: &str, device_id: &str) -> Result<()> {
    let stmt = c.prepare_cached(DELETE_DEVICE).await?;
    c.execute(&stmt, &[&user_id, &device_id]).await?;
    Ok(())
}

/// An unknown refresh token, or one retired: the session is over (spec: 401 `M_UNKNOWN_TOKEN`).
fn unknown_refresh_token() -> Error {
    Error::new(ErrorCode::UnknownToken, "Unknown or already used refresh token").with_field("soft_logout", false)
}

impl Auth {
    #[instrument(skip_all, fields(user_id = tracing::field::Empty))]
    pub(crate) async fn do_refresh(&self, req: RefreshRequest) -> Result<RefreshResponse> {
        let (_, _, pair) = self.rotate_refresh(&req.refresh_token, self.config.access_token_lifetime).await?;
        // Without a lifetime (no longer configured) the new access token never expires, and
        // the refresh token sent stays the one to use.
        let refresh_token = pair.refresh_token.unwrap_or(req.refresh_token);
        Ok(RefreshResponse { access_token: pair.access_token, refresh_token, expires_in_ms: pair.expires_in_ms })
    }

    /// Rotates a refresh token: the device's new pair (expiring after `lifetime`), with its
    /// user and device. `M_UNKNOWN_TOKEN` for one unknown or retired. The OAuth 2.0 token
    /// endpoint's refresh grant shares it.
    pub(crate) async fn rotate_refresh(
        &self,
        refresh_token: &str,
        lifetime: Option<Duration>,
    ) -> Result<(String, String, Pair)> {
        let hash = hash_token(refresh_token);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(SELECT_FOR_UPDATE).await?;
        let row = tx.query_opt(&stmt, &[&hash.as_slice()]).await?.ok_or_else(unknown_refresh_token)?;
        let (user_id, device_id): (String, String) = (row.get(0), row.get(1));
        tracing::Span::current().record("user_id", user_id.as_str());
        first_use(&tx, &hash).await?;
        let stmt = tx.prepare_cached(DELETE_UNUSED_NEXT).await?;
        let replaced = store::hashes(tx.query(&stmt, &[&hash.as_slice()]).await?)?;
        if !replaced.is_empty() {
            let replaced: Vec<&[u8]> = replaced.iter().map(|h| h.as_slice()).collect();
            tx.execute(&tx.prepare_cached(DELETE_ACCESS_OF).await?, &[&replaced]).await?;
        }
        tx.execute(&tx.prepare_cached(DELETE_EXPIRED).await?, &[&user_id, &device_id, &now_ms()]).await?;
        let pair = issue(&tx, &user_id, &device_id, lifetime, Some(&hash)).await?;
        tx.commit().await?;
        info!(user_id = %user_id, device_id = %device_id, "access token refreshed");
        Ok((user_id, device_id, pair))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_refresh_token_is_a_hard_401() {
        let err = unknown_refresh_token();
        assert_eq!((err.code(), err.status()), (ErrorCode::UnknownToken, 401));
        assert_eq!(err.client_body()["soft_logout"], false);
    }
}
