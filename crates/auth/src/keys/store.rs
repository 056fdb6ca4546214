//! SQL of the keys service: device keys, one-time and fallback keys, cross-signing keys and
//! uploaded signatures. Functions take any client or transaction.

use deadpool_postgres::GenericClient;
use trellis_core::Result;

const DEVICE_KEYS: &str = "SELECT key_json FROM device_keys WHERE user_id = $1 AND device_id = $2";
const UPSERT_DEVICE_KEYS: &str = "INSERT INTO device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) \
     ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = EXCLUDED.key_json";
/// Every device of a user with keys, and its display name.
const USER_DEVICE_KEYS: &str = "SELECT k.device_id, k.key_json, d.display_name FROM device_keys k \
     JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id WHERE k.user_id = $1";

const OTK: &str = "SELECT key_json FROM one_time_keys \
     WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4";
const INSERT_OTK: &str = "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
/// One statement: concurrent claims skip each other's rows, so no key is handed out twice.
const CLAIM_OTK: &str = "DELETE FROM one_time_keys WHERE id = ( \
       SELECT id FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 \
       ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
     RETURNING key_id, key_json";

const FALLBACK: &str =
    "SELECT key_id, key_json FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3";
const UPSERT_FALLBACK: &str = "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) \
     VALUES ($1, $2, $3, $4, $5, FALSE) ON CONFLICT (user_id, device_id, algorithm) \
     DO UPDATE SET key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json, used = FALSE";
const CLAIM_FALLBACK: &str = "UPDATE fallback_keys SET used = TRUE \
     WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 RETURNING key_id, key_json";

const CROSS_SIGNING: &str = "SELECT key_type, public_key, key_json FROM cross_signing_keys WHERE user_id = $1";
const UPSERT_CROSS_SIGNING: &str = "INSERT INTO cross_signing_keys (user_id, key_type, public_key, key_json) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, key_type) \
     DO UPDATE SET public_key = EXCLUDED.public_key, key_json = EXCLUDED.key_json";

const SIGNATURES: &str = "SELECT signer_user_id, signer_key_id, signature FROM key_signatures \
     WHERE target_user_id = $1 AND target_key_id = $2";
const UPSERT_SIGNATURE: &str = "INSERT INTO key_signatures \
     (target_user_id, target_key_id, signer_user_id, signer_key_id, signature) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) \
     DO UPDATE SET signature = EXCLUDED.signature";

/// A user's cross-signing key of one type.
pub struct CrossSigningRow {
    pub key_type: String,
    pub public_key: String,
    pub key_json: String,
}

/// A device's keys as stored.
pub struct DeviceKeysRow {
    pub device_id: String,
    pub key_json: String,
    pub display_name: Option<String>,
}

pub async fn device_keys(c: &impl GenericClient, user: &str, device: &str) -> Result<Option<String>> {
    let stmt = c.prepare_cached(DEVICE_KEYS).await?;
    Ok(c.query_opt(&stmt, &[&user, &device]).await?.map(|r| r.get(0)))
}

pub async fn set_device_keys(c: &impl GenericClient, user: &str, device: &str, json: &str) -> Result<()> {
    let stmt = c.prepare_cached(UPSERT_DEVICE_KEYS).await?;
    c.execute(&stmt, &[&user, &device, &json]).await?;
    Ok(())
}

pub async fn user_device_keys(c: &impl GenericClient, user: &str) -> Result<Vec<DeviceKeysRow>> {
    let stmt = c.prepare_cached(USER_DEVICE_KEYS).await?;
    Ok(c.query(&stmt, &[&user])
        .await?
        .iter()
        .map(|r| DeviceKeysRow { device_id: r.get(0), key_json: r.get(1), display_name: r.get(2) })
        .collect())
}

/// The stored JSON of a one-time key, if that ID is present.
pub async fn one_time_key(
    c: &impl GenericClient,
    user: &str,
    device: &str,
    alg: &str,
    id: &str,
) -> Result<Option<String>> {
    let stmt = c.prepare_cached(OTK).await?;
    Ok(c.query_opt(&stmt, &[&user, &device, &alg, &id]).await?.map(|r| r.get(0)))
}

pub async fn insert_one_time_key(
    c: &impl GenericClient,
    user: &str,
    device: &str,
    alg: &str,
    id: &str,
    json: &str,
) -> Result<()> {
    let stmt = c.prepare_cached(INSERT_OTK).await?;
    c.execute(&stmt, &[&user, &device, &alg, &id, &json]).await?;
    Ok(())
}

/// Takes one one-time key (`key_id`, JSON), if any is left.
pub async fn claim_one_time_key(
    c: &impl GenericClient,
    user: &str,
    device: &str,
    alg: &str,
) -> Result<Option<(String, String)>> {
    let stmt = c.prepare_cached(CLAIM_OTK).await?;
    Ok(c.query_opt(&stmt, &[&user, &device, &alg]).await?.map(|r| (r.get(0), r.get(1))))
}

pub async fn fallback_key(
    c: &impl GenericClient,
    user: &str,
    device: &str,
    alg: &str,
) -> Result<Option<(String, String)>> {
    let stmt = c.prepare_cached(FALLBACK).await?;
    Ok(c.query_opt(&stmt, &[&user, &device, &alg]).await?.map(|r| (r.get(0), r.get(1))))
}

pub async fn set_fallback_key(
    c: &impl GenericClient,
    user: &str,
    device: &str,
    alg: &str,
    id: &str,
    json: &str,
) -> Result<()> {
    let stmt = c.prepare_cached(UPSERT_FALLBACK).await?;
    c.execute(&stmt, &[&user, &device, &alg, &id, &json]).await?;
    Ok(())
}

/// Hands out the fallback key (`key_id`, JSON), marking it used.
pub async fn claim_fallback_key(
    c: &impl GenericClient,
    user: &str,
    device: &str,
    alg: &str,
) -> Result<Option<(String, String)>> {
    let stmt = c.prepare_cached(CLAIM_FALLBACK).await?;
    Ok(c.query_opt(&stmt, &[&user, &device, &alg]).await?.map(|r| (r.get(0), r.get(1))))
}

pub async fn cross_signing_keys(c: &impl GenericClient, user: &str) -> Result<Vec<CrossSigningRow>> {
    let stmt = c.prepare_cached(CROSS_SIGNING).await?;
    Ok(c.query(&stmt, &[&user])
        .await?
        .iter()
        .map(|r| CrossSigningRow { key_type: r.get(0), public_key: r.get(1), key_json: r.get(2) })
        .collect())
}

pub async fn set_cross_signing_key(
    c: &impl GenericClient,
    user: &str,
    key_type: &str,
    public: &str,
    json: &str,
) -> Result<()> {
    let stmt = c.prepare_cached(UPSERT_CROSS_SIGNING).await?;
    c.execute(&stmt, &[&user, &key_type, &public, &json]).await?;
    Ok(())
}

/// Uploaded signatures of a key: (signer user, signer key ID, signature).
pub async fn signatures(c: &impl GenericClient, user: &str, key: &str) -> Result<Vec<(String, String, String)>> {
    let stmt = c.prepare_cached(SIGNATURES).await?;
    Ok(c.query(&stmt, &[&user, &key]).await?.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

pub async fn add_signature(
    c: &impl GenericClient,
    target: (&str, &str),
    signer: (&str, &str),
    signature: &str,
) -> Result<()> {
    let stmt = c.prepare_cached(UPSERT_SIGNATURE).await?;
    c.execute(&stmt, &[&target.0, &target.1, &signer.0, &signer.1, &signature]).await?;
    Ok(())
}
