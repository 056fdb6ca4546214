//! The operations port (`metrics.listen`): Prometheus `/metrics`, and the `/health/live` and
//! `/health/ready` probes, served by every role on a listener of its own — never on the
//! client API port, which faces the internet.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};

use crate::health::Health;

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(health)
}

async fn metrics() -> String {
    trellis_core::telemetry::metrics_handle().render()
}

/// 200 while the process runs and nothing a restart would cure is wrong.
async fn live(State(health): State<Arc<Health>>) -> Response {
    let report = health.report();
    let code = if report.live { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(serde_json::json!({ "status": if report.live { "ok" } else { "failed" }, "checks": report.checks })))
        .into_response()
}

/// 200 when the process should be sent work, 503 otherwise; the body says which check failed.
async fn ready(State(health): State<Arc<Health>>) -> Response {
    let report = health.report();
    let code = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(report)).into_response()
}

/// GETs `path` from the operations port at `addr` (an unspecified address means this host)
/// and returns the status code and body: `trellis health`, for images without curl.
pub async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        anyhow::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{addr} did not answer within {timeout:?}"))?
        .with_context(|| format!("asking {addr}{path}"))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP answer from {addr}: {head:?}"))?;
    Ok((status, body.to_owned()))
}
