//! Single-writer roles (the rooms event writer, the appservice sender): one process holds a
//! PostgreSQL advisory lock and works, the others wait for it as hot standbys.

use std::time::Duration;

use trellis_core::{Error, Result, shutdown::Shutdown};

use crate::Target;

/// Takes the session-level advisory lock `key` on a connection of its own and returns that
/// connection: the lock is held while it stays open. While another process holds it, waits
/// (a hot standby), reconnecting if PostgreSQL goes away; `name` names the lock in logs.
pub async fn acquire(database: &Target, key: i64, name: &str, shutdown: &Shutdown) -> Result<tokio_postgres::Client> {
    let stopped = || Error::internal(format!("shut down while waiting for the {name} lock"));
    let mut waited = 0u32;
    let mut connected_before = false;
    loop {
        // A standby outlives its database connection (a PostgreSQL restart or failover):
        // it connects again and goes on waiting.
        let client = match database.connect().await {
            Ok((client, conn)) => {
                let name = name.to_owned();
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::error!(error = %e, lock = name, "advisory lock connection lost");
                    }
                });
                connected_before = true;
                client
            }
            Err(e) if connected_before => {
                tracing::warn!(error = %e, lock = name, "cannot reach PostgreSQL to wait for the lock; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.wait() => return Err(stopped()),
                }
            }
            // At start-up a database that cannot be reached is a configuration error.
            Err(e) => return Err(e),
        };
        loop {
            let got: bool = match client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).await {
                Ok(row) => row.get(0),
                Err(e) => {
                    tracing::warn!(error = %e, lock = name, "lost the database connection while waiting for the lock");
                    break;
                }
            };
            if got {
                return Ok(client);
            }
            if waited.is_multiple_of(20) {
                tracing::warn!(lock = name, "another process holds the lock; waiting as a standby");
            }
            waited += 1;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.wait() => return Err(stopped()),
            }
        }
    }
}
