//! Elastic sync workers: under a steady stream of messages, the deployment goes from one sync
//! worker to three and back to one, then replaces its last worker as a rolling update does;
//! every receiver long-polling through the gateway gets every message exactly once, in order,
//! and never sees an error.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use trellis_testkit::{Client, TestServer, timeline_bodies};

/// Long-polls from a first sync until `last` arrives; every body, in order.
async fn receive(client: Client, room: String, last: String) -> Vec<String> {
    let first = client.sync(None, None, 0).await;
    let mut since = first["next_batch"].as_str().expect("next_batch").to_owned();
    let mut got = timeline_bodies(&first, &room);
    while !got.contains(&last) {
        let path = format!("/_matrix/client/v3/sync?timeout=1000&since={}", trellis_testkit::enc(&since));
        let reply = client.get(&path).await;
        assert_eq!(reply.status, 200, "a long-poll failed while workers changed: {}", reply.body);
        got.extend(timeline_bodies(&reply.body, &room));
        since = reply.body["next_batch"].as_str().expect("next_batch").to_owned();
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_come_and_go_under_load_without_loss_or_duplicates() {
    let mut server = TestServer::split_elastic(1).await;
    let (alice, _bob, room) = server.pair().await;
    let mut receivers = Vec::new();
    for name in ["carol", "dave", "erin", "frank"] {
        let c = server.user(name).await;
        c.join(&room).await;
        receivers.push(c);
    }
    let receivers: Vec<_> =
        receivers.into_iter().map(|c| tokio::spawn(receive(c, room.clone(), "last".to_owned()))).collect();

    // A steady sender until told to stop.
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let (alice, room, sending) = (alice.clone(), room.clone(), sending.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut i = 0;
            while sending.load(Ordering::Acquire) {
                let body = format!("m{i}");
                alice.send_text(&room, &format!("t{i}"), &body).await;
                sent.push(body);
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    };

    // 1 → 2 → 3 workers, back down to 1, then a rolling replacement of the last one.
    let a = "sync-0".to_owned();
    let b = server.add_sync_worker().await;
    server.until_metric("trellis_gateway_sync_workers", 2.0).await;
    let c = server.add_sync_worker().await;
    server.until_metric("trellis_gateway_sync_workers", 3.0).await;
    server.stop_gracefully(&a, 2).await;
    server.stop_gracefully(&b, 1).await;
    let d = server.add_sync_worker().await;
    server.until_metric("trellis_gateway_sync_workers", 2.0).await;
    server.stop_gracefully(&c, 1).await;
    assert_eq!(server.node_names().iter().filter(|n| n.starts_with("sync-")).collect::<Vec<_>>(), [&d]);

    sending.store(false, Ordering::Release);
    let mut expected = sender.await.unwrap();
    alice.send_text(&room, "last", "last").await;
    expected.push("last".to_owned());
    assert!(expected.len() > 10, "the load ran throughout: {} messages", expected.len());
    for receiver in receivers {
        let got = tokio::time::timeout(Duration::from_secs(60), receiver).await.expect("receivers finish").unwrap();
        assert_eq!(got, expected, "every message exactly once, in order");
    }
}
