//! Long-polls multiplexed on one stream between a gateway's client and a worker: every call
//! gets its own answer, errors cross as they would on a unary call, a call whose caller gives
//! up stops on the worker, and a stopping worker answers what it holds, refuses the rest and
//! lets its gRPC server stop.

mod common;

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use futures_util::future::join_all;
use tokio::time::{sleep, timeout};
use trellis_core::{ErrorCode, shutdown::Shutdown};
use trellis_proto::sync::*;

fn call(user: &str, timeout_ms: u64) -> SyncRequest {
    SyncRequest { user_id: user.to_owned(), timeout_ms, ..Default::default() }
}

/// A worker serving `probe` on a free port until `stop`; returns its URL and server task.
async fn worker(probe: Arc<common::Probe>, stop: Shutdown) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let routes = tonic::service::Routes::new(SyncGrpcServer::new(probe).until(stop.clone()).into_service());
    let server = tokio::spawn(async move { trellis_proto::server::serve(listener, routes, stop).await.unwrap() });
    (url, server)
}

/// Waits up to 5 s for `cond`.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_each_get_their_own_answer() {
    let (url, _server) = worker(common::Probe::new(Shutdown::never()), Shutdown::never()).await;
    let client = SyncGrpcClient::connect(&url).unwrap();
    // Answers come back in a different order from the calls: each must still find its caller.
    let calls = (0..300u64).map(|i| {
        let client = client.clone();
        async move { (i, client.sync(call(&format!("echo:{i}"), (i * 7) % 23)).await) }
    });
    for (i, answer) in join_all(calls).await {
        assert_eq!(answer.unwrap().body_json, i.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_panics_cross_like_a_unary_call_and_the_stream_survives_them() {
    let (url, _server) = worker(common::Probe::new(Shutdown::never()), Shutdown::never()).await;
    let client = SyncGrpcClient::connect(&url).unwrap();

    let err = client.sync(call("forbidden", 0)).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::Forbidden, 403));
    assert_eq!(err.client_body()["error"], "not you");

    let err = timeout(Duration::from_secs(5), client.sync(call("panic", 0))).await.expect("answered").unwrap_err();
    assert!(err.is_internal(), "a panicking call is answered as an internal error: {err:?}");
    assert!(!err.client_body().to_string().contains("probe"), "the panic's text stays on the worker");

    assert_eq!(client.sync(call("echo:still here", 0)).await.unwrap().body_json, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_caller_gives_up_stops_on_the_worker() {
    let probe = common::Probe::new(Shutdown::never());
    let (url, _server) = worker(probe.clone(), Shutdown::never()).await;
    let client = SyncGrpcClient::connect(&url).unwrap();

    let gave_up = timeout(Duration::from_millis(300), client.sync(call("hold", 0))).await;
    assert!(gave_up.is_err(), "a held call does not answer by itself");
    // The call was running on the worker; the cancel that followed the caller's drop ends it.
    eventually("the worker dropped the abandoned call", || probe.holding.load(Ordering::SeqCst) == 0).await;
    assert_eq!(probe.traces.lock().unwrap().len(), 1, "the held call reached the worker");
    assert_eq!(client.sync(call("echo:next", 0)).await.unwrap().body_json, "next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_answers_what_it_holds_refuses_new_calls_and_stops() {
    let (trigger, stop) = trellis_core::shutdown::channel();
    let probe = common::Probe::new(stop.clone());
    let (stopping_url, server) = worker(probe.clone(), stop).await;
    let (live_url, _live) = worker(common::Probe::new(Shutdown::never()), Shutdown::never()).await;
    let stopping = Arc::new(SyncGrpcClient::connect(&stopping_url).unwrap());

    let held = tokio::spawn({
        let stopping = stopping.clone();
        async move { stopping.sync(call("hold", 0)).await }
    });
    eventually("the call is held", || probe.holding.load(Ordering::SeqCst) == 1).await;
    trigger.trigger();
    let answer = timeout(Duration::from_secs(5), held).await.expect("the held call was answered").unwrap();
    assert_eq!(answer.unwrap().body_json, "held");

    // The client still holds its connection, yet the server's graceful stop completes.
    timeout(Duration::from_secs(5), server).await.expect("the gRPC server stopped").unwrap();
    let err = stopping.sync(call("echo:late", 0)).await.unwrap_err();
    assert!(trellis_proto::status::is_unavailable(&err), "a stopped worker is unavailable: {err:?}");

    // The pool takes an unavailable worker's calls elsewhere.
    let live: Arc<dyn SyncService> = Arc::new(SyncGrpcClient::connect(&live_url).unwrap());
    let pool = SyncPool::new(vec![stopping, live], trellis_core::config::SyncBalance::RoundRobin);
    for i in 0..4 {
        assert_eq!(pool.sync(call(&format!("echo:{i}"), 0)).await.unwrap().body_json, i.to_string());
    }
}
