//! Observability: Prometheus counters and latency histograms per route, on the operations port.

use trellis_testkit::TestServer;

both_modes!(metrics_count_requests_per_route);

async fn metrics_count_requests_per_route(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    for _ in 0..3 {
        alice.get("/_matrix/client/v3/account/whoami").await.ok();
    }
    let text = reqwest::get(server.metrics_url()).await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("trellis_http_requests_total")
                && l.contains("route=\"/_matrix/client/v3/account/whoami\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no whoami counter in:\n{text}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    assert!(
        text.lines().any(|l| l.starts_with("trellis_http_request_duration_seconds_bucket")
            && l.contains("/_matrix/client/v3/account/whoami")),
        "a latency histogram per route"
    );
}
