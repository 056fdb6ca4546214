//! Guest accounts becoming full accounts (spec: "Guest access"): registering with the
//! guest's own localpart and its `guest_access_token` keeps the user ID, and with it the
//! guest's rooms, profile and devices, and gives it a password.

use deadpool_postgres::GenericClient;
use trellis_core::{Error, Result};

use crate::{service::Auth, store, token::hash_token};

const UPGRADE: &str = "UPDATE users SET password_hash = $2, is_guest = FALSE WHERE user_id = $1 AND is_guest";
const USER_TOKENS: &str = "SELECT token_hash FROM access_tokens WHERE user_id = $1";

/// Refused as Synapse does: 403 `M_FORBIDDEN`.
fn not_the_guest() -> Error {
    Error::forbidden("Cannot register taken user ID without valid guest credentials for that user.")
}

impl Auth {
    /// Checks that `guest_access_token` belongs to the guest account `localpart`, so that a
    /// registration under that localpart upgrades it.
    pub(crate) async fn check_guest_upgrade(&self, localpart: &str, guest_access_token: &str) -> Result<()> {
        let client = self.pool.get().await?;
        let owner = store::lookup_token(&client, &hash_token(guest_access_token)).await?.map(|t| t.requester);
        match owner {
            Some(r) if r.is_guest && r.user_id == format!("@{localpart}:{}", self.config.server_name) => Ok(()),
            _ => Err(not_the_guest()),
        }
    }

    /// Forgets cached lookups of the upgraded user's tokens: they now stand for a full account.
    pub(crate) async fn forget_guest_tokens(&self, user_id: &str) -> Result<()> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(USER_TOKENS).await?;
        let hashes = store::hashes(client.query(&stmt, &[&user_id]).await?)?;
        self.tokens.revoke(&hashes).await;
        Ok(())
    }
}

/// Turns the guest account `user_id` into a full account with `password_hash` (in the
/// registration transaction); `M_FORBIDDEN` if it is no longer a guest (upgraded meanwhile).
pub(crate) async fn upgrade(c: &impl GenericClient, user_id: &str, password_hash: Option<&str>) -> Result<()> {
    let stmt = c.prepare_cached(UPGRADE).await?;
    if c.execute(&stmt, &[&user_id, &password_hash]).await? == 0 {
        return Err(not_the_guest());
    }
    Ok(())
}
