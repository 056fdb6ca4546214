//! The ordered history of SQL migrations (`migrations/V<n>__<name>.sql`), applied by
//! `trellis migrate` or at start-up, under an advisory lock so concurrent starts are safe.

use deadpool_postgres::Pool;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Arbitrary constant naming the advisory lock that serialises migration runs.
const MIGRATION_LOCK: i64 = 0x0074_7265_6c6c_6973;

/// Applies every migration not yet applied; returns how many ran.
pub async fn run(pool: &Pool) -> anyhow::Result<usize> {
    let mut client = pool.get().await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let client_ref: &mut tokio_postgres::Client = &mut client;
    let report = embedded::migrations::runner().run_async(client_ref).await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    let report = report?;
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "migration applied");
    }
    Ok(report.applied_migrations().len())
}

/// A fingerprint of the migration set: test templates are rebuilt when it changes.
pub fn fingerprint() -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for m in embedded::migrations::runner().get_migrations() {
        for b in m.name().bytes().chain(m.version().to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        if let Some(sql) = m.sql() {
            for b in sql.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
            }
        }
    }
    format!("{h:016x}")
}
