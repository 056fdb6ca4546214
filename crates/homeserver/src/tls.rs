//! The client API's certificate (`http.tls`): the acceptor `http.rs` completes each
//! connection's handshake with, presenting a certificate reloaded whenever its files change.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio_rustls::TlsAcceptor;
use trellis_core::{config::TlsConfig, shutdown::Shutdown};

/// The certificate in use, swapped when the files change.
#[derive(Debug)]
struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn load(certificate: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .with_context(|| format!("reading {}", certificate.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not PEM", certificate.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", certificate.display());
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the key {}", key.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider.key_provider.load_private_key(key).context("the private key is not usable")?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().context("the key does not belong to the certificate")?;
    Ok(Arc::new(certified))
}

/// What identifies a version of a file: its modification time and length.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Loads the certificate (an error if it is unusable: better not to start than to serve a
/// broken one) and keeps it current until `stop`.
pub fn acceptor(config: &TlsConfig, stop: Shutdown) -> anyhow::Result<TlsAcceptor> {
    let resolver = Arc::new(ReloadingCert { current: RwLock::new(load(&config.certificate, &config.key)?) });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let every = Duration::from_millis(config.reload_ms.max(100));
    tokio::spawn(reload(resolver, config.certificate.clone(), config.key.clone(), every, stop));
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// Looks at the files every `every`; a changed pair that loads replaces the certificate, one
/// that does not is logged and the old certificate kept.
async fn reload(resolver: Arc<ReloadingCert>, certificate: PathBuf, key: PathBuf, every: Duration, stop: Shutdown) {
    let mut seen = (stamp(&certificate), stamp(&key));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait() => return,
        }
        let now = (stamp(&certificate), stamp(&key));
        if now == seen {
            continue;
        }
        match load(&certificate, &key) {
            Ok(certified) => {
                *resolver.current.write().unwrap_or_else(|p| p.into_inner()) = certified;
                seen = now;
                tracing::info!(certificate = %certificate.display(), "TLS certificate reloaded");
            }
            // Perhaps half written: tried again at the next look, since `seen` is unchanged.
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "the changed TLS certificate cannot be used; keeping the old one"
            ),
        }
    }
}
