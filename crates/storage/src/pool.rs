//! The connection pool and single connections, in plain text or over TLS as the URL asks.

use std::{future::Future, path::Path, pin::Pin, sync::Arc};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;
use trellis_core::{Error, Result};

/// A connection's background task: it must be polled (spawned) for the client to work.
pub type Connection = Pin<Box<dyn Future<Output = std::result::Result<(), tokio_postgres::Error>> + Send>>;

/// Where PostgreSQL is and how to reach it.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    /// Present when the URL asks for TLS.
    tls: Option<MakeRustlsConnect>,
}

impl Target {
    /// `url` in libpq's URL or key-value form. `sslmode=require`, `verify-ca` and
    /// `verify-full` all mean TLS with the server's certificate verified against `ca_file`
    /// (PEM) or, without one, the system's roots; other modes (the default `prefer`
    /// included) connect in plain text, as Trellis always did.
    pub fn new(url: &str, ca_file: Option<&Path>) -> Result<Target> {
        // tokio-postgres knows only disable, prefer and require; libpq's verifying modes are
        // what managed databases hand out, and are what `require` does here anyway.
        let url = url.replace("sslmode=verify-full", "sslmode=require").replace("sslmode=verify-ca", "sslmode=require");
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| Error::internal(format!("invalid database URL: {e}")))?;
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Some(MakeRustlsConnect::new(client_config(ca_file)?)),
            _ => None,
        };
        Ok(Target { config, tls })
    }

    /// The database `database.url` and `database.tls_ca_file` name.
    pub fn from_config(config: &trellis_core::config::DatabaseConfig) -> Result<Target> {
        Target::new(&config.url, config.tls_ca_file.as_deref())
    }

    /// A pool of `size` connections. Connections open lazily; call [`check`] to fail fast
    /// at start-up.
    pub fn pool(&self, size: usize) -> Result<Pool> {
        let recycling = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match &self.tls {
            Some(tls) => Manager::from_config(self.config.clone(), tls.clone(), recycling),
            None => Manager::from_config(self.config.clone(), tokio_postgres::NoTls, recycling),
        };
        Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::internal(format!("cannot build database pool: {e}")))
    }

    /// One connection outside any pool (a session-level advisory lock lives as long as it).
    pub async fn connect(&self) -> Result<(tokio_postgres::Client, Connection)> {
        Ok(match &self.tls {
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await?;
                (client, Box::pin(conn))
            }
            None => {
                let (client, conn) = self.config.connect(tokio_postgres::NoTls).await?;
                (client, Box::pin(conn))
            }
        })
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// A pool of `size` connections to `url`, verifying a TLS server against the system's roots.
pub fn connect(url: &str, size: usize) -> Result<Pool> {
    Target::new(url, None)?.pool(size)
}

/// Opens one connection, so a wrong URL or a missing server is reported at start-up.
pub async fn check(pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await.map_err(|e| anyhow::anyhow!("cannot reach PostgreSQL: {e}"))?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

/// TLS as a client: the roots from `ca_file`, or the system's.
fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect())
                .map_err(|e| Error::internal(format!("cannot read database.tls_ca_file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Error::internal(format!("database.tls_ca_file {} holds no certificate", path.display())));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| Error::internal(format!("database.tls_ca_file {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::internal(
                    "no trusted roots on this system for the database's TLS: set database.tls_ca_file",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tls_modes_ask_for_tls() {
        for (url, tls) in [
            ("postgres://u@h/db", false),
            ("postgres://u@h/db?sslmode=disable", false),
            ("postgres://u@h/db?sslmode=prefer", false),
            ("postgres://u@h/db?sslmode=require", true),
            ("postgres://u@h/db?sslmode=verify-ca", true),
            ("postgres://u@h/db?sslmode=verify-full", true),
            ("host=h user=u sslmode=verify-full", true),
        ] {
            // Without a CA file the system's roots are used; a machine without any cannot
            // build a TLS target, which the error says.
            match Target::new(url, None) {
                Ok(target) => assert_eq!(target.is_tls(), tls, "{url}"),
                Err(e) => assert!(tls && e.to_string().contains("tls_ca_file"), "{url}: {e}"),
            }
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_refused() {
        let url = "postgres://u@h/db?sslmode=require";
        let err = Target::new(url, Some(Path::new("/nonexistent/ca.pem"))).err().expect("refused");
        assert!(err.to_string().contains("tls_ca_file"), "{err}");
        let empty = std::env::temp_dir().join(format!("trellis-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let err = Target::new(url, Some(&empty)).err().expect("refused");
        std::fs::remove_file(&empty).ok();
        assert!(err.to_string().contains("no certificate"), "{err}");
    }
}
