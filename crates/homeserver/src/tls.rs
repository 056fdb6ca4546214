//! The client API over TLS (`http.tls`): a listener that completes each TLS handshake on its
//! own task (a slow or silent client holds up nobody), with a certificate reloaded whenever
//! its files change.

use std::{
    net::SocketAddr,
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
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use trellis_core::{config::TlsConfig, shutdown::Shutdown};

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes done and waiting for the HTTP server to take them.
const READY_BACKLOG: usize = 256;

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

/// A listener for `axum::serve` whose connections are TLS streams.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Loads the certificate (an error if it is unusable: better not to start than to serve
    /// a broken one) and starts accepting on `tcp` until `stop`.
    pub fn start(tcp: TcpListener, config: &TlsConfig, stop: Shutdown) -> anyhow::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let resolver = Arc::new(ReloadingCert { current: RwLock::new(load(&config.certificate, &config.key)?) });
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let (tx, ready) = mpsc::channel(READY_BACKLOG);
        tokio::spawn(accept(tcp, acceptor, tx, stop.clone()));
        let every = Duration::from_millis(config.reload_ms.max(100));
        tokio::spawn(reload(resolver, config.certificate.clone(), config.key.clone(), every, stop));
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The acceptor stopped: so does the server (graceful shutdown is under way).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    stop: Shutdown,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.wait() => return,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
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
