//! How to reach Redis: its URL and, for `rediss://`, the CA its certificate must chain to.

use std::path::{Path, PathBuf};

use trellis_core::{Error, Result, config::RedisConfig};

/// A Redis server as configured; every Redis client of Trellis is opened from one.
#[derive(Debug, Clone)]
pub struct RedisServer {
    url: String,
    ca_file: Option<PathBuf>,
}

impl RedisServer {
    pub fn new(url: &str, ca_file: Option<&Path>) -> RedisServer {
        RedisServer { url: url.to_owned(), ca_file: ca_file.map(Path::to_path_buf) }
    }

    /// The configured server, if `redis.url` is set.
    pub fn from_config(config: &RedisConfig) -> Option<RedisServer> {
        Some(RedisServer::new(config.url.as_deref()?, config.tls_ca_file.as_deref()))
    }

    /// A client (connections open lazily). `rediss://` verifies the server's certificate
    /// against the CA file, or the system's roots without one.
    pub fn client(&self) -> Result<redis::Client> {
        self.client_at(&self.url)
    }

    /// A client speaking RESP3, whose push messages pub/sub over a shared connection needs.
    pub(crate) fn resp3_client(&self) -> Result<redis::Client> {
        let url = if self.url.contains("protocol=") {
            self.url.clone()
        } else if self.url.contains('?') {
            format!("{}&protocol=resp3", self.url)
        } else {
            format!("{}?protocol=resp3", self.url)
        };
        self.client_at(&url)
    }

    fn client_at(&self, url: &str) -> Result<redis::Client> {
        let invalid = |e: redis::RedisError| Error::internal(format!("invalid Redis URL: {e}"));
        if !url.starts_with("rediss://") {
            return redis::Client::open(url).map_err(invalid);
        }
        // The redis crate builds its TLS settings from the process's default provider.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let root_cert = match &self.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| Error::internal(format!("cannot read redis.tls_ca_file {}: {e}", path.display())))?,
            ),
            None => None,
        };
        redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert }).map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pub_sub_clients_ask_for_resp3_once() {
        for url in ["redis://h:6379/", "redis://h:6379/?db=2", "redis://h:6379/?protocol=resp3"] {
            let client = RedisServer::new(url, None).resp3_client().unwrap();
            assert_eq!(
                client.get_connection_info().redis_settings().protocol(),
                redis::ProtocolVersion::RESP3,
                "{url}"
            );
        }
        let plain = RedisServer::new("redis://h:6379/", None).client().unwrap();
        assert_eq!(plain.get_connection_info().redis_settings().protocol(), redis::ProtocolVersion::RESP2);
    }

    #[test]
    fn an_unreadable_ca_file_is_refused() {
        let server = RedisServer::new("rediss://h:6380/", Some(Path::new("/nonexistent/ca.pem")));
        let err = server.client().unwrap_err();
        assert!(err.to_string().contains("redis.tls_ca_file"), "{err}");
        // Plain Redis does not read the CA file at all.
        RedisServer::new("redis://h:6379/", Some(Path::new("/nonexistent/ca.pem"))).client().unwrap();
    }
}
