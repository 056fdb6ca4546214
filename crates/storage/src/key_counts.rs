//! A device's key stock as clients are told it: unclaimed one-time keys per algorithm (in
//! `/keys/upload` answers and `/sync`) and the algorithms of its unused fallback keys. Read by
//! the auth role and the sync workers; the auth service writes `one_time_keys` and
//! `fallback_keys`.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use trellis_core::Result;

const OTK_COUNTS: &str =
    "SELECT algorithm, count(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm";
const UNUSED_FALLBACK: &str =
    "SELECT algorithm FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND NOT used ORDER BY algorithm";

/// Unclaimed one-time keys per algorithm; `signed_curve25519` is always present (as Synapse
/// does: some clients read a missing count as "unsupported").
pub async fn one_time_keys(c: &impl GenericClient, user: &str, device: &str) -> Result<BTreeMap<String, u64>> {
    let stmt = c.prepare_cached(OTK_COUNTS).await?;
    let mut counts: BTreeMap<String, u64> =
        c.query(&stmt, &[&user, &device]).await?.iter().map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64)).collect();
    counts.entry("signed_curve25519".to_owned()).or_insert(0);
    Ok(counts)
}

/// The algorithms for which the device has a fallback key no claim has used yet.
pub async fn unused_fallback(c: &impl GenericClient, user: &str, device: &str) -> Result<Vec<String>> {
    let stmt = c.prepare_cached(UNUSED_FALLBACK).await?;
    Ok(c.query(&stmt, &[&user, &device]).await?.iter().map(|r| r.get(0)).collect())
}
