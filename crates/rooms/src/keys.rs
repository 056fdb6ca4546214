//! The server's event-signing key: generated once, kept in `server_keys`.

use ruma::signatures::Ed25519KeyPair;
use trellis_core::{Error, Result, time::now_ms};
use trellis_storage::Pool;

const SELECT_KEY: &str = "SELECT key_id, pkcs8 FROM server_keys ORDER BY created_ts, key_id LIMIT 1";
const INSERT_KEY: &str =
    "INSERT INTO server_keys (key_id, pkcs8, created_ts) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

/// Loads the signing key, creating it on first start. Concurrent first starts agree on the
/// oldest key.
pub async fn load_or_create(pool: &Pool) -> Result<Ed25519KeyPair> {
    let client = pool.get().await?;
    if client.query_opt(SELECT_KEY, &[]).await?.is_none() {
        let der = Ed25519KeyPair::generate();
        let key_id = format!("ed25519:{}", trellis_core::ids::random_string(6));
        client.execute(INSERT_KEY, &[&key_id, &der.as_slice(), &now_ms()]).await?;
    }
    let row = client.query_one(SELECT_KEY, &[]).await?;
    let key_id: String = row.get(0);
    let der: Vec<u8> = row.get(1);
    let version = key_id.strip_prefix("ed25519:").unwrap_or(&key_id).to_owned();
    Ed25519KeyPair::from_der(&der, version).map_err(|e| Error::internal(format!("bad stored key: {e}")))
}
