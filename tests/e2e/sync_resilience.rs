//! Sync workers scale out without losing anything: a worker killed mid-stream (the client
//! retries its token elsewhere) and Redis restarted mid-stream (long-polls fall back to
//! PostgreSQL) — every message still arrives exactly once.

use std::{collections::HashSet, time::Duration};

use trellis_testkit::{Client, TestServer, enc};

/// Sends `n` numbered messages, paced (the pace is the load the test runs under); the
/// receiver counts those sent so far.
fn send_paced(
    sender: Client,
    room: String,
    n: usize,
    gap: Duration,
) -> (tokio::task::JoinHandle<()>, tokio::sync::watch::Receiver<usize>) {
    let (sent, count) = tokio::sync::watch::channel(0);
    let task = tokio::spawn(async move {
        for i in 0..n {
            sender.send_text(&room, &format!("p{i}"), &i.to_string()).await;
            sent.send_replace(i + 1);
            tokio::time::sleep(gap).await;
        }
    });
    (task, count)
}

/// Waits until `at_least` of the paced messages were sent: the stream is under way.
async fn mid_stream(mut sent: tokio::sync::watch::Receiver<usize>, at_least: usize) {
    sent.wait_for(|n| *n >= at_least).await.expect("the sender runs");
}

/// Long-polls through `base` until all `n` messages arrived, retrying a failed poll with the
/// same token through `fallback`; returns the bodies in arrival order.
async fn read_all(reader: &Client, base: &str, fallback: &str, room: &str, since: String, n: usize) -> Vec<String> {
    let mut since = since;
    let mut got = Vec::new();
    let mut via = base.to_owned();
    for _ in 0..1000 {
        if got.len() >= n {
            break;
        }
        let path = format!("/_matrix/client/v3/sync?timeout=5000&since={}", enc(&since));
        let reply = reader.via(&via).get(&path).await;
        if reply.status != 200 {
            // The worker behind this gateway is gone: same token, another way in.
            assert!(reply.status >= 500, "unexpected refusal: {}", reply.body);
            via = fallback.to_owned();
            continue;
        }
        for e in reply.body["rooms"]["join"][room]["timeline"]["events"].as_array().cloned().unwrap_or_default() {
            if e["type"] == "m.room.message" {
                got.push(e["content"]["body"].as_str().unwrap().to_owned());
            }
        }
        since = reply.body["next_batch"].as_str().unwrap().to_owned();
    }
    got
}

fn assert_exactly_once(got: &[String], n: usize) {
    let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "duplicates in {got:?}");
    assert_eq!(got, expected.as_slice(), "every message exactly once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_worker_killed_mid_stream_loses_nothing() {
    let mut server = TestServer::split().await;
    let (alice, bob, room) = server.pair().await;
    let since = alice.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let (to_worker_1, to_worker_0) = (server.urls[1].clone(), server.urls[0].clone());
    let (sender, sent) = send_paced(bob, room.clone(), 40, Duration::from_millis(50));
    let reader = {
        let alice = alice.clone();
        let room = room.clone();
        tokio::spawn(async move { read_all(&alice, &to_worker_1, &to_worker_0, &room, since, 40).await })
    };
    mid_stream(sent, 10).await;
    server.kill("sync-1").await;
    sender.await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("reader finished").unwrap();
    assert_exactly_once(&got, 40);

    // A gateway pooling both workers fails over by itself.
    let pooled = server.pooled_url.clone().unwrap();
    let since = alice.via(&pooled).sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let bob2 = {
        let mut c = server.client();
        c.login("bob", "pw").await;
        c
    };
    bob2.send_text(&room, "after", "after the crash").await;
    let body = alice.via(&pooled).sync(Some(&since), None, 5_000).await;
    assert!(body.to_string().contains("after the crash"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_stream_loses_nothing() {
    let mut server = TestServer::split_private_redis().await;
    let (alice, bob, room) = server.pair().await;
    let since = alice.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let (a, b) = (server.urls[0].clone(), server.urls[1].clone());
    let (sender, sent) = send_paced(bob, room.clone(), 40, Duration::from_millis(50));
    let reader = {
        let alice = alice.clone();
        let room = room.clone();
        tokio::spawn(async move { read_all(&alice, &a, &b, &room, since, 40).await })
    };
    mid_stream(sent, 10).await;
    server.restart_redis(Duration::from_millis(800)).await;
    sender.await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("reader finished").unwrap();
    assert_exactly_once(&got, 40);
}
