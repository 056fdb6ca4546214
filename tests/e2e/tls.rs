//! The client API over TLS (`http.tls`): `https://` works as the oldest tutorial writes it, a
//! renewed certificate is served without a restart, plain HTTP gets no answer on the TLS port,
//! and an unusable certificate stops the server from starting rather than serving it.

use std::{path::PathBuf, sync::Arc};

use trellis_check::{Options, Outcome};
use trellis_core::config::{Config, TlsConfig};
use trellis_testkit::TestServer;

use crate::certs::issue;

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = std::env::temp_dir().join(format!("trellis-tls-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    fn write(&self, cert_pem: &str, key_pem: &str) {
        std::fs::write(self.cert(), cert_pem).unwrap();
        std::fs::write(self.key(), key_pem).unwrap();
    }
    fn tls(&self) -> TlsConfig {
        TlsConfig { certificate: self.cert(), key: self.key(), reload_ms: 100 }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn port(server: &TestServer) -> u16 {
    server.url().rsplit(':').next().unwrap().parse().unwrap()
}

/// The certificate finding of `trellis check` against the server, trusting `ca_pem`.
async fn tls_detail(port: u16, ca_pem: &str) -> (Outcome, String) {
    let mut options = Options::new(format!("https://localhost:{port}"));
    options.ca_pem = Some(ca_pem.as_bytes().to_vec());
    let findings = trellis_check::run(&options).await;
    let tls = findings.iter().find(|f| f.check == "tls").unwrap();
    (tls.outcome, tls.detail.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_api_is_served_over_tls_and_renewals_need_no_restart() {
    let files = Arc::new(Files::new());
    let first = issue(90);
    files.write(&first.cert_pem, &first.key_pem);
    let tls = files.tls();
    let server = TestServer::monolith_configured(move |c: &mut Config| c.http.tls = Some(tls.clone())).await;
    let port = port(&server);

    // A client that trusts the CA talks to the API over https://.
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(first.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let versions = https.get(format!("https://localhost:{port}/_matrix/client/versions")).send().await.unwrap();
    assert_eq!(versions.status(), 200);
    let body: serde_json::Value = versions.json().await.unwrap();
    assert!(body["versions"].as_array().is_some_and(|v| !v.is_empty()), "{body}");
    let (outcome, detail) = tls_detail(port, &first.ca_pem).await;
    assert_eq!(outcome, Outcome::Ok, "{detail}");
    assert!(detail.contains("(89 days)") || detail.contains("(90 days)"), "{detail}");

    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/_matrix/client/versions")).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    // A renewal (new CA, 30 days) is picked up by new connections without a restart.
    let renewed = issue(30);
    files.write(&renewed.cert_pem, &renewed.key_pem);
    let mut last = String::new();
    for _ in 0..100 {
        let (outcome, detail) = tls_detail(port, &renewed.ca_pem).await;
        if outcome == Outcome::Ok && (detail.contains("(29 days)") || detail.contains("(30 days)")) {
            last.clear();
            break;
        }
        last = detail;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(last.is_empty(), "the renewed certificate was never served: {last}");

    // A broken file is refused and the renewed certificate kept.
    std::fs::write(files.cert(), "not a certificate").unwrap();
    // Nothing to wait for: the point is that nothing changes. Three reload periods.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (outcome, detail) = tls_detail(port, &renewed.ca_pem).await;
    assert_eq!(outcome, Outcome::Ok, "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_certificate_stops_the_start() {
    let files = Files::new();
    let issued = issue(90);
    let other = issue(90);
    // A key that does not belong to the certificate.
    files.write(&issued.cert_pem, &other.key_pem);
    let mut config = Config { server_name: "localhost".into(), ..Config::default() };
    config.http.tls = Some(files.tls());
    config.roles = vec![trellis_core::config::Role::Gateway];
    config.rate_limits.enabled = false;
    config.remote.auth = Some("http://127.0.0.1:1".into());
    config.remote.rooms = Some("http://127.0.0.1:1".into());
    config.remote.media = Some("http://127.0.0.1:1".into());
    config.remote.sync = vec!["http://127.0.0.1:1".into()];
    let listeners = trellis_homeserver::Listeners {
        http: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
        ..Default::default()
    };
    let err = trellis_homeserver::start(config, listeners).await.err().expect("refused to start");
    assert!(format!("{err:#}").contains("does not belong"), "{err:#}");
}
