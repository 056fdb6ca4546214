//! Connections that hold the server without using it are closed, capped and bounded — silent
//! ones, half-sent heads and bodies, too many from one address, endless keep-alive — while
//! real clients are answered and a long-poll keeps its whole `timeout`.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use trellis_testkit::{Config, TestServer};

both_modes!(configured tight; stalled_connections_are_closed, long_polls_keep_their_timeout, connections_are_capped_per_address, keep_alive_is_bounded);

const HEADER_MS: u64 = 400;
const BODY_MS: u64 = 400;
const IDLE_MS: u64 = 1_000;
const PER_ADDRESS: usize = 16;

fn tight(c: &mut Config) {
    c.http.header_timeout_ms = HEADER_MS;
    c.http.body_timeout_ms = BODY_MS;
    c.http.idle_timeout_ms = IDLE_MS;
    c.http.max_connections_per_address = PER_ADDRESS;
    c.http.max_requests_per_connection = 3;
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.url().trim_start_matches("http://")).await.expect("connect")
}

/// Reads until the server closes; what it sent and how long that took.
async fn until_closed(tcp: &mut TcpStream, started: Instant) -> (String, Duration) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("the server closed the connection");
    (String::from_utf8_lossy(&seen).into_owned(), started.elapsed())
}

async fn stalled_connections_are_closed(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;

    // Connected, and never a byte.
    let started = Instant::now();
    let mut silent = connect(&server).await;
    // Half a request head, trickled a header at a time so it is never silent.
    let mut trickling = connect(&server).await;
    trickling.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let trickle = tokio::spawn(async move {
        let started = Instant::now();
        for i in 0.. {
            if trickling.write_all(format!("X-{i}: y\r\n").as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started.elapsed()
    });
    // A whole head, then half the body it announced.
    let mut half_body = connect(&server).await;
    half_body
        .write_all(b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\":")
        .await
        .unwrap();

    // Real clients are answered all along.
    alice.get("/_matrix/client/v3/account/whoami").await.ok();

    let (_, body_cut) = until_closed(&mut half_body, started).await;
    assert!(body_cut < Duration::from_millis(BODY_MS + 1_500), "a stalled body was cut after {body_cut:?}");
    let trickled = trickle.await.unwrap();
    assert!(trickled < Duration::from_millis(HEADER_MS + 1_500), "a trickled head lasted {trickled:?}");
    let (sent, silent_cut) = until_closed(&mut silent, started).await;
    assert!(sent.is_empty(), "{sent}");
    assert!(
        silent_cut >= Duration::from_millis(IDLE_MS - 100) && silent_cut < Duration::from_millis(IDLE_MS + 1_500),
        "a silent connection was closed after {silent_cut:?}"
    );

    // A kept-alive connection that falls silent after its answer is closed too.
    let mut kept = connect(&server).await;
    kept.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (answer, _) = until_closed(&mut kept, Instant::now()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    alice.get("/_matrix/client/v3/account/whoami").await.ok();
}

async fn long_polls_keep_their_timeout(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let since = alice.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    // Three times the idle timeout, with nothing to say until the end.
    let started = Instant::now();
    let path = format!("/_matrix/client/v3/sync?since={since}&timeout={}", 3 * IDLE_MS);
    alice.get(&path).await.ok();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(3 * IDLE_MS - 100), "the long-poll ended after {waited:?}");
    // And one that is woken by a message is answered at once.
    let room = alice.create_room(json!({})).await;
    let next = alice.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let waiting = {
        let alice = alice.clone();
        tokio::spawn(async move { alice.get(&format!("/_matrix/client/v3/sync?since={next}&timeout=20000")).await })
    };
    // The poll outlasts the idle timeout before it is woken: the sleep is the test.
    tokio::time::sleep(Duration::from_millis(2 * IDLE_MS)).await;
    alice.send_text(&room, "t", "wake up").await;
    assert_eq!(waiting.await.unwrap().status, 200);
}

async fn connections_are_capped_per_address(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    // Hold every place this address has, with requests under way (long-polls).
    let since = alice.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let token = alice.token.clone().unwrap();
    let mut held = Vec::new();
    for _ in 0..PER_ADDRESS {
        let mut tcp = connect(&server).await;
        let poll = format!(
            "GET /_matrix/client/v3/sync?since={since}&timeout=20000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        tcp.write_all(poll.as_bytes()).await.unwrap();
        held.push(tcp);
    }
    // One more is refused at once, with an answer that says why.
    let started = Instant::now();
    let mut extra = connect(&server).await;
    let (answer, took) = until_closed(&mut extra, started).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("M_LIMIT_EXCEEDED"), "{answer}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Places are given back as connections close.
    drop(held);
    let mut fresh = server.client();
    let mut answered = false;
    for _ in 0..100 {
        fresh = server.client();
        fresh.token = Some(token.clone());
        if fresh.get("/_matrix/client/v3/account/whoami").await.status == 200 {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "no place given back: {}", fresh.get("/_matrix/client/v3/account/whoami").await.status);
}

/// One whole answer (head and a `content-length` body) from a kept-alive connection: its head.
async fn answer(tcp: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tcp.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed mid-answer: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length =
                head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned));
            if body.len() >= length.and_then(|l| l.parse().ok()).unwrap_or(0) {
                return head.to_owned();
            }
        }
    }
}

async fn keep_alive_is_bounded(server: TestServer) {
    let mut tcp = connect(&server).await;
    let mut heads = Vec::new();
    for _ in 0..3 {
        tcp.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let head = answer(&mut tcp).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        heads.push(head.to_ascii_lowercase());
    }
    assert!(!heads[1].contains("connection: close"), "{}", heads[1]);
    assert!(heads[2].contains("connection: close"), "the third answer ends keep-alive: {}", heads[2]);
    let (rest, _) = until_closed(&mut tcp, Instant::now()).await;
    assert!(rest.is_empty(), "{rest}");
}
