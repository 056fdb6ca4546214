//! Throwaway databases for tests: each [`TestDb`] is a fresh copy of a migrated template,
//! dropped when the value is. Needs `TRELLIS_TEST_DATABASE_URL` (any database on a server
//! where the user may create databases); `make test` starts one and sets it. Also
//! [`message_row`], an event row for tests that render events without a database.

use std::time::Duration;

use anyhow::{Context, bail};
use deadpool_postgres::Pool;

/// The variable naming the PostgreSQL server tests create their databases on.
pub const TEST_DATABASE_ENV: &str = "TRELLIS_TEST_DATABASE_URL";

/// A stored `m.room.message` of `@a:x` in `!r:x` at ts 1000, sent by device `DEV` as
/// transaction `t1`, with the given content and unsigned data.
pub fn message_row(content: &str, unsigned_json: Option<&str>) -> crate::events::EventRow {
    crate::events::EventRow {
        pos: 5,
        event_id: "$e".into(),
        room_id: "!r:x".into(),
        sender: "@a:x".into(),
        kind: "m.room.message".into(),
        state_key: None,
        origin_server_ts: 1000,
        content: content.into(),
        unsigned_json: unsigned_json.map(str::to_owned),
        txn_device: Some("DEV".into()),
        txn_id: Some("t1".into()),
        redacts: None,
        relations: None,
    }
}

/// Arbitrary constant naming the advisory lock that serialises template creation.
const TEMPLATE_LOCK: i64 = 0x0074_726c_7374_706c;

pub struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDb {
    /// A new database with every migration applied.
    pub async fn new() -> anyhow::Result<TestDb> {
        let admin_url = std::env::var(TEST_DATABASE_ENV).map_err(|_| {
            anyhow::anyhow!(
                "{TEST_DATABASE_ENV} is not set: run the tests with `make test` (it starts \
                 PostgreSQL and Redis), or start them with `make services` and export the \
                 variables it prints"
            )
        })?;
        let template = ensure_template(&admin_url).await?;
        let name = format!("trellis_t_{}", uuid::Uuid::new_v4().simple());
        let admin = connect_one(&admin_url).await?;
        let mut attempt = 0;
        loop {
            let sql = format!("CREATE DATABASE {name} TEMPLATE {template}");
            match admin.batch_execute(&sql).await {
                Ok(()) => break,
                // Another process may be copying the template at this very moment.
                Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).context("creating test database"),
            }
        }
        let url = with_database(&admin_url, &name);
        Ok(TestDb { admin_url, name, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pool(&self, size: usize) -> Pool {
        crate::pool::connect(&self.url, size).expect("test database URL is valid")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside a runtime, which cannot be blocked on; use a thread of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let admin = connect_one(&admin_url).await.ok()?;
                admin.batch_execute(&sql).await.ok()
            })
        })
        .join();
    }
}

/// Creates (once per migration set) the template every test database is copied from.
async fn ensure_template(admin_url: &str) -> anyhow::Result<String> {
    let template = format!("trellis_tpl_{}", crate::migrate::fingerprint());
    let admin = connect_one(admin_url).await?;
    admin.execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK]).await?;
    let result = async {
        let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template]).await?.is_some();
        if !exists {
            let building = format!("{template}_building");
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)")).await?;
            admin.batch_execute(&format!("CREATE DATABASE {building}")).await?;
            {
                let pool = crate::pool::connect(&with_database(admin_url, &building), 1)?;
                crate::migrate::run(&pool).await?;
                pool.close();
            }
            admin.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}")).await?;
        }
        anyhow::Ok(())
    }
    .await;
    admin.execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK]).await?;
    result?;
    Ok(template)
}

async fn connect_one(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {}", trellis_core::config::redact_url(url)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map(|i| scheme_end + i);
    let mut out = match path_start {
        Some(i) => format!("{}/{db}", &base[..i]),
        None => format!("{base}/{db}"),
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Fails unless `name` is a safe SQL identifier (used for database names we build).
pub fn check_identifier(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("unsafe identifier {name:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_database_name() {
        assert_eq!(with_database("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_refused_statement_is_a_500_and_a_dropped_connection_a_503() {
        let db = TestDb::new().await.unwrap();
        let pool = db.pool(2);
        let client = pool.get().await.unwrap();
        let bug = trellis_core::Error::from(
            client.query_one("SELECT no_such_column FROM stream_positions", &[]).await.unwrap_err(),
        );
        assert!(bug.is_internal() && bug.status() == 500, "a bad statement is our bug: {bug:?}");
        let none = trellis_core::Error::from(client.query_one("SELECT 1 WHERE false", &[]).await.unwrap_err());
        assert!(none.is_internal(), "a missing row is not an outage: {none:?}");
        // The server ends this session, as a restart or failover would.
        let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        let other = pool.get().await.unwrap();
        other.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap();
        let gone = trellis_core::Error::from(client.query_one("SELECT 1", &[]).await.unwrap_err());
        assert_eq!(gone.status(), 503, "a dropped connection is unavailability: {gone:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn fresh_databases_are_migrated_and_isolated() {
        let a = TestDb::new().await.unwrap();
        let b = TestDb::new().await.unwrap();
        assert_ne!(a.name(), b.name());
        let pa = a.pool(1);
        let client = pa.get().await.unwrap();
        client.execute("INSERT INTO stream_positions VALUES ('x', 1)", &[]).await.unwrap();
        let pb = b.pool(1);
        let client_b = pb.get().await.unwrap();
        let n: i64 = client_b.query_one("SELECT count(*) FROM stream_positions", &[]).await.unwrap().get(0);
        assert_eq!(n, 1, "b must not see a's row");
        let name = a.name().to_owned();
        drop(client);
        drop(pa);
        drop(a);
        let gone: i64 =
            client_b.query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&name]).await.unwrap().get(0);
        assert_eq!(gone, 0, "dropped database must be gone");
    }
}
