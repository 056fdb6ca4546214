//! The shipped Grafana dashboards and the Prometheus adapter rules query only metrics that
//! Trellis exports: every name is recorded somewhere in the code, and those that a
//! working split deployment records in ordinary use show up on the operations ports.

use std::{collections::BTreeSet, path::Path, time::Duration};

use trellis_testkit::TestServer;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository root")
}

/// Metric families named in `text` (`trellis_...`, histogram suffixes dropped).
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("trellis_") {
        let start = i + at;
        let end =
            start + text[start..].find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(text.len() - start);
        let preceded = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded {
            let name = &text[start..end];
            let family = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            names.insert(family.to_owned());
        }
        i = end;
    }
    names
}

/// Every metric the dashboards and the adapter rules ask for.
fn queried() -> BTreeSet<String> {
    let dashboards = root().join("deploy/compose/grafana/dashboards");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(&dashboards).expect("dashboards folder") {
        let dashboard: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                names.extend(names_in(target["expr"].as_str().unwrap()));
            }
        }
    }
    let rules = std::fs::read_to_string(root().join("deploy/monitoring/prometheus-adapter-rules.yaml")).unwrap();
    names.extend(names_in(&rules));
    names.extend(names_in(&std::fs::read_to_string(root().join("deploy/base/autoscaling.yaml")).unwrap()));
    names
}

/// Names recorded with `metrics::counter!`, `gauge!` or `histogram!` in the crates' code.
fn recorded() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs = vec![root().join("crates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let code = std::fs::read_to_string(&path).unwrap();
                for kind in ["counter!(\"", "gauge!(\"", "histogram!(\""] {
                    for (at, _) in code.match_indices(kind) {
                        let rest = &code[at + kind.len()..];
                        names.insert(rest[..rest.find('"').unwrap()].to_owned());
                    }
                }
            }
        }
    }
    names
}

#[test]
fn dashboards_query_metrics_the_code_records() {
    let queried = queried();
    assert!(queried.len() >= 10, "dashboards query {queried:?}");
    let recorded = recorded();
    let unknown: Vec<_> = queried.difference(&recorded).collect();
    assert!(unknown.is_empty(), "queried but never recorded: {unknown:?} (recorded: {recorded:?})");
}

/// In split mode, after registering, sending, a woken long-poll and an upload, the metrics
/// the dashboards' main panels need are served by the nodes' operations ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_deployment_exports_what_the_dashboards_show() {
    let server = TestServer::split().await;
    let (alice, bob, room) = server.pair().await;
    let since = bob.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let poll = server.open_long_poll(&bob, &since).await;
    alice.send_text(&room, "t1", "hello").await;
    poll.await.unwrap();
    let upload = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload", server.url()))
        .bearer_auth(alice.token.as_deref().unwrap())
        .header("Content-Type", "text/plain")
        .body("some bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200);

    let everyday = [
        "trellis_http_requests_total",
        "trellis_http_request_duration_seconds",
        "trellis_grpc_server_requests_total",
        "trellis_grpc_server_request_duration_seconds",
        "trellis_sync_open_longpolls",
        "trellis_bus_wakeups_total",
        "trellis_sync_fast_responses_total",
        "trellis_sync_duration_seconds",
        "trellis_db_pool_connections",
        "trellis_db_pool_waiting",
        "trellis_db_pool_max_connections",
        "trellis_events_persisted_total",
        "trellis_media_uploads_total",
    ];
    let queried = queried();
    for name in everyday {
        assert!(queried.contains(name), "{name} is on no dashboard");
    }
    // Pool gauges are sampled with each round of health checks.
    let mut missing = Vec::new();
    for _ in 0..100 {
        let mut served = BTreeSet::new();
        for node in server.node_names() {
            let text = reqwest::get(format!("{}/metrics", server.ops_url(&node))).await.unwrap().text().await.unwrap();
            served.extend(names_in(&text));
        }
        missing = everyday.iter().filter(|n| !served.contains(**n)).collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(missing.is_empty(), "not served: {missing:?}");
    server.stop().await;
}
