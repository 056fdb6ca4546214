//! The chaos scenario's clients: senders that retry one transaction ID until it is accepted,
//! receivers that long-poll `/sync` from their own `next_batch` and post read receipts, and a
//! media client that uploads and downloads; every one fails over between the gateways on a
//! connection error, timeout or 5xx, and every attempt is logged with its time.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{sync::Semaphore, time::Instant};

use crate::{
    client::{Failure, Http, User, enc, sync_path},
    sync_body::SyncBody,
};

/// How an attempt ended, as a client counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Ok,
    /// A 5xx answer.
    Server,
    /// No answer: refused, reset or timed out.
    Connection,
    /// A 4xx answer.
    Client,
}

impl Class {
    pub fn of(f: &Failure) -> Class {
        if f.kind.contains(" http 5") {
            Class::Server
        } else if f.kind.contains(" http ") {
            Class::Client
        } else {
            Class::Connection
        }
    }
}

/// Every attempt, acceptance and delivery, in seconds since the start of the run.
#[derive(Default)]
pub struct Log {
    pub attempts: Vec<(f64, &'static str, Class, String)>,
    /// Accepted messages: (id, first attempt, accepted).
    pub sent: Vec<(u64, f64, f64)>,
    /// Messages given up on.
    pub failed: Vec<u64>,
    /// Per receiver: (id, delivered).
    pub delivered: Vec<Vec<(u64, f64)>>,
    pub limited: u64,
    pub media_ok: u64,
    pub media_mismatch: u64,
}

/// What all clients share.
pub struct Shared {
    pub http: Http,
    pub urls: Vec<String>,
    pub start: Instant,
    pub run_id: String,
    pub log: Mutex<Log>,
}

impl Shared {
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn note(&self, op: &'static str, result: &Result<bytes::Bytes, Failure>) {
        let (class, kind) = match result {
            Ok(_) => (Class::Ok, String::new()),
            Err(f) => (Class::of(f), f.kind.clone()),
        };
        let t = self.now();
        self.log.lock().expect("log").attempts.push((t, op, class, kind));
    }
}

/// One user's view of the gateways: the one it uses now, switched on failure.
pub struct Client {
    pub user: User,
    current: AtomicUsize,
}

impl Client {
    pub fn new(user: User, first: usize) -> Client {
        Client { user, current: AtomicUsize::new(first) }
    }

    /// One request on the current gateway.
    async fn call(
        &self,
        s: &Shared,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<bytes::Bytes, Failure> {
        self.attempt(s, op, path, |url| async move {
            s.http.call(op, method, &url, Some(&self.user.token), body, timeout).await
        })
        .await
    }

    /// One attempt, `request` on the URL of `path` at the current gateway, logged; a failure
    /// that is not the client's fault moves this client to the next gateway.
    async fn attempt<F, Fut>(
        &self,
        s: &Shared,
        op: &'static str,
        path: &str,
        request: F,
    ) -> Result<bytes::Bytes, Failure>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<bytes::Bytes, Failure>>,
    {
        let i = self.current.load(Ordering::Relaxed);
        let result = request(format!("{}{path}", s.urls[i % s.urls.len()])).await;
        s.note(op, &result);
        if let Err(f) = &result
            && Class::of(f) != Class::Client
        {
            let _ = self.current.compare_exchange(i, i + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
        result
    }

    /// Retries until accepted, a 4xx other than 429, or `give_up`.
    async fn retrying(
        &self,
        s: &Shared,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        give_up: Duration,
    ) -> Result<bytes::Bytes, Failure> {
        let deadline = Instant::now() + give_up;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.call(s, op, method.clone(), path, body, None).await {
                Ok(b) => return Ok(b),
                Err(f) if f.is_rate_limited() && Instant::now() < deadline => {
                    tokio::time::sleep(f.retry_after.unwrap_or(backoff)).await;
                }
                Err(f) if Class::of(&f) == Class::Client || Instant::now() >= deadline => return Err(f),
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Sends `rate` messages a second round-robin into `rooms` until `stop`, each retried with
/// its transaction ID until accepted (so a retry after a lost answer is not a second event).
pub async fn sender(
    s: Arc<Shared>,
    c: Arc<Client>,
    index: u64,
    rooms: Arc<Vec<String>>,
    rate: f64,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(64));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut tasks = tokio::task::JoinSet::new();
    for seq in 0u64.. {
        tick.tick().await;
        if *stop.borrow() {
            break;
        }
        let Ok(permit) = limit.clone().acquire_owned().await else { break };
        let id = index * 1_000_000 + seq;
        let (s, c, room) = (s.clone(), c.clone(), rooms[(seq as usize) % rooms.len()].clone());
        tasks.spawn(async move {
            let first = s.now();
            let content = json!({"msgtype": "m.text", "body": format!("chaos {id}"), "lt_run": s.run_id, "lt_seq": id});
            let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}-{id}", enc(&room), s.run_id);
            let r = c.retrying(&s, "send", Method::PUT, &path, Some(&content), Duration::from_secs(120)).await;
            let at = s.now();
            let mut log = s.log.lock().expect("log");
            match r {
                Ok(_) => log.sent.push((id, first, at)),
                Err(_) => log.failed.push(id),
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    content: Value,
}

/// Long-polls from `since` until `stop`, logging this run's messages; after a response
/// with messages, at most once a second, marks the last one read.
pub async fn receiver(
    s: Arc<Shared>,
    c: Arc<Client>,
    slot: usize,
    filter_id: String,
    mut since: String,
    poll_ms: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_receipt = Instant::now();
    let hard = Duration::from_millis(poll_ms) + Duration::from_secs(10);
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        let path = sync_path(Some(&since), &filter_id, poll_ms);
        let result = tokio::select! {
            r = c.call(&s, "sync", Method::GET, &path, None, Some(hard)) => r,
            _ = stop.changed() => break,
        };
        let body: SyncBody<Event> = match result.map(|b| serde_json::from_slice(&b)) {
            Ok(Ok(body)) => body,
            _ => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let at = s.now();
        let mut last = None;
        {
            let mut log = s.log.lock().expect("log");
            for (room, joined) in &body.rooms.join {
                log.limited += u64::from(joined.timeline.limited);
                for e in &joined.timeline.events {
                    if e.content["lt_run"].as_str() != Some(&s.run_id) {
                        continue;
                    }
                    if let Some(id) = e.content["lt_seq"].as_u64() {
                        log.delivered[slot].push((id, at));
                        last = Some((room.clone(), e.event_id.clone()));
                    }
                }
            }
        }
        if let Some((room, event)) = last
            && last_receipt.elapsed() >= Duration::from_secs(1)
        {
            last_receipt = Instant::now();
            let (s, c) = (s.clone(), c.clone());
            tokio::spawn(async move {
                let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&event));
                let _ = c.retrying(&s, "receipt", Method::POST, &path, Some(&json!({})), Duration::from_secs(30)).await;
            });
        }
        since = body.next_batch;
    }
}

/// Uploads 16 KiB once a second and downloads it back until `stop`, checking the bytes.
pub async fn media(s: Arc<Shared>, c: Arc<Client>, stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for round in 0u64.. {
        tick.tick().await;
        if *stop.borrow() {
            break;
        }
        let data: Vec<u8> = (0..16_384u64).map(|i| ((i * 31 + round * 7) % 251) as u8).collect();
        let Ok(uri) = upload(&s, &c, &data).await else { continue };
        let Some((server, id)) = uri.strip_prefix("mxc://").and_then(|r| r.split_once('/')) else { continue };
        let path = format!("/_matrix/client/v1/media/download/{server}/{id}");
        let got = c.retrying(&s, "download", Method::GET, &path, None, Duration::from_secs(30)).await;
        let mut log = s.log.lock().expect("log");
        match got {
            Ok(bytes) if bytes[..] == data[..] => log.media_ok += 1,
            Ok(_) => log.media_mismatch += 1,
            Err(_) => {}
        }
    }
}

/// One upload, retried with failover (a retried upload may store a second copy; that is
/// not an error); the `content_uri`.
async fn upload(s: &Shared, c: &Client, data: &[u8]) -> Result<String, ()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let path = "/_matrix/media/v3/upload?filename=chaos.bin";
    loop {
        match c
            .attempt(s, "upload", path, |url| async move { s.http.upload(&url, &c.user.token, data.to_vec()).await })
            .await
        {
            Ok(b) => {
                let v: Value = serde_json::from_slice(&b).map_err(|_| ())?;
                return v["content_uri"].as_str().map(str::to_owned).ok_or(());
            }
            Err(f) if Class::of(&f) == Class::Client && !f.is_rate_limited() => return Err(()),
            Err(_) if Instant::now() >= deadline => return Err(()),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
