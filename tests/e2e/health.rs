//! The operations port of every node: `/metrics` there and never on the client API port,
//! `/health/live` and `/health/ready` following the database, the services a gateway calls
//! and draining, and the gRPC health service of split mode's service nodes.

use std::time::Duration;

use serde_json::Value;
use trellis_testkit::{Mode, ServingStatus, TestServer};

both_modes!(
    metrics_are_served_apart_from_the_client_api,
    every_node_is_live_and_ready,
    a_draining_node_is_not_ready_but_serves
);

/// Fetches `url`, returning its status and JSON body.
async fn get(url: &str) -> (u16, Value) {
    let reply = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

/// Polls `url` until it answers `want` (at most 20 s); returns the body.
async fn until(url: &str, want: u16) -> Value {
    until_report(url, want, |_| true).await
}

/// Polls `url` until it answers `want` with a report `accept` takes (checks run on their
/// own schedules, so one may fail a round before another).
async fn until_report(url: &str, want: u16, accept: impl Fn(&Value) -> bool) -> Value {
    let mut last = (0, Value::Null);
    for _ in 0..400 {
        last = get(url).await;
        if last.0 == want && accept(&last.1) {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered {want} as expected; last {} {}", last.0, last.1);
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

async fn metrics_are_served_apart_from_the_client_api(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    alice.get("/_matrix/client/v3/account/whoami").await.ok();
    for gateway in server.gateway_urls() {
        let reply = reqwest::get(format!("{gateway}/metrics")).await.unwrap();
        assert_eq!(reply.status(), 404, "no /metrics on the client API port");
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["errcode"], "M_UNRECOGNIZED", "{body}");
    }
    // Every node, whatever its roles, serves metrics on its operations port.
    for node in server.node_names() {
        let reply = reqwest::get(format!("{}/metrics", server.ops_url(&node))).await.unwrap();
        assert_eq!(reply.status(), 200, "{node}");
        let text = reply.text().await.unwrap();
        assert!(
            text.lines().any(|l| l.starts_with("trellis_http_requests_total")
                && l.contains("route=\"/_matrix/client/v3/account/whoami\"")),
            "{node}: request counts on the operations port:\n{text}"
        );
    }
}

async fn every_node_is_live_and_ready(server: TestServer) {
    for node in server.node_names() {
        let ops = server.ops_url(&node);
        let ready = until(&format!("{ops}/health/ready"), 200).await;
        assert_eq!(ready["status"], "ready", "{node}: {ready}");
        assert_eq!(get(&format!("{ops}/health/live")).await.0, 200, "{node}");
        let gateway = node.starts_with("gateway");
        if !gateway {
            assert_eq!(check(&ready, "database")["ok"], true, "{node}: {ready}");
        }
        match server.mode {
            Mode::Monolith => assert_eq!(check(&ready, "event_writer_lock")["ok"], true),
            // Split mode: the bus is Redis; a gateway checks every service it calls.
            Mode::Split if gateway => {
                for called in ["auth", "rooms", "media", "sync"] {
                    assert_eq!(check(&ready, called)["ok"], true, "{node}: {ready}");
                }
            }
            // Media has no part in the bus; auth, rooms and sync talk to Redis.
            Mode::Split if node == "media" => {}
            Mode::Split => assert_eq!(check(&ready, "redis")["ok"], true, "{node}: {ready}"),
        }
    }
}

async fn a_draining_node_is_not_ready_but_serves(server: TestServer) {
    let node = match server.mode {
        Mode::Monolith => "monolith",
        Mode::Split => "gateway-0",
    };
    let ops = server.ops_url(node);
    until(&format!("{ops}/health/ready"), 200).await;
    server.drain(node);
    let (status, report) = get(&format!("{ops}/health/ready")).await;
    assert_eq!((status, report["status"].as_str()), (503, Some("draining")), "{report}");
    assert_eq!(get(&format!("{ops}/health/live")).await.0, 200, "draining is not dying");
    // It still answers what it is sent while load balancers take it out.
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    assert_eq!(alice.get("/_matrix/client/v3/account/whoami").await.ok()["user_id"], "@alice:localhost");
    // Later rounds of checks keep it not ready.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(&format!("{ops}/health/ready")).await.0, 503);
}

/// Split mode: each service node's gRPC health service answers SERVING, overall and for each
/// service it carries; a draining sync worker answers NOT_SERVING, and the gateway whose only
/// worker it is becomes not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_follows_readiness() {
    let server = TestServer::split().await;
    let carried = [
        ("auth", vec!["trellis.auth.v1.Auth", "trellis.keys.v1.Keys"]),
        ("rooms", vec!["trellis.rooms.v1.Rooms"]),
        ("media", vec!["trellis.media.v1.Media"]),
        ("sync-0", vec!["trellis.sync.v1.Sync"]),
        ("sync-1", vec!["trellis.sync.v1.Sync"]),
    ];
    for (node, services) in &carried {
        until(&format!("{}/health/ready", server.ops_url(node)), 200).await;
        for service in std::iter::once("").chain(services.iter().copied()) {
            let status = server.grpc_health(node, service).await.unwrap();
            assert_eq!(status, ServingStatus::Serving, "{node} {service:?}");
        }
    }
    let other = server.grpc_health("auth", "trellis.rooms.v1.Rooms").await;
    assert!(other.unwrap_err().contains("not found"), "a service the node does not carry is unknown");

    until(&format!("{}/health/ready", server.ops_url("gateway-0")), 200).await;
    server.drain("sync-0");
    let mut status = ServingStatus::Unknown;
    for _ in 0..200 {
        status = server.grpc_health("sync-0", "trellis.sync.v1.Sync").await.unwrap();
        if status == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, ServingStatus::NotServing);
    let report = until(&format!("{}/health/ready", server.ops_url("gateway-0")), 503).await;
    assert_eq!(check(&report, "sync")["ok"], false, "{report}");
    // gateway-1's worker is sync-1: it stays ready.
    assert_eq!(get(&format!("{}/health/ready", server.ops_url("gateway-1"))).await.0, 200);
    server.stop().await;
}

/// Split mode: a gateway is not ready while a service it calls is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_is_not_ready_without_the_services_it_calls() {
    let mut server = TestServer::split().await;
    let ready = format!("{}/health/ready", server.ops_url("gateway-0"));
    until(&ready, 200).await;
    server.kill("auth").await;
    let report = until(&ready, 503).await;
    assert_eq!(check(&report, "auth")["ok"], false, "{report}");
    assert_eq!(check(&report, "rooms")["ok"], true, "{report}");
    server.stop().await;
}

async fn database_outage(mode: Mode) {
    let server = TestServer::with_database_proxy(mode).await;
    let node = match mode {
        Mode::Monolith => "monolith",
        Mode::Split => "auth",
    };
    let ready = format!("{}/health/ready", server.ops_url(node));
    until(&ready, 200).await;
    server.cut_database();
    let report = until(&ready, 503).await;
    assert_eq!(report["status"], "not_ready");
    assert_eq!(check(&report, "database")["ok"], false, "{report}");
    if mode == Mode::Split {
        // A gateway's auth service is not serving: the gateway is not ready either.
        let url = format!("{}/health/ready", server.ops_url("gateway-0"));
        until_report(&url, 503, |r| check(r, "auth")["ok"] == false).await;
    }
    server.restore_database();
    let writer = match mode {
        Mode::Monolith => "monolith",
        Mode::Split => {
            // The auth node holds no lock: it is ready again once PostgreSQL answers.
            until(&ready, 200).await;
            "rooms"
        }
    };
    // The event writer lost the session that held its lock: a restart is the cure.
    let live = until(&format!("{}/health/live", server.ops_url(writer)), 503).await;
    assert_eq!(check(&live, "event_writer_lock")["ok"], false, "{live}");
    server.stop().await;
}

mod database_outage {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn monolith() {
        super::database_outage(super::Mode::Monolith).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn split() {
        super::database_outage(super::Mode::Split).await;
    }
}
