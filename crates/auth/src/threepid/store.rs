//! SQL of third-party identifiers: validation sessions (`threepid_sessions`), the 3PIDs of
//! accounts (`user_threepids`) and the identity servers they were bound on
//! (`user_threepid_id_servers`).

use deadpool_postgres::GenericClient;
use trellis_core::Result;

use crate::token::TokenHash;

const SESSION_BY_SECRET: &str = "SELECT sid, last_send_attempt FROM threepid_sessions \
                                 WHERE client_secret = $1 AND medium = $2 AND address = $3 AND expires_ts > $4";
const DELETE_STALE_SESSION: &str = "DELETE FROM threepid_sessions \
                                    WHERE client_secret = $1 AND medium = $2 AND address = $3";
const INSERT_SESSION: &str = "INSERT INTO threepid_sessions (sid, client_secret, medium, address, token_hash, \
                              last_send_attempt, next_link, created_ts, expires_ts) \
                              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const RESEND: &str = "UPDATE threepid_sessions SET token_hash = $2, last_send_attempt = $3, next_link = $4, \
                      expires_ts = $5 WHERE sid = $1";
const VALIDATE: &str = "UPDATE threepid_sessions SET validated_ts = COALESCE(validated_ts, $4) \
                        WHERE sid = $1 AND client_secret = $2 AND token_hash = $3 AND expires_ts > $4 \
                        RETURNING next_link";
const VALIDATED: &str = "SELECT medium, address, validated_ts FROM threepid_sessions \
                         WHERE sid = $1 AND client_secret = $2 AND validated_ts IS NOT NULL AND expires_ts > $3";
const PURGE_SESSIONS: &str = "DELETE FROM threepid_sessions WHERE expires_ts <= $1";

const OWNER: &str = "SELECT user_id FROM user_threepids WHERE medium = $1 AND address = $2";
const ADD: &str = "INSERT INTO user_threepids (medium, address, user_id, validated_ts, added_ts) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (medium, address) DO NOTHING";
const LIST: &str = "SELECT medium, address, validated_ts, added_ts FROM user_threepids \
                    WHERE user_id = $1 ORDER BY added_ts, medium, address";
const DELETE: &str = "DELETE FROM user_threepids WHERE user_id = $1 AND medium = $2 AND address = $3";
const DELETE_ALL: &str = "DELETE FROM user_threepids WHERE user_id = $1";

const ADD_BINDING: &str = "INSERT INTO user_threepid_id_servers (user_id, medium, address, id_server) \
                           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const BINDINGS: &str = "SELECT id_server FROM user_threepid_id_servers \
                        WHERE user_id = $1 AND medium = $2 AND address = $3 ORDER BY id_server";
const ALL_BINDINGS: &str = "SELECT medium, address, id_server FROM user_threepid_id_servers \
                            WHERE user_id = $1 ORDER BY medium, address, id_server";
const DELETE_BINDING: &str = "DELETE FROM user_threepid_id_servers \
                              WHERE user_id = $1 AND medium = $2 AND address = $3 AND id_server = $4";

/// A validation session about to be mailed.
pub struct NewSession<'a> {
    pub sid: &'a str,
    pub client_secret: &'a str,
    pub medium: &'a str,
    pub address: &'a str,
    pub token_hash: &'a TokenHash,
    pub send_attempt: i64,
    pub next_link: Option<&'a str>,
    pub now: i64,
    pub expires: i64,
}

/// A 3PID of an account.
pub struct Row {
    pub medium: String,
    pub address: String,
    pub validated_ts: i64,
    pub added_ts: i64,
}

/// The live session of a client secret for an address: its ID and last send attempt.
pub async fn session_by_secret(
    c: &impl GenericClient,
    secret: &str,
    medium: &str,
    address: &str,
    now: i64,
) -> Result<Option<(String, i64)>> {
    let stmt = c.prepare_cached(SESSION_BY_SECRET).await?;
    Ok(c.query_opt(&stmt, &[&secret, &medium, &address, &now]).await?.map(|r| (r.get(0), r.get(1))))
}

/// Records a new session (an expired one of the same secret and address is replaced).
pub async fn insert_session(c: &impl GenericClient, s: &NewSession<'_>) -> Result<()> {
    c.execute(&c.prepare_cached(DELETE_STALE_SESSION).await?, &[&s.client_secret, &s.medium, &s.address]).await?;
    let stmt = c.prepare_cached(INSERT_SESSION).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
        &s.sid,
        &s.client_secret,
        &s.medium,
        &s.address,
        &s.token_hash.as_slice(),
        &s.send_attempt,
        &s.next_link,
        &s.now,
        &s.expires,
    ];
    c.execute(&stmt, &params).await?;
    Ok(())
}

/// A new token for a session the client asks to mail again.
pub async fn resend(c: &impl GenericClient, s: &NewSession<'_>) -> Result<()> {
    let stmt = c.prepare_cached(RESEND).await?;
    c.execute(&stmt, &[&s.sid, &s.token_hash.as_slice(), &s.send_attempt, &s.next_link, &s.expires]).await?;
    Ok(())
}

/// Marks the session validated when the token is its own and live; `None` if not, else the
/// session's `next_link`.
pub async fn validate(
    c: &impl GenericClient,
    sid: &str,
    secret: &str,
    token_hash: &TokenHash,
    now: i64,
) -> Result<Option<Option<String>>> {
    let stmt = c.prepare_cached(VALIDATE).await?;
    Ok(c.query_opt(&stmt, &[&sid, &secret, &token_hash.as_slice(), &now]).await?.map(|r| r.get(0)))
}

/// The 3PID a live, validated session proved: medium, address, when it was validated.
pub async fn validated(
    c: &impl GenericClient,
    sid: &str,
    secret: &str,
    now: i64,
) -> Result<Option<(String, String, i64)>> {
    let stmt = c.prepare_cached(VALIDATED).await?;
    Ok(c.query_opt(&stmt, &[&sid, &secret, &now]).await?.map(|r| (r.get(0), r.get(1), r.get(2))))
}

pub async fn purge_sessions(c: &impl GenericClient, now: i64) -> Result<u64> {
    Ok(c.execute(&c.prepare_cached(PURGE_SESSIONS).await?, &[&now]).await?)
}

/// The account a 3PID belongs to, if any.
pub async fn owner(c: &impl GenericClient, medium: &str, address: &str) -> Result<Option<String>> {
    let stmt = c.prepare_cached(OWNER).await?;
    Ok(c.query_opt(&stmt, &[&medium, &address]).await?.map(|r| r.get(0)))
}

/// Gives the account a 3PID; false if it belongs to an account already (this one or another).
pub async fn add(
    c: &impl GenericClient,
    user_id: &str,
    medium: &str,
    address: &str,
    validated: i64,
    now: i64,
) -> Result<bool> {
    let stmt = c.prepare_cached(ADD).await?;
    Ok(c.execute(&stmt, &[&medium, &address, &user_id, &validated, &now]).await? == 1)
}

pub async fn list(c: &impl GenericClient, user_id: &str) -> Result<Vec<Row>> {
    let stmt = c.prepare_cached(LIST).await?;
    let rows = c.query(&stmt, &[&user_id]).await?;
    Ok(rows
        .into_iter()
        .map(|r| Row { medium: r.get(0), address: r.get(1), validated_ts: r.get(2), added_ts: r.get(3) })
        .collect())
}

pub async fn delete(c: &impl GenericClient, user_id: &str, medium: &str, address: &str) -> Result<bool> {
    Ok(c.execute(&c.prepare_cached(DELETE).await?, &[&user_id, &medium, &address]).await? > 0)
}

/// Every 3PID of an account (deactivation).
pub async fn delete_all(c: &impl GenericClient, user_id: &str) -> Result<u64> {
    Ok(c.execute(&c.prepare_cached(DELETE_ALL).await?, &[&user_id]).await?)
}

pub async fn add_binding(
    c: &impl GenericClient,
    user_id: &str,
    medium: &str,
    address: &str,
    id_server: &str,
) -> Result<()> {
    c.execute(&c.prepare_cached(ADD_BINDING).await?, &[&user_id, &medium, &address, &id_server]).await?;
    Ok(())
}

/// The identity servers a user bound a 3PID on through this server.
pub async fn bindings(c: &impl GenericClient, user_id: &str, medium: &str, address: &str) -> Result<Vec<String>> {
    let stmt = c.prepare_cached(BINDINGS).await?;
    Ok(c.query(&stmt, &[&user_id, &medium, &address]).await?.into_iter().map(|r| r.get(0)).collect())
}

/// Every binding of a user: medium, address, identity server.
pub async fn all_bindings(c: &impl GenericClient, user_id: &str) -> Result<Vec<(String, String, String)>> {
    let stmt = c.prepare_cached(ALL_BINDINGS).await?;
    Ok(c.query(&stmt, &[&user_id]).await?.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

pub async fn delete_binding(
    c: &impl GenericClient,
    user_id: &str,
    medium: &str,
    address: &str,
    id_server: &str,
) -> Result<()> {
    c.execute(&c.prepare_cached(DELETE_BINDING).await?, &[&user_id, &medium, &address, &id_server]).await?;
    Ok(())
}
