//! SQL of user-interactive auth sessions (`uia_sessions`): what a session authorises, the
//! stages done, and what registration remembers in it.

use deadpool_postgres::GenericClient;
use trellis_core::{Result, time::now_ms};

const INSERT: &str = "INSERT INTO uia_sessions (session_id, kind, created_ts, user_id, target, params) \
                      VALUES ($1, $2, $3, $4, $5, $6)";
const SELECT: &str = "SELECT kind, user_id, target, completed, params, password_hash, registered_user_id, \
                      registration_token, threepid FROM uia_sessions WHERE session_id = $1 AND created_ts >= $2";
const MARK_STAGE: &str = "UPDATE uia_sessions SET completed = array_append(completed, $2) \
                          WHERE session_id = $1 AND NOT ($2 = ANY (completed))";
const SET_PARAMS: &str = "UPDATE uia_sessions SET params = $2 WHERE session_id = $1";
const SET_PASSWORD_HASH: &str = "UPDATE uia_sessions SET password_hash = $2 \
                                 WHERE session_id = $1 AND password_hash IS NULL";
const SET_REGISTERED: &str = "UPDATE uia_sessions SET registered_user_id = $2 \
                              WHERE session_id = $1 AND registered_user_id IS NULL";
const SET_REGISTRATION_TOKEN: &str = "UPDATE uia_sessions SET registration_token = $2 \
                                      WHERE session_id = $1 AND registration_token IS NULL";
const SET_THREEPID: &str = "UPDATE uia_sessions SET threepid = $2 WHERE session_id = $1";
const DELETE: &str = "DELETE FROM uia_sessions WHERE session_id = $1";
// Registrations that reserved a registration token and never finished give the use back.
const PURGE: &str = "WITH gone AS (DELETE FROM uia_sessions WHERE created_ts < $1 \
                     RETURNING registration_token, registered_user_id), \
     released AS (UPDATE registration_tokens t SET pending = GREATEST(t.pending - g.n, 0) \
                  FROM (SELECT registration_token, count(*)::int AS n FROM gone \
                        WHERE registration_token IS NOT NULL AND registered_user_id IS NULL \
                        GROUP BY registration_token) g \
                  WHERE t.token = g.registration_token) \
     SELECT count(*) FROM gone";

/// A stored session.
#[derive(Debug, Clone, Default)]
pub struct SessionRow {
    /// The purpose, e.g. `register` or `delete_devices`.
    pub kind: String,
    /// Whose session it is (`None` for registration).
    pub user_id: Option<String>,
    /// What exactly it authorises (e.g. the devices a deletion removes).
    pub target: Option<String>,
    pub completed: Vec<String>,
    /// The first request's parameters, as JSON.
    pub params: Option<String>,
    pub password_hash: Option<String>,
    pub registered_user_id: Option<String>,
    /// The registration token whose stage the session passed (a use reserved for it).
    pub registration_token: Option<String>,
    /// The 3PID an `m.login.email.identity` stage proved, as JSON (`threepid/stage.rs`).
    pub threepid: Option<String>,
}

/// A new session for a purpose, a user and a target, remembering `params`.
pub async fn create(c: &impl GenericClient, session_id: &str, row: &SessionRow) -> Result<()> {
    let stmt = c.prepare_cached(INSERT).await?;
    c.execute(&stmt, &[&session_id, &row.kind, &now_ms(), &row.user_id, &row.target, &row.params]).await?;
    Ok(())
}

/// A live session (created at or after `created_after`), if there is one.
pub async fn get(c: &impl GenericClient, session_id: &str, created_after: i64) -> Result<Option<SessionRow>> {
    let stmt = c.prepare_cached(SELECT).await?;
    Ok(c.query_opt(&stmt, &[&session_id, &created_after]).await?.map(|row| SessionRow {
        kind: row.get(0),
        user_id: row.get(1),
        target: row.get(2),
        completed: row.get(3),
        params: row.get(4),
        password_hash: row.get(5),
        registered_user_id: row.get(6),
        registration_token: row.get(7),
        threepid: row.get(8),
    }))
}

/// Remembers the 3PID an email stage proved.
pub async fn set_threepid(c: &impl GenericClient, session_id: &str, threepid: &str) -> Result<()> {
    c.execute(&c.prepare_cached(SET_THREEPID).await?, &[&session_id, &threepid]).await?;
    Ok(())
}

pub async fn mark_stage(c: &impl GenericClient, session_id: &str, stage: &str) -> Result<()> {
    let stmt = c.prepare_cached(MARK_STAGE).await?;
    c.execute(&stmt, &[&session_id, &stage]).await?;
    Ok(())
}

/// Replaces the remembered parameters.
pub async fn set_params(c: &impl GenericClient, session_id: &str, params: &str) -> Result<()> {
    let stmt = c.prepare_cached(SET_PARAMS).await?;
    c.execute(&stmt, &[&session_id, &params]).await?;
    Ok(())
}

/// Remembers a password hash unless the session has one.
pub async fn set_password_hash(c: &impl GenericClient, session_id: &str, hash: &str) -> Result<()> {
    let stmt = c.prepare_cached(SET_PASSWORD_HASH).await?;
    c.execute(&stmt, &[&session_id, &hash]).await?;
    Ok(())
}

/// Records the account a registration session created; false if it had one already (a
/// concurrent request with the same session won).
pub async fn set_registered(c: &impl GenericClient, session_id: &str, user_id: &str) -> Result<bool> {
    let stmt = c.prepare_cached(SET_REGISTERED).await?;
    Ok(c.execute(&stmt, &[&session_id, &user_id]).await? == 1)
}

/// Records the registration token the session reserved a use of; false if it had one.
pub async fn set_registration_token(c: &impl GenericClient, session_id: &str, token: &str) -> Result<bool> {
    let stmt = c.prepare_cached(SET_REGISTRATION_TOKEN).await?;
    Ok(c.execute(&stmt, &[&session_id, &token]).await? == 1)
}

/// Deletes a session; false if it was already gone (consumed by a concurrent request).
pub async fn delete(c: &impl GenericClient, session_id: &str) -> Result<bool> {
    let stmt = c.prepare_cached(DELETE).await?;
    Ok(c.execute(&stmt, &[&session_id]).await? == 1)
}

/// Deletes sessions created before `before` (releasing the registration-token uses they
/// reserved); returns how many.
pub async fn purge(c: &impl GenericClient, before: i64) -> Result<u64> {
    let stmt = c.prepare_cached(PURGE).await?;
    let count: i64 = c.query_one(&stmt, &[&before]).await?.get(0);
    Ok(count as u64)
}
