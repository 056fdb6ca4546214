//! The SQL of `sso_sessions` (sign-ins under way) and `sso_links` (upstream identities).

use deadpool_postgres::GenericClient;
use trellis_core::{Result, time::now_ms};

use crate::token::TokenHash;

const INSERT_SESSION: &str = "INSERT INTO sso_sessions (state_hash, idp_id, nonce, code_verifier, callback_url, \
                              purpose, redirect_url, expires_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const TAKE_SESSION: &str = "DELETE FROM sso_sessions WHERE state_hash = $1 RETURNING idp_id, nonce, code_verifier, \
                            callback_url, purpose, redirect_url, expires_ts";
const PURGE_SESSIONS: &str = "DELETE FROM sso_sessions WHERE expires_ts <= $1";
const LINKED: &str = "SELECT user_id FROM sso_links WHERE idp_id = $1 AND subject = $2";
const LINK: &str = "INSERT INTO sso_links (idp_id, subject, user_id, created_ts) VALUES ($1, $2, $3, $4) \
                    ON CONFLICT (idp_id, subject) DO NOTHING";

/// A sign-in under way.
#[derive(Debug, Clone)]
pub struct Session {
    pub idp_id: String,
    pub nonce: String,
    pub code_verifier: String,
    pub callback_url: String,
    pub purpose: String,
    pub redirect_url: String,
    pub expires_ts: i64,
}

pub async fn insert_session(c: &impl GenericClient, state: &TokenHash, s: &Session) -> Result<()> {
    c.execute(&c.prepare_cached(PURGE_SESSIONS).await?, &[&now_ms()]).await?;
    let stmt = c.prepare_cached(INSERT_SESSION).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &state.as_slice(),
        &s.idp_id,
        &s.nonce,
        &s.code_verifier,
        &s.callback_url,
        &s.purpose,
        &s.redirect_url,
        &s.expires_ts,
    ];
    c.execute(&stmt, &params).await?;
    Ok(())
}

/// Uses up a sign-in: the session, unless unknown, already used or expired.
pub async fn take_session(c: &impl GenericClient, state: &TokenHash) -> Result<Option<Session>> {
    let stmt = c.prepare_cached(TAKE_SESSION).await?;
    let Some(row) = c.query_opt(&stmt, &[&state.as_slice()]).await? else { return Ok(None) };
    let session = Session {
        idp_id: row.get(0),
        nonce: row.get(1),
        code_verifier: row.get(2),
        callback_url: row.get(3),
        purpose: row.get(4),
        redirect_url: row.get(5),
        expires_ts: row.get(6),
    };
    Ok((session.expires_ts > now_ms()).then_some(session))
}

/// The account an upstream identity is linked to.
pub async fn linked(c: &impl GenericClient, idp_id: &str, subject: &str) -> Result<Option<String>> {
    let stmt = c.prepare_cached(LINKED).await?;
    Ok(c.query_opt(&stmt, &[&idp_id, &subject]).await?.map(|r| r.get(0)))
}

/// Links an identity to an account; false if it was linked already (a concurrent sign-in).
pub async fn link(c: &impl GenericClient, idp_id: &str, subject: &str, user_id: &str) -> Result<bool> {
    let stmt = c.prepare_cached(LINK).await?;
    Ok(c.execute(&stmt, &[&idp_id, &subject, &user_id, &now_ms()]).await? == 1)
}
