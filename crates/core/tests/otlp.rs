//! With `telemetry.otlp_endpoint` set, finished spans are exported over OTLP/gRPC: a listener
//! standing in for the collector sees the exporter's HTTP/2 connection arrive.

use std::time::Duration;

use tokio::{io::AsyncReadExt, net::TcpListener};
use trellis_core::config::TelemetryConfig;

#[tokio::test(flavor = "multi_thread")]
async fn spans_are_exported_to_the_configured_collector() {
    let collector = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", collector.local_addr().unwrap());
    let cfg = TelemetryConfig { otlp_endpoint: Some(endpoint), ..Default::default() };
    let guard = trellis_core::telemetry::init(&cfg, "otlp-test").unwrap();

    let accepted = tokio::spawn(async move {
        let (mut socket, _) = collector.accept().await.unwrap();
        let mut preface = [0u8; 24];
        socket.read_exact(&mut preface).await.unwrap();
        preface
    });
    tracing::info_span!("exported-span").in_scope(|| tracing::info!("inside"));
    tokio::task::spawn_blocking(move || guard.flush());
    let preface = tokio::time::timeout(Duration::from_secs(15), accepted).await.expect("exporter connected").unwrap();
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "an HTTP/2 (gRPC) client preface");
}
