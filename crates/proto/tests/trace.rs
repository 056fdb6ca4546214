//! One trace spans a gRPC hop: the server's span continues the caller's trace, and a Matrix
//! error comes back with its errcode and status.

mod common;

use opentelemetry::trace::{TraceContextExt, TraceId};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use trellis_core::{ErrorCode, shutdown::Shutdown};
use trellis_proto::sync::*;

#[tokio::test(flavor = "multi_thread")]
async fn trace_context_and_errcodes_survive_the_hop() {
    // Traces exist only where they are exported: a listener stands in for the collector.
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", collector.local_addr().unwrap());
    // It hangs up on every export, so shutting the exporter down does not wait for one.
    tokio::spawn(async move {
        while let Ok((socket, _)) = collector.accept().await {
            drop(socket);
        }
    });
    let cfg = trellis_core::config::TelemetryConfig { otlp_endpoint: Some(endpoint), ..Default::default() };
    let _guard = trellis_core::telemetry::init(&cfg, "trace-test").unwrap();
    let recorder = common::Probe::new(Shutdown::never());
    let routes = tonic::service::Routes::new(SyncGrpcServer::new(recorder.clone()).into_service());
    let url = trellis_proto::server::spawn_on_free_port(routes).await;
    let client = SyncGrpcClient::connect(&url).unwrap();

    let span = tracing::info_span!("caller");
    let caller_trace = span.context().span().span_context().trace_id();
    assert_ne!(caller_trace, TraceId::INVALID, "the caller has a trace");
    // An initial sync takes a unary call; incremental ones share a stream, so their trace
    // travels in each call's message.
    let incremental = SyncRequest { since: Some("s1".into()), ..Default::default() };
    client.sync(SyncRequest::default()).instrument(span.clone()).await.unwrap();
    client.sync(incremental.clone()).instrument(span).await.unwrap();
    // A later, unrelated call gets a trace of its own.
    client.sync(incremental).instrument(tracing::info_span!("other")).await.unwrap();
    let seen = recorder.traces.lock().unwrap().clone();
    assert_eq!(seen[0], caller_trace, "the server continued the caller's trace (unary)");
    assert_eq!(seen[1], caller_trace, "the server continued the caller's trace (on the stream)");
    assert_ne!(seen[2], caller_trace);

    let err = client.create_filter(CreateFilterRequest::default()).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::LimitExceeded, 429));
    assert_eq!(err.client_body()["retry_after_ms"], 1500);
    let err = client.get_filter(GetFilterRequest::default()).await.unwrap_err();
    assert!(err.is_internal());
    assert!(!err.client_body().to_string().contains("secret"), "internal text stays on the server");
}
