//! `trellis check URL`, the deployment self-check: everything passes against Trellis itself
//! (with and without a test account), and a misconfigured deployment — a proxy that drops the
//! CORS headers and login flows, a wrong password, an untrusted, expiring or expired
//! certificate — is named check by check with what to fix.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Json, Router, routing::get};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::json;
use trellis_check::{Finding, Options, Outcome};
use trellis_testkit::TestServer;

both_modes!(a_trellis_deployment_passes_every_check);

fn outcome(findings: &[Finding], check: &str) -> Outcome {
    findings.iter().find(|f| f.check == check).unwrap_or_else(|| panic!("no {check} check in {findings:?}")).outcome
}

fn lines(findings: &[Finding]) -> String {
    findings.iter().map(Finding::line).collect::<Vec<_>>().join("\n")
}

async fn a_trellis_deployment_passes_every_check(server: TestServer) {
    let checker = server.user("checker").await;

    // Without an account: what anyone can see.
    let anonymous = trellis_check::run(&Options::new(server.url())).await;
    for check in ["tls", "well-known", "versions", "cors", "login"] {
        assert_eq!(outcome(&anonymous, check), Outcome::Ok, "{check}:\n{}", lines(&anonymous));
    }
    assert_eq!(outcome(&anonymous, "sync"), Outcome::Skip);
    assert!(trellis_check::passed(&anonymous));

    // With one: media limits and a change coming back through /sync.
    let mut options = Options::new(server.url());
    options.user = Some(checker.user_id.clone());
    options.password = Some(trellis_testkit::PASSWORD.to_owned());
    let full = trellis_check::run(&options).await;
    assert!(full.iter().all(|f| f.outcome == Outcome::Ok), "{}", lines(&full));
    let sync = full.iter().find(|f| f.check == "sync").unwrap();
    assert!(sync.detail.contains("came back through /sync"), "{}", sync.line());
    let media = full.iter().find(|f| f.check == "media").unwrap();
    assert!(media.detail.contains("uploads up to"), "{}", media.line());
    // The check signs its device out again.
    let devices = checker.get("/_matrix/client/v3/devices").await.ok();
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1, "{devices}");

    // A wrong password is the operator's to fix, and fails the run.
    options.password = Some("not the password".to_owned());
    let refused = trellis_check::run(&options).await;
    assert_eq!(outcome(&refused, "media"), Outcome::Fail, "{}", lines(&refused));
    assert!(!trellis_check::passed(&refused));
}

/// A homeserver behind a proxy that strips CORS headers and answers preflights with 405, with
/// no login flows configured and a well-known without its CORS header.
async fn misconfigured() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let app = Router::new()
        .route(
            "/.well-known/matrix/client",
            get(move || async move { Json(json!({"m.homeserver": {"base_url": base}})) }),
        )
        .route("/_matrix/client/versions", get(|| async { Json(json!({"versions": ["v1.1", "v1.11"]})) }))
        .route("/_matrix/client/v3/login", get(|| async { Json(json!({"flows": []})) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn a_misconfigured_deployment_is_named_check_by_check() {
    let addr = misconfigured().await;
    let findings = trellis_check::run(&Options::new(format!("http://{addr}"))).await;
    assert_eq!(outcome(&findings, "versions"), Outcome::Ok, "{}", lines(&findings));
    for check in ["well-known", "cors", "login"] {
        let finding = findings.iter().find(|f| f.check == check).unwrap();
        assert_eq!(finding.outcome, Outcome::Fail, "{}", lines(&findings));
        assert!(finding.fix.is_some(), "{}", finding.line());
    }
    assert!(lines(&findings).contains("Access-Control-Allow-Origin"), "{}", lines(&findings));
    assert!(!trellis_check::passed(&findings));

    // Nothing listening: the first check says so and the rest are skipped, not failed again.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let findings = trellis_check::run(&Options::new(format!("http://{gone}"))).await;
    assert_eq!(outcome(&findings, "versions"), Outcome::Fail, "{}", lines(&findings));
    assert_eq!(outcome(&findings, "cors"), Outcome::Skip, "{}", lines(&findings));
}

/// A server configuration presenting a certificate valid for `days` more days; the CA's PEM.
fn certificate(days: i64) -> (String, rustls::ServerConfig) {
    let issued = crate::certs::issue(days);
    let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    (issued.ca_pem, config)
}

/// Completes TLS handshakes (and nothing more) on a port of its own.
async fn tls_listener(config: rustls::ServerConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    drop(stream);
                }
            });
        }
    });
    addr
}

async fn tls_finding(days: i64, trust: bool) -> Finding {
    let (ca_pem, config) = certificate(days);
    let addr = tls_listener(config).await;
    let mut options = Options::new(format!("https://localhost:{}", addr.port()));
    options.timeout = Duration::from_secs(3);
    if trust {
        options.ca_pem = Some(ca_pem.into_bytes());
    }
    let findings = trellis_check::run(&options).await;
    findings.into_iter().find(|f| f.check == "tls").expect("a tls check")
}

#[tokio::test]
async fn certificates_are_judged_by_trust_and_expiry() {
    let untrusted = tls_finding(90, false).await;
    assert_eq!(untrusted.outcome, Outcome::Fail, "{}", untrusted.line());
    assert!(untrusted.detail.contains("not trusted"), "{}", untrusted.line());

    let good = tls_finding(90, true).await;
    assert_eq!(good.outcome, Outcome::Ok, "{}", good.line());
    assert!(good.detail.contains("(89 days)") || good.detail.contains("(90 days)"), "{}", good.line());

    let expiring = tls_finding(5, true).await;
    assert_eq!(expiring.outcome, Outcome::Warn, "{}", expiring.line());

    let expired = tls_finding(-2, true).await;
    assert_eq!(expired.outcome, Outcome::Fail, "{}", expired.line());
    assert!(expired.detail.contains("expired on"), "{}", expired.line());
}
