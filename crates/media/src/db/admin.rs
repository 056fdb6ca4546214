//! The admin API's SQL over `media`: quarantine, deletion (with the quota kept in step) and
//! a user's uploads a page at a time. URL-preview images (`url_cache`) are nobody's uploads.

use deadpool_postgres::{GenericClient, Pool};
use trellis_core::{Error, Result};
use trellis_proto::media::{AdminMediaInfo, AdminMediaPage};

// A quarantine (`$2` set) passes protected media by; a release does not.
const QUARANTINE_IDS: &str = "UPDATE media SET quarantined_by = $2 WHERE media_id = ANY($1) \
     AND ($2::text IS NULL OR NOT safe_from_quarantine)";
const QUARANTINE_USER: &str = "UPDATE media SET quarantined_by = $2 WHERE user_id = $1 AND url_cache IS NULL \
     AND ($2::text IS NULL OR NOT safe_from_quarantine)";
const PROTECT: &str = "UPDATE media SET safe_from_quarantine = $2 WHERE media_id = $1";
const MEDIA_EXISTS: &str = "SELECT 1 FROM media WHERE media_id = $1";
const USER_MEDIA_IDS: &str = "SELECT media_id FROM media WHERE user_id = $1 AND url_cache IS NULL";
const THUMB_BLOBS: &str = "SELECT sha256 FROM media_thumbnails WHERE media_id = ANY($1)";
const DELETE_MEDIA: &str = "DELETE FROM media WHERE media_id = ANY($1) \
     RETURNING media_id, sha256, user_id, size, url_cache IS NULL";
const SUBTRACT_USAGE: &str = "UPDATE media_usage SET bytes = GREATEST(bytes - $2, 0) WHERE user_id = $1";
const BLOB_IN_USE: &str = "SELECT EXISTS (SELECT 1 FROM media WHERE sha256 = $1) \
     OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = $1)";
const COUNT_USER_MEDIA: &str = "SELECT count(*) FROM media WHERE user_id = $1 AND url_cache IS NULL";

/// The SQL column for one of Synapse's `order_by` names.
fn order_column(order_by: &str) -> Result<&'static str> {
    Ok(match order_by {
        "" | "created_ts" => "created_ts",
        "media_id" => "media_id",
        "upload_name" => "upload_name",
        "media_length" => "size",
        "media_type" => "content_type",
        "quarantined_by" => "quarantined_by",
        "safe_from_quarantine" => "safe_from_quarantine",
        // Not kept here: downloads are not recorded.
        "last_access_ts" => "created_ts",
        other => return Err(Error::invalid_param(format!("Unknown value for order_by: {other}"))),
    })
}

/// Sets who quarantined the media (`None` releases it); how many rows changed.
pub(crate) async fn quarantine_ids(pool: &Pool, ids: &[String], by: Option<&str>) -> Result<u64> {
    let client = pool.get().await?;
    Ok(client.execute(&client.prepare_cached(QUARANTINE_IDS).await?, &[&ids, &by]).await?)
}

/// Protects the media from quarantine (`false`: lifts it); whether it exists.
pub(crate) async fn protect(pool: &Pool, media_id: &str, protect: bool) -> Result<bool> {
    let client = pool.get().await?;
    Ok(client.execute(&client.prepare_cached(PROTECT).await?, &[&media_id, &protect]).await? > 0)
}

/// Whether this server has the media.
pub(crate) async fn exists(pool: &Pool, media_id: &str) -> Result<bool> {
    let client = pool.get().await?;
    Ok(client.query_opt(&client.prepare_cached(MEDIA_EXISTS).await?, &[&media_id]).await?.is_some())
}

/// As [`quarantine_ids`], for every upload of `user_id`.
pub(crate) async fn quarantine_user(pool: &Pool, user_id: &str, by: Option<&str>) -> Result<u64> {
    let client = pool.get().await?;
    Ok(client.execute(&client.prepare_cached(QUARANTINE_USER).await?, &[&user_id, &by]).await?)
}

/// Every upload of `user_id`.
pub(crate) async fn user_media_ids(pool: &Pool, user_id: &str) -> Result<Vec<String>> {
    let client = pool.get().await?;
    let rows = client.query(&client.prepare_cached(USER_MEDIA_IDS).await?, &[&user_id]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A page of `page.user_id`'s uploads and how many there are in all.
pub(crate) async fn user_media(pool: &Pool, page: &AdminMediaPage) -> Result<(Vec<AdminMediaInfo>, i64)> {
    let column = order_column(&page.order_by)?;
    let dir = if page.backwards { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT media_id, content_type, upload_name, size, created_ts, quarantined_by, safe_from_quarantine \
         FROM media \
         WHERE user_id = $1 AND url_cache IS NULL \
         ORDER BY {column} {dir} NULLS LAST, media_id {dir} LIMIT $2 OFFSET $3"
    );
    let client = pool.get().await?;
    let (limit, from) = (i64::from(page.limit), page.from);
    let rows = client.query(&client.prepare_cached(&sql).await?, &[&page.user_id, &limit, &from]).await?;
    let total: i64 = client.query_one(&client.prepare_cached(COUNT_USER_MEDIA).await?, &[&page.user_id]).await?.get(0);
    let media = rows
        .iter()
        .map(|r| AdminMediaInfo {
            media_id: r.get(0),
            media_type: r.get(1),
            upload_name: r.get(2),
            media_length: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
            created_ts: r.get(4),
            quarantined_by: r.get(5),
            safe_from_quarantine: r.get(6),
        })
        .collect();
    Ok((media, total))
}

/// Deletes the media rows (their thumbnails go with them) and takes their bytes off their
/// uploaders' usage, in one transaction; the IDs deleted and the blobs they named.
pub(crate) async fn delete(pool: &Pool, ids: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut blobs: Vec<String> =
        tx.query(&tx.prepare_cached(THUMB_BLOBS).await?, &[&ids]).await?.iter().map(|r| r.get(0)).collect();
    let rows = tx.query(&tx.prepare_cached(DELETE_MEDIA).await?, &[&ids]).await?;
    let subtract = tx.prepare_cached(SUBTRACT_USAGE).await?;
    let mut deleted = Vec::with_capacity(rows.len());
    for row in &rows {
        deleted.push(row.get::<_, String>(0));
        blobs.push(row.get(1));
        if row.get::<_, bool>(4) {
            tx.execute(&subtract, &[&row.get::<_, String>(2), &row.get::<_, i64>(3)]).await?;
        }
    }
    tx.commit().await?;
    blobs.sort();
    blobs.dedup();
    Ok((deleted, blobs))
}

/// Whether any media or thumbnail still names the blob.
pub(crate) async fn blob_in_use(c: &impl GenericClient, sha256: &str) -> Result<bool> {
    Ok(c.query_one(&c.prepare_cached(BLOB_IN_USE).await?, &[&sha256]).await?.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_core::ErrorCode;

    #[test]
    fn order_by_names() {
        assert_eq!(order_column("").unwrap(), "created_ts");
        assert_eq!(order_column("media_length").unwrap(), "size");
        assert_eq!(order_column("shoe_size").unwrap_err().code(), ErrorCode::InvalidParam);
    }
}
