//! The TLS certificate of the given address: trusted (system roots and any extra CA given),
//! for the right name, and how long until it expires.

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use rustls::{
    DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio::net::TcpStream;
use x509_cert::{Certificate, der::Decode};

use crate::{Finding, Options, api::Target};

const CHECK: &str = "tls";

/// `None` for a target given by IP address or host name without TLS would be odd: plain HTTP
/// is a warning of its own.
pub(crate) async fn check(target: &Target, options: &Options) -> Option<Finding> {
    let host = target.origin.host_str()?.trim_matches(['[', ']']).to_owned();
    if target.origin.scheme() == "http" {
        let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let fix = "clients elsewhere need HTTPS: terminate TLS at the ingress or load balancer, or set http.tls";
        return Some(match local {
            true => Finding::ok(CHECK, "plain HTTP on this machine"),
            false => Finding::warn(CHECK, format!("{} is plain HTTP", target.origin), fix),
        });
    }
    let port = target.origin.port_or_known_default().unwrap_or(443);
    Some(match handshake(&host, port, options).await {
        Ok(seen) => judge(seen, options.expiry_warn_days),
        Err(e) => Finding::fail(CHECK, format!("no TLS handshake with {host}:{port}: {e}"), "serve TLS on this port"),
    })
}

/// What one handshake showed: the server's chain and whether it verified.
#[derive(Debug)]
struct Seen {
    leaf: Option<Vec<u8>>,
    verdict: Result<(), String>,
}

async fn handshake(host: &str, port: u16, options: &Options) -> Result<Seen, String> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = &options.ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem).flatten() {
            roots.add(cert).map_err(|e| format!("the CA file: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let recorder = Arc::new(Recorder { inner, seen: Mutex::new(None) });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host:?}: {e}"))?;
    let connect = async {
        let tcp = TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?;
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(options.timeout, connect).await.map_err(|_| "timed out".to_owned())??;
    let seen = recorder.seen.lock().unwrap_or_else(|p| p.into_inner()).take();
    seen.ok_or_else(|| "the server sent no certificate".to_owned())
}

fn judge(seen: Seen, warn_days: u64) -> Finding {
    let Some(leaf) = seen.leaf else {
        return Finding::fail(CHECK, "the server sent no certificate", "configure a certificate");
    };
    let not_after = match Certificate::from_der(&leaf) {
        Ok(cert) => cert.tbs_certificate.validity.not_after,
        Err(e) => {
            return Finding::fail(CHECK, format!("the certificate does not parse: {e}"), "serve an X.509 certificate");
        }
    };
    let expires = not_after.to_date_time();
    let days_left =
        not_after.to_system_time().duration_since(SystemTime::now()).map(|left| left.as_secs() / 86_400).ok();
    let renew = "renew the certificate (automate it, e.g. cert-manager or an ACME client)";
    if days_left.is_none() {
        return Finding::fail(CHECK, format!("the certificate expired on {expires}"), renew);
    }
    if let Err(e) = seen.verdict {
        let fix = "serve a certificate for this name from a CA clients trust (e.g. Let's Encrypt), with the full \
                   chain; for a private CA pass it with --ca-file";
        return Finding::fail(CHECK, format!("certificate not trusted: {e} (expires {expires})"), fix);
    }
    match days_left {
        None => Finding::fail(CHECK, format!("the certificate expired on {expires}"), renew),
        Some(days) if days < warn_days => {
            Finding::warn(CHECK, format!("the certificate expires on {expires}, in {days} days"), renew)
        }
        Some(days) => Finding::ok(CHECK, format!("certificate trusted, valid until {expires} ({days} days)")),
    }
}

/// Verifies as `inner` would, but records the verdict and lets the handshake finish, so one
/// connection tells both whether the certificate is trusted and when it expires. Signatures
/// are still checked: a server that cannot prove it holds the key fails the handshake.
#[derive(Debug)]
struct Recorder {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Mutex<Option<Seen>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ())
            .map_err(|e| e.to_string());
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Seen { leaf: Some(end_entity.to_vec()), verdict });
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
