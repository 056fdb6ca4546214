//! SQL of server-side key backup: `room_keys_versions` and `room_keys` (auth writes both).

use deadpool_postgres::GenericClient;
use trellis_core::Result;

const SELECT_CURRENT: &str = "SELECT version, algorithm, auth_data, etag FROM room_keys_versions \
                              WHERE user_id = $1 AND NOT deleted ORDER BY version DESC LIMIT 1";
const LOCK_CURRENT: &str = "SELECT version, algorithm, auth_data, etag FROM room_keys_versions \
                            WHERE user_id = $1 AND NOT deleted ORDER BY version DESC LIMIT 1 FOR UPDATE";
const SELECT_VERSION: &str = "SELECT version, algorithm, auth_data, etag FROM room_keys_versions \
                              WHERE user_id = $1 AND version = $2 AND NOT deleted";
const LOCK_VERSION: &str = "SELECT version, algorithm, auth_data, etag FROM room_keys_versions \
                            WHERE user_id = $1 AND version = $2 AND NOT deleted FOR UPDATE";
// Numbers are never reused: deleted versions stay as tombstones.
const INSERT_VERSION: &str = "INSERT INTO room_keys_versions (user_id, version, algorithm, auth_data) \
     SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3 FROM room_keys_versions WHERE user_id = $1 \
     RETURNING version";
const UPDATE_VERSION: &str = "UPDATE room_keys_versions SET auth_data = $3 \
                              WHERE user_id = $1 AND version = $2 AND NOT deleted";
const TOMBSTONE_VERSION: &str = "UPDATE room_keys_versions SET deleted = TRUE \
                                 WHERE user_id = $1 AND version = $2 AND NOT deleted";
const BUMP_ETAG: &str = "UPDATE room_keys_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2 \
                         RETURNING etag";
const COUNT_KEYS: &str = "SELECT count(*) FROM room_keys WHERE user_id = $1 AND version = $2";
const SELECT_KEY: &str = "SELECT first_message_index, forwarded_count, is_verified, session_data FROM room_keys \
                          WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4";
const UPSERT_KEY: &str = "INSERT INTO room_keys (user_id, version, room_id, session_id, first_message_index, \
     forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET \
     first_message_index = EXCLUDED.first_message_index, forwarded_count = EXCLUDED.forwarded_count, \
     is_verified = EXCLUDED.is_verified, session_data = EXCLUDED.session_data";
const SELECT_KEYS: &str = "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, \
     session_data FROM room_keys WHERE user_id = $1 AND version = $2 \
     AND ($3::TEXT IS NULL OR room_id = $3) AND ($4::TEXT IS NULL OR session_id = $4) \
     ORDER BY room_id, session_id";
const DELETE_KEYS: &str = "DELETE FROM room_keys WHERE user_id = $1 AND version = $2 \
     AND ($3::TEXT IS NULL OR room_id = $3) AND ($4::TEXT IS NULL OR session_id = $4)";
const DELETE_ALL: &str = "DELETE FROM room_keys_versions WHERE user_id = $1";

/// One backup version.
pub struct VersionRow {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: String,
    pub etag: i64,
}

/// One backed-up session (the spec's KeyBackupData).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: String,
}

fn version_row(row: &tokio_postgres::Row) -> VersionRow {
    VersionRow { version: row.get(0), algorithm: row.get(1), auth_data: row.get(2), etag: row.get(3) }
}

/// The latest live version; `lock` holds its row until the transaction ends.
pub async fn current(c: &impl GenericClient, user_id: &str, lock: bool) -> Result<Option<VersionRow>> {
    let stmt = c.prepare_cached(if lock { LOCK_CURRENT } else { SELECT_CURRENT }).await?;
    Ok(c.query_opt(&stmt, &[&user_id]).await?.as_ref().map(version_row))
}

/// A live version by number; `lock` holds its row until the transaction ends.
pub async fn version(c: &impl GenericClient, user_id: &str, version: i64, lock: bool) -> Result<Option<VersionRow>> {
    let stmt = c.prepare_cached(if lock { LOCK_VERSION } else { SELECT_VERSION }).await?;
    Ok(c.query_opt(&stmt, &[&user_id, &version]).await?.as_ref().map(version_row))
}

pub async fn create(c: &impl GenericClient, user_id: &str, algorithm: &str, auth_data: &str) -> Result<i64> {
    let stmt = c.prepare_cached(INSERT_VERSION).await?;
    Ok(c.query_one(&stmt, &[&user_id, &algorithm, &auth_data]).await?.get(0))
}

pub async fn update(c: &impl GenericClient, user_id: &str, version: i64, auth_data: &str) -> Result<bool> {
    let stmt = c.prepare_cached(UPDATE_VERSION).await?;
    Ok(c.execute(&stmt, &[&user_id, &version, &auth_data]).await? == 1)
}

/// Marks a version deleted and drops its keys; false if there was no such live version.
pub async fn delete_version(c: &impl GenericClient, user_id: &str, version: i64) -> Result<bool> {
    let stmt = c.prepare_cached(TOMBSTONE_VERSION).await?;
    if c.execute(&stmt, &[&user_id, &version]).await? == 0 {
        return Ok(false);
    }
    delete_keys(c, user_id, version, None, None).await?;
    Ok(true)
}

pub async fn bump_etag(c: &impl GenericClient, user_id: &str, version: i64) -> Result<i64> {
    let stmt = c.prepare_cached(BUMP_ETAG).await?;
    Ok(c.query_one(&stmt, &[&user_id, &version]).await?.get(0))
}

pub async fn count(c: &impl GenericClient, user_id: &str, version: i64) -> Result<i64> {
    let stmt = c.prepare_cached(COUNT_KEYS).await?;
    Ok(c.query_one(&stmt, &[&user_id, &version]).await?.get(0))
}

pub async fn key(
    c: &impl GenericClient,
    user_id: &str,
    version: i64,
    room_id: &str,
    session_id: &str,
) -> Result<Option<KeyRow>> {
    let stmt = c.prepare_cached(SELECT_KEY).await?;
    Ok(c.query_opt(&stmt, &[&user_id, &version, &room_id, &session_id]).await?.map(|row| KeyRow {
        first_message_index: row.get(0),
        forwarded_count: row.get(1),
        is_verified: row.get(2),
        session_data: row.get(3),
    }))
}

pub async fn put_key(
    c: &impl GenericClient,
    user_id: &str,
    version: i64,
    room_id: &str,
    session_id: &str,
    key: &KeyRow,
) -> Result<()> {
    let stmt = c.prepare_cached(UPSERT_KEY).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &user_id,
        &version,
        &room_id,
        &session_id,
        &key.first_message_index,
        &key.forwarded_count,
        &key.is_verified,
        &key.session_data,
    ];
    c.execute(&stmt, &params).await?;
    Ok(())
}

/// Keys of a version, optionally of one room or one session: `(room_id, session_id, key)`.
pub async fn keys(
    c: &impl GenericClient,
    user_id: &str,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<Vec<(String, String, KeyRow)>> {
    let stmt = c.prepare_cached(SELECT_KEYS).await?;
    let rows = c.query(&stmt, &[&user_id, &version, &room_id, &session_id]).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let key = KeyRow {
                first_message_index: row.get(2),
                forwarded_count: row.get(3),
                is_verified: row.get(4),
                session_data: row.get(5),
            };
            (row.get(0), row.get(1), key)
        })
        .collect())
}

/// Deletes keys of a version (all, one room's or one session); returns how many.
pub async fn delete_keys(
    c: &impl GenericClient,
    user_id: &str,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<u64> {
    let stmt = c.prepare_cached(DELETE_KEYS).await?;
    Ok(c.execute(&stmt, &[&user_id, &version, &room_id, &session_id]).await?)
}

/// Drops every backup of a user (deactivation).
pub async fn delete_all(c: &impl GenericClient, user_id: &str) -> Result<()> {
    let stmt = c.prepare_cached(DELETE_ALL).await?;
    c.execute(&stmt, &[&user_id]).await?;
    Ok(())
}
