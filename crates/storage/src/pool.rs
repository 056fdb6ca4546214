//! The connection pool.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use trellis_core::{Error, Result};

/// A pool of `size` connections to `url`. Connections open lazily; call [`check`] to fail
/// fast at start-up.
pub fn connect(url: &str, size: usize) -> Result<Pool> {
    let config: tokio_postgres::Config =
        url.parse().map_err(|e| Error::internal(format!("invalid database URL: {e}")))?;
    let manager =
        Manager::from_config(config, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| Error::internal(format!("cannot build database pool: {e}")))
}

/// Opens one connection, so a wrong URL or a missing server is reported at start-up.
pub async fn check(pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await.map_err(|e| anyhow::anyhow!("cannot reach PostgreSQL: {e}"))?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}
