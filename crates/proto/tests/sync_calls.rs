//! Long-polls multiplexed on one stream between a gateway's client and a worker: every call
//! gets its own answer over a single stream, errors cross as they would on a unary call, a
//! call whose caller gives up stops on the worker, a stopping worker answers what it holds
//! and refuses the rest, a dead worker's calls fail instead of waiting, and a worker of an
//! older release is called one call at a time.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use futures_util::future::join_all;
use tokio::time::{sleep, timeout};
use tonic::service::Routes;
use trellis_core::{ErrorCode, shutdown::Shutdown};
use trellis_proto::{status::is_unavailable, sync::*};

const STREAM: &str = "/trellis.sync.v1.Sync/SyncCalls";
const UNARY: &str = "/trellis.sync.v1.Sync/Sync";

/// An incremental long-poll (initial syncs take a unary call of their own).
fn call(user: &str, timeout_ms: u64) -> SyncRequest {
    SyncRequest { user_id: user.to_owned(), since: Some("s1".into()), timeout_ms, ..Default::default() }
}

/// A worker serving a probe on a free port, and the gRPC requests it has seen per path.
struct Worker {
    url: String,
    server: tokio::task::JoinHandle<()>,
    requests: Arc<Mutex<HashMap<String, usize>>>,
}

impl Worker {
    async fn start(probe: Arc<common::Probe>, stop: Shutdown) -> Worker {
        Worker::serve(probe, stop, false).await
    }

    /// A worker of a release from before `SyncCalls`.
    async fn old(probe: Arc<common::Probe>) -> Worker {
        Worker::serve(probe, Shutdown::never(), true).await
    }

    async fn serve(probe: Arc<common::Probe>, stop: Shutdown, without_streams: bool) -> Worker {
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let seen = requests.clone();
        let count = move |req: axum::extract::Request, next: axum::middleware::Next| {
            let seen = seen.clone();
            async move {
                let path = req.uri().path().to_owned();
                *seen.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                if without_streams && path == STREAM {
                    return tonic::Status::unimplemented("").into_http();
                }
                next.run(req).await
            }
        };
        let routes = Routes::new(SyncGrpcServer::new(probe).until(stop.clone()).into_service());
        let routes = Routes::from(routes.into_axum_router().layer(axum::middleware::from_fn(count)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { trellis_proto::server::serve(listener, routes, stop).await.unwrap() });
        Worker { url, server, requests }
    }

    fn requests(&self, path: &str) -> usize {
        self.requests.lock().unwrap().get(path).copied().unwrap_or(0)
    }
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
async fn concurrent_calls_share_one_stream_and_each_gets_its_own_answer() {
    let worker = Worker::start(common::Probe::new(Shutdown::never()), Shutdown::never()).await;
    let client = SyncGrpcClient::connect(&worker.url).unwrap();
    // Answers come back in a different order from the calls: each must still find its caller.
    let calls = (0..300u64).map(|i| {
        let client = client.clone();
        async move { (i, client.sync(call(&format!("echo:{i}"), (i * 7) % 23)).await) }
    });
    for (i, answer) in join_all(calls).await {
        assert_eq!(answer.unwrap().body_json, i.to_string());
    }
    assert_eq!((worker.requests(STREAM), worker.requests(UNARY)), (1, 0), "300 calls, one stream");

    // An initial sync (no `since`) takes a call of its own.
    let initial = SyncRequest { user_id: "echo:initial".into(), ..Default::default() };
    assert_eq!(client.sync(initial).await.unwrap().body_json, "initial");
    assert_eq!((worker.requests(STREAM), worker.requests(UNARY)), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_panics_cross_the_stream_and_it_survives_them() {
    let worker = Worker::start(common::Probe::new(Shutdown::never()), Shutdown::never()).await;
    let client = SyncGrpcClient::connect(&worker.url).unwrap();

    let err = client.sync(call("forbidden", 0)).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::Forbidden, 403));
    assert_eq!(err.client_body()["error"], "not you");

    let err = timeout(Duration::from_secs(5), client.sync(call("panic", 0))).await.expect("answered").unwrap_err();
    assert!(err.is_internal(), "a panicking call is answered as an internal error: {err:?}");
    assert!(!err.client_body().to_string().contains("probe"), "the panic's text stays on the worker");

    assert_eq!(client.sync(call("echo:still here", 0)).await.unwrap().body_json, "still here");
    assert_eq!(worker.requests(STREAM), 1, "all on the same stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_caller_gives_up_stops_on_the_worker() {
    let probe = common::Probe::new(Shutdown::never());
    let worker = Worker::start(probe.clone(), Shutdown::never()).await;
    let client = SyncGrpcClient::connect(&worker.url).unwrap();

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
    let stopping = Worker::start(probe.clone(), stop).await;
    let live = Worker::start(common::Probe::new(Shutdown::never()), Shutdown::never()).await;
    let client = Arc::new(SyncGrpcClient::connect(&stopping.url).unwrap());

    let sync = |user: &'static str| {
        let client = client.clone();
        tokio::spawn(async move { client.sync(call(user, 0)).await })
    };
    let (held, stubborn) = (sync("hold"), sync("stubborn"));
    eventually("both calls are held", || probe.holding.load(Ordering::SeqCst) == 2).await;
    trigger.trigger();
    let answer = timeout(Duration::from_secs(5), held).await.expect("the held call was answered").unwrap();
    assert_eq!(answer.unwrap().body_json, "held");

    // The stream stays open for the call still running, but takes no new ones.
    let err = client.sync(call("echo:late", 0)).await.unwrap_err();
    assert!(is_unavailable(&err), "a stopping worker refuses new calls as unavailable: {err:?}");
    assert_eq!(stopping.requests(STREAM), 1, "refused on the open stream");
    probe.release();
    assert_eq!(stubborn.await.unwrap().unwrap().body_json, "released");

    // The client still holds its connection, yet the server's graceful stop completes.
    timeout(Duration::from_secs(5), stopping.server).await.expect("the gRPC server stopped").unwrap();

    // The pool takes an unavailable worker's calls elsewhere.
    let live: Arc<dyn SyncService> = Arc::new(SyncGrpcClient::connect(&live.url).unwrap());
    let workers = vec![
        PoolWorker { name: "stopping".into(), service: client },
        PoolWorker { name: "live".into(), service: live },
    ];
    let pool = SyncPool::new(workers, trellis_core::config::SyncBalance::RoundRobin);
    for i in 0..4 {
        assert_eq!(pool.sync(call(&format!("echo:{i}"), 0)).await.unwrap().body_json, i.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_calls_fail_and_a_restarted_one_is_reached_again() {
    let probe = common::Probe::new(Shutdown::never());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    // The worker runs on a runtime of its own, so that it can die with every task and socket.
    let doomed = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let routes = Routes::new(SyncGrpcServer::new(probe.clone()).into_service());
    doomed.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        trellis_proto::server::serve(listener, routes, Shutdown::never()).await.unwrap();
    });
    let client = Arc::new(SyncGrpcClient::connect(&format!("http://{addr}")).unwrap());
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.sync(call("hold", 0)).await }
    });
    eventually("the call is held", || probe.holding.load(Ordering::SeqCst) == 1).await;
    doomed.shutdown_background();
    let err = timeout(Duration::from_secs(5), held).await.expect("the call failed rather than waiting").unwrap();
    assert!(is_unavailable(&err.unwrap_err()), "a dead worker is unavailable");

    // A worker back on the same address is reached again (the first try may still meet the
    // broken connection).
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let routes = Routes::new(SyncGrpcServer::new(common::Probe::new(Shutdown::never())).into_service());
    tokio::spawn(trellis_proto::server::serve(listener, routes, Shutdown::never()));
    let mut answer = None;
    for _ in 0..50 {
        match client.sync(call("echo:back", 0)).await {
            Ok(a) => {
                answer = Some(a.body_json);
                break;
            }
            Err(e) => assert!(is_unavailable(&e), "only unavailable while reconnecting: {e:?}"),
        }
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer.as_deref(), Some("back"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_call_streams_gets_one_call_each() {
    let worker = Worker::old(common::Probe::new(Shutdown::never())).await;
    let client = SyncGrpcClient::connect(&worker.url).unwrap();
    assert_eq!(client.sync(call("echo:a", 0)).await.unwrap().body_json, "a");
    assert_eq!(client.sync(call("echo:b", 0)).await.unwrap().body_json, "b");
    assert_eq!((worker.requests(STREAM), worker.requests(UNARY)), (1, 2), "asked for a stream once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_a_worker_that_leaves_the_pool_moves_to_the_next_one() {
    // `hung` holds every `hold` call (a paused or partitioned worker); `answering` answers
    // them at once.
    let hung = common::Probe::new(Shutdown::never());
    let (trigger, stopped) = trellis_core::shutdown::channel();
    trigger.trigger();
    let answering = common::Probe::new(stopped);
    let worker = |name: &str, probe: &Arc<common::Probe>| PoolWorker { name: name.into(), service: probe.clone() };
    let pool = Arc::new(SyncPool::new(
        vec![worker("hung", &hung), worker("answering", &answering)],
        trellis_core::config::SyncBalance::RoundRobin,
    ));
    // Round robin starts with the first worker.
    let held = tokio::spawn({
        let pool = pool.clone();
        async move { pool.sync(call("hold", 0)).await }
    });
    eventually("the call is held on the hung worker", || hung.holding.load(Ordering::SeqCst) == 1).await;
    // Its registration lapses: the gateway's directory drops it from the pool.
    pool.set_workers(vec![worker("answering", &answering)]);
    let answer = timeout(Duration::from_secs(5), held).await.expect("moved, not left waiting").unwrap();
    assert_eq!(answer.unwrap().body_json, "held", "answered by the worker still in the pool");
    eventually("the hung worker's call was dropped", || hung.holding.load(Ordering::SeqCst) == 0).await;
}
