//! `media` rows (one per media ID) and `media_usage` (bytes per user, for the quota).

use deadpool_postgres::{Pool, Transaction};
use trellis_core::{Error, Result};

const INSERT_MEDIA: &str = "INSERT INTO media \
     (media_id, content_type, upload_name, size, sha256, user_id, created_ts, url_cache, width, height) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const SELECT_MEDIA: &str = "SELECT content_type, upload_name, size, sha256, created_ts, width, height, \
     quarantined_by IS NOT NULL FROM media WHERE media_id = $1";

const SELECT_USAGE: &str = "SELECT bytes FROM media_usage WHERE user_id = $1";

/// Adds to a user's usage unless that would pass the quota ($3); no row back means refused.
const ADD_USAGE: &str = "INSERT INTO media_usage AS u (user_id, bytes) VALUES ($1, $2) \
     ON CONFLICT (user_id) DO UPDATE SET bytes = u.bytes + EXCLUDED.bytes \
     WHERE u.bytes + EXCLUDED.bytes <= $3 RETURNING bytes";

/// A `media` row as it is written.
pub(crate) struct NewMedia<'a> {
    pub media_id: &'a str,
    pub content_type: &'a str,
    pub upload_name: Option<&'a str>,
    pub size: u64,
    pub sha256: &'a str,
    pub user_id: &'a str,
    pub created_ts: i64,
    /// The page a preview image came from: such rows count towards no quota.
    pub url_cache: Option<&'a str>,
    pub dimensions: Option<(u32, u32)>,
}

/// What a download needs of a `media` row.
#[derive(Debug, Clone)]
pub(crate) struct StoredMedia {
    pub content_type: String,
    pub upload_name: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub created_ts: i64,
    pub dimensions: Option<(u32, u32)>,
    /// An admin quarantined it: it is served to no one.
    pub quarantined: bool,
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(Error::internal)
}

/// Inserts the row; `Ok(false)` if the media ID is taken.
pub(crate) async fn insert(tx: &Transaction<'_>, m: &NewMedia<'_>) -> Result<bool> {
    let size = to_i64(m.size)?;
    let (width, height) = match m.dimensions {
        Some((w, h)) => (Some(i32::try_from(w).unwrap_or(i32::MAX)), Some(i32::try_from(h).unwrap_or(i32::MAX))),
        None => (None, None),
    };
    let stmt = tx.prepare_cached(INSERT_MEDIA).await?;
    let params: [&(dyn deadpool_postgres::tokio_postgres::types::ToSql + Sync); 10] = [
        &m.media_id,
        &m.content_type,
        &m.upload_name,
        &size,
        &m.sha256,
        &m.user_id,
        &m.created_ts,
        &m.url_cache,
        &width,
        &height,
    ];
    match tx.execute(&stmt, &params).await {
        Ok(_) => Ok(true),
        Err(e) if super::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn get(pool: &Pool, media_id: &str) -> Result<Option<StoredMedia>> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(SELECT_MEDIA).await?;
    let Some(row) = client.query_opt(&stmt, &[&media_id]).await? else {
        return Ok(None);
    };
    let size: i64 = row.get(2);
    let (w, h): (Option<i32>, Option<i32>) = (row.get(5), row.get(6));
    Ok(Some(StoredMedia {
        content_type: row.get(0),
        upload_name: row.get(1),
        size: u64::try_from(size).map_err(Error::internal)?,
        sha256: row.get(3),
        created_ts: row.get(4),
        dimensions: w.zip(h).and_then(|(w, h)| Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?))),
        quarantined: row.get(7),
    }))
}

/// Bytes `user_id` has uploaded so far.
pub(crate) async fn usage(pool: &Pool, user_id: &str) -> Result<u64> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(SELECT_USAGE).await?;
    let bytes: i64 = client.query_opt(&stmt, &[&user_id]).await?.map_or(0, |r| r.get(0));
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// Counts `size` more bytes for `user_id`; `Ok(false)` (nothing changed) if that passes `quota`.
pub(crate) async fn add_usage(tx: &Transaction<'_>, user_id: &str, size: u64, quota: Option<u64>) -> Result<bool> {
    let quota = to_i64(quota.unwrap_or(i64::MAX as u64))?;
    let size = to_i64(size)?;
    if size > quota {
        return Ok(false);
    }
    let stmt = tx.prepare_cached(ADD_USAGE).await?;
    Ok(tx.query_opt(&stmt, &[&user_id, &size, &quota]).await?.is_some())
}
