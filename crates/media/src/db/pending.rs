//! `media_pending`: URIs reserved by `/create` whose content has not arrived yet.

use deadpool_postgres::{Pool, Transaction};
use trellis_core::Result;

const INSERT_PENDING: &str = "INSERT INTO media_pending (media_id, user_id, created_ts, expires_ts) \
     SELECT $1, $2, $3, $4 \
     WHERE (SELECT count(*) FROM media_pending WHERE user_id = $2 AND expires_ts > $3) < $5";

const SELECT_PENDING: &str = "SELECT user_id, expires_ts FROM media_pending WHERE media_id = $1";

const DELETE_PENDING: &str = "DELETE FROM media_pending WHERE media_id = $1";

const DELETE_EXPIRED: &str = "DELETE FROM media_pending WHERE expires_ts <= $1";

/// A reservation.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub user_id: String,
    pub expires_ts: i64,
}

/// Reserves `media_id` for `user_id` unless they already hold `max` live reservations;
/// `Ok(false)` when they do.
pub(crate) async fn insert(
    pool: &Pool,
    media_id: &str,
    user_id: &str,
    now: i64,
    expires: i64,
    max: u32,
) -> Result<bool> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(INSERT_PENDING).await?;
    let n = client.execute(&stmt, &[&media_id, &user_id, &now, &expires, &i64::from(max)]).await?;
    Ok(n == 1)
}

pub(crate) async fn get(pool: &Pool, media_id: &str) -> Result<Option<Pending>> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(SELECT_PENDING).await?;
    Ok(client.query_opt(&stmt, &[&media_id]).await?.map(|r| Pending { user_id: r.get(0), expires_ts: r.get(1) }))
}

/// Ends a reservation (its content arrived), in the transaction storing the content.
pub(crate) async fn remove(tx: &Transaction<'_>, media_id: &str) -> Result<()> {
    let stmt = tx.prepare_cached(DELETE_PENDING).await?;
    tx.execute(&stmt, &[&media_id]).await?;
    Ok(())
}

/// Forgets reservations that expired by `now`; returns how many.
pub(crate) async fn expire(pool: &Pool, now: i64) -> Result<u64> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(DELETE_EXPIRED).await?;
    Ok(client.execute(&stmt, &[&now]).await?)
}
