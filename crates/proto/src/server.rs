//! The server side of every unary RPC, and of each call on a multiplexed stream: adopt the
//! caller's trace, run the call inside a span, record Prometheus metrics, and turn the result
//! into a gRPC response.

use std::{future::Future, time::Instant};

use tracing::Instrument;
use trellis_core::Error;

/// Runs one unary call of `service.method` against a local implementation.
pub async fn unary<Req, Resp, F, Fut>(
    service: &'static str,
    method: &'static str,
    request: tonic::Request<Req>,
    call: F,
) -> Result<tonic::Response<Resp>, tonic::Status>
where
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<Resp, Error>>,
{
    let (metadata, _, message) = request.into_parts();
    respond(service, method, |span| crate::trace::adopt(span, &metadata), call(message)).await.map(tonic::Response::new)
}

/// One call of `service.method`, unary or on a stream: inside a server span that `parent`
/// joins to the caller's trace, with its Prometheus metrics, ending as a gRPC result.
pub(crate) async fn respond<Resp>(
    service: &'static str,
    method: &'static str,
    parent: impl FnOnce(&tracing::Span),
    call: impl Future<Output = Result<Resp, Error>>,
) -> Result<Resp, tonic::Status> {
    let span = tracing::info_span!("grpc.server", rpc.service = service, rpc.method = method, otel.kind = "server");
    parent(&span);
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) if e.is_internal() => "internal",
        Err(e) => e.code().as_str(),
    };
    metrics::counter!("trellis_grpc_server_requests_total", "service" => service, "method" => method, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("trellis_grpc_server_request_duration_seconds", "service" => service, "method" => method)
        .record(started.elapsed().as_secs_f64());
    let _enter = span.enter();
    result.map_err(crate::status::from_error)
}

/// Serves gRPC `routes` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    shutdown: trellis_core::shutdown::Shutdown,
) -> Result<(), tonic::transport::Error> {
    // The builder's `tcp_nodelay` does not reach sockets accepted from our own listener;
    // without it Nagle's algorithm adds ~40 ms to small replies.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder().add_routes(routes).serve_with_incoming_shutdown(incoming, shutdown.wait()).await
}

/// Starts serving `routes` on a free loopback port (tests); returns its `http://` URL.
pub async fn spawn_on_free_port(routes: tonic::service::Routes) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("bound address"));
    tokio::spawn(serve(listener, routes, trellis_core::shutdown::Shutdown::never()));
    url
}
