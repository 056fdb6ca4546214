//! SQL of the auth service: users, devices, access tokens and profiles (UIA sessions: `uia_store`).
//! Functions take any client or transaction; the service decides what runs together.

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use trellis_core::{Error, ErrorCode, Result, time::now_ms};
use trellis_proto::auth::{RatelimitOverride, Requester};

use crate::{
    new_login::NewLogin,
    token::{TokenHash, hash_from_bytes},
};

const INSERT_USER: &str = "INSERT INTO users (user_id, password_hash, is_guest, created_ts) \
                           VALUES ($1, $2, $3, $4)";
const INSERT_PROFILE: &str = "INSERT INTO profiles (user_id, displayname) VALUES ($1, $2)";
const USER_EXISTS: &str = "SELECT 1 FROM users WHERE user_id = $1";
const SELECT_CREDENTIALS: &str = "SELECT password_hash, deactivated, locked FROM users WHERE user_id = $1";
// Numeric localparts of up to 18 digits (so the cast cannot overflow).
const MAX_NUMERIC_LOCALPART: &str = "SELECT COALESCE(MAX(substring(user_id FROM '^@([0-9]{1,18}):')::BIGINT), 0) \
                                     FROM users WHERE user_id ~ '^@[0-9]{1,18}:'";

const INSERT_DEVICE: &str = "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, \
                             last_seen_ip, last_seen_user_agent) VALUES ($1, $2, $3, $4, $4, $5, $6) \
                             ON CONFLICT (user_id, device_id) DO NOTHING";

const INSERT_TOKEN: &str = "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, \
                            refresh_hash) VALUES ($1, $2, $3, $4, $5, $6)";
// The refresh token issued with it, while neither has been used yet.
const SELECT_TOKEN: &str = "SELECT t.user_id, t.device_id, u.is_guest, t.expires_ts, \
                            CASE WHEN r.used THEN NULL ELSE r.token_hash END, u.locked, u.suspended, \
                            u.shadow_banned, o.messages_per_second, o.burst_count \
                            FROM access_tokens t \
                            JOIN users u ON u.user_id = t.user_id \
                            LEFT JOIN ratelimit_overrides o ON o.user_id = t.user_id \
                            LEFT JOIN refresh_tokens r ON r.token_hash = t.refresh_hash WHERE t.token_hash = $1";
const DELETE_DEVICE_TOKENS: &str = "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2 \
                                    RETURNING token_hash";

const SELECT_PROFILE: &str = "SELECT displayname, avatar_url, fields::text FROM profiles WHERE user_id = $1";
const SET_DISPLAYNAME: &str = "UPDATE profiles SET displayname = $2 WHERE user_id = $1 \
                               RETURNING displayname, avatar_url, fields::text";
const SET_AVATAR_URL: &str = "UPDATE profiles SET avatar_url = $2 WHERE user_id = $1 \
                              RETURNING displayname, avatar_url, fields::text";
// `$3` NULL removes the key.
const SET_CUSTOM: &str = "UPDATE profiles SET fields = CASE WHEN $3::text IS NULL THEN fields - $2::text \
     ELSE jsonb_set(fields, ARRAY[$2::text], $3::jsonb) END WHERE user_id = $1 \
     RETURNING displayname, avatar_url, fields::text";

/// A user's password hash and whether the account is deactivated.
pub struct Credentials {
    pub password_hash: Option<String>,
    pub deactivated: bool,
    /// An admin locked the account: no logins, no requests.
    pub locked: bool,
}

/// A profile's fields.
pub struct ProfileRow {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    /// The custom fields, a JSON object.
    pub fields: String,
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Creates a user and their profile; `M_USER_IN_USE` if the ID is taken (even by a racing
/// registration). In a transaction, the transaction is unusable after that error.
pub async fn create_user(
    c: &impl GenericClient,
    user_id: &str,
    password_hash: Option<&str>,
    is_guest: bool,
    displayname: &str,
) -> Result<()> {
    let stmt = c.prepare_cached(INSERT_USER).await?;
    match c.execute(&stmt, &[&user_id, &password_hash, &is_guest, &now_ms()]).await {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(Error::new(ErrorCode::UserInUse, "User ID already taken."));
        }
        Err(e) => return Err(e.into()),
    }
    let stmt = c.prepare_cached(INSERT_PROFILE).await?;
    c.execute(&stmt, &[&user_id, &displayname]).await?;
    Ok(())
}

pub async fn user_exists(c: &impl GenericClient, user_id: &str) -> Result<bool> {
    let stmt = c.prepare_cached(USER_EXISTS).await?;
    Ok(c.query_opt(&stmt, &[&user_id]).await?.is_some())
}

pub async fn credentials(c: &impl GenericClient, user_id: &str) -> Result<Option<Credentials>> {
    let stmt = c.prepare_cached(SELECT_CREDENTIALS).await?;
    Ok(c.query_opt(&stmt, &[&user_id]).await?.map(|row| Credentials {
        password_hash: row.get(0),
        deactivated: row.get(1),
        locked: row.get(2),
    }))
}

/// The highest numeric localpart in use (0 if none).
pub async fn max_numeric_localpart(c: &impl GenericClient) -> Result<i64> {
    let stmt = c.prepare_cached(MAX_NUMERIC_LOCALPART).await?;
    Ok(c.query_one(&stmt, &[]).await?.get(0))
}

/// Creates the device unless it exists, last seen now from the login's address; true if it
/// was created. An existing device keeps its display name. Called only through
/// `devices::create_device`.
pub async fn ensure_device(c: &impl GenericClient, user_id: &str, device_id: &str, login: &NewLogin) -> Result<bool> {
    let stmt = c.prepare_cached(INSERT_DEVICE).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&user_id, &device_id, &login.display_name, &now_ms(), &login.ip, &login.user_agent];
    Ok(c.execute(&stmt, &params).await? == 1)
}

/// Deletes a device's tokens and returns their hashes.
pub async fn delete_device_tokens(c: &impl GenericClient, user_id: &str, device_id: &str) -> Result<Vec<TokenHash>> {
    let stmt = c.prepare_cached(DELETE_DEVICE_TOKENS).await?;
    hashes(c.query(&stmt, &[&user_id, &device_id]).await?)
}

/// The token hashes in the first column of `rows`.
pub fn hashes(rows: Vec<tokio_postgres::Row>) -> Result<Vec<TokenHash>> {
    rows.iter().map(|row| stored_hash(row.get(0))).collect()
}

/// A token hash read back from a `BYTEA` column.
fn stored_hash(bytes: &[u8]) -> Result<TokenHash> {
    hash_from_bytes(bytes).ok_or_else(|| Error::internal("stored token hash is not 32 bytes"))
}

/// A new access token of a device; `expires_ts` and the refresh token issued with it when
/// it is refreshable.
pub async fn insert_token(
    c: &impl GenericClient,
    hash: &TokenHash,
    user_id: &str,
    device_id: &str,
    expires_ts: Option<i64>,
    refresh: Option<&TokenHash>,
) -> Result<()> {
    let stmt = c.prepare_cached(INSERT_TOKEN).await?;
    let refresh = refresh.map(|h| h.as_slice());
    c.execute(&stmt, &[&hash.as_slice(), &user_id, &device_id, &now_ms(), &expires_ts, &refresh]).await?;
    Ok(())
}

/// A stored access token: whose it is (with its expiry, which the caller checks), and the
/// refresh token issued with it if neither has been used yet (its first use retires the
/// refresh token it replaced: see `refresh.rs`).
pub struct TokenRow {
    pub requester: Requester,
    pub unused_refresh: Option<TokenHash>,
    /// The account is locked (V40): the token is refused for now.
    pub locked: bool,
}

impl TokenRow {
    /// Whether the token has expired at `now` (ms).
    pub fn expired(&self, now: i64) -> bool {
        self.requester.expires_ts.is_some_and(|at| at <= now)
    }
}

/// The stored access token `hash`, if there is one (expired or not).
pub async fn lookup_token(c: &impl GenericClient, hash: &TokenHash) -> Result<Option<TokenRow>> {
    let stmt = c.prepare_cached(SELECT_TOKEN).await?;
    let Some(row) = c.query_opt(&stmt, &[&hash.as_slice()]).await? else { return Ok(None) };
    let unused_refresh = row.get::<_, Option<&[u8]>>(4).map(stored_hash).transpose()?;
    let requester = Requester {
        user_id: row.get(0),
        device_id: row.get(1),
        is_guest: row.get(2),
        expires_ts: row.get(3),
        suspended: row.get(6),
        shadow_banned: row.get(7),
        ratelimit_override: row
            .get::<_, Option<i64>>(8)
            .map(|messages_per_second| RatelimitOverride { messages_per_second, burst_count: row.get(9) }),
        appservice_id: None,
    };
    Ok(Some(TokenRow { requester, unused_refresh, locked: row.get(5) }))
}

pub async fn profile(c: &impl GenericClient, user_id: &str) -> Result<Option<ProfileRow>> {
    let stmt = c.prepare_cached(SELECT_PROFILE).await?;
    Ok(c.query_opt(&stmt, &[&user_id]).await?.map(|row| profile_row(&row)))
}

/// Which profile field [`set_profile_field`] changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Displayname,
    AvatarUrl,
}

/// Sets (or with `None` clears) one field; the updated profile, or `None` if there is none.
pub async fn set_profile_field(
    c: &impl GenericClient,
    user_id: &str,
    field: Field,
    value: Option<&str>,
) -> Result<Option<ProfileRow>> {
    let sql = match field {
        Field::Displayname => SET_DISPLAYNAME,
        Field::AvatarUrl => SET_AVATAR_URL,
    };
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, &[&user_id, &value]).await?.map(|row| profile_row(&row)))
}

/// Sets (or with `None` removes) one custom field, given as JSON; the updated profile, or
/// `None` if there is none.
pub async fn set_custom_field(
    c: &impl GenericClient,
    user_id: &str,
    key: &str,
    value_json: Option<&str>,
) -> Result<Option<ProfileRow>> {
    let stmt = c.prepare_cached(SET_CUSTOM).await?;
    Ok(c.query_opt(&stmt, &[&user_id, &key, &value_json]).await?.map(|row| profile_row(&row)))
}

fn profile_row(row: &tokio_postgres::Row) -> ProfileRow {
    ProfileRow { displayname: row.get(0), avatar_url: row.get(1), fields: row.get(2) }
}
