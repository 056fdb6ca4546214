//! The client-API HTTP server (HTTP/1.1 and h2c, as `axum::serve` serves them), hardened
//! against connections that hold resources without using them: a cap on connections in total
//! and from one client address (past it a connection is answered 503 or 429 and closed), a
//! request head that must be complete within `http.header_timeout_ms` of its first byte, a
//! body that may pause at most `http.body_timeout_ms`, a connection with nothing under way
//! closed after `http.idle_timeout_ms` of silence, and keep-alive ended after
//! `http.max_requests_per_connection` requests. A request in progress is never cut short:
//! a `/sync` long-poll keeps its whole `timeout`.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo, http::HeaderValue};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc},
    time::Instant,
};
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;
use trellis_core::{config::HttpConfig, shutdown::Shutdown};

/// The connection rules of `[http]`.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// `None`: no cap per address (none configured, or every peer is a trusted proxy).
    pub per_address: Option<usize>,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_requests: Option<u64>,
}

impl HttpLimits {
    pub fn from_config(http: &HttpConfig) -> HttpLimits {
        let max_connections = match http.max_connections {
            0 => open_file_limit().map_or(768, |n| (n / 4 * 3).max(64)),
            n => n,
        };
        let per_address =
            (http.max_connections_per_address > 0 && !http.x_forwarded_for).then_some(http.max_connections_per_address);
        HttpLimits {
            max_connections,
            per_address,
            header_timeout: Duration::from_millis(http.header_timeout_ms),
            body_timeout: Duration::from_millis(http.body_timeout_ms),
            idle_timeout: Duration::from_millis(http.idle_timeout_ms),
            max_requests: (http.max_requests_per_connection > 0).then_some(http.max_requests_per_connection),
        }
    }
}

/// The soft limit on open files, where the platform tells it (`/proc/self/limits`).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: Shutdown,
) {
    let limits = Arc::new(limits);
    let admission = Arc::new(Admission::new(&limits));
    tracing::info!(max_connections = limits.max_connections, per_address = ?limits.per_address, "client connections capped");
    // Each connection holds a sender; when all are gone, every connection has ended.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let ticket = match admission.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                metrics::counter!("trellis_http_connections_refused_total", "reason" => refusal.reason()).increment(1);
                refuse(tcp, refusal);
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let conn =
            Connection { app: app.clone(), peer, limits: limits.clone(), tls: tls.clone(), shutdown: shutdown.clone() };
        let open = open.clone();
        tokio::spawn(async move {
            conn.run(tcp).await;
            drop((ticket, open));
        });
    }
    drop(open);
    let _ = all_closed.recv().await;
}

/// Accepting fails when the process is out of file descriptors (or a peer reset before its
/// connection was taken): wait a moment rather than spin.
async fn accept_failed(e: io::Error) {
    let pause = match e.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted => return,
        _ => Duration::from_millis(50),
    };
    tracing::warn!(error = %e, "accepting a connection failed");
    tokio::time::sleep(pause).await;
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Full,
    Address,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Full => "total",
            Refusal::Address => "address",
        }
    }

    /// A complete HTTP answer written before closing, so a client learns why at once.
    fn answer(self) -> &'static [u8] {
        match self {
            Refusal::Full => concat!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 59\r\n",
                "retry-after: 1\r\nconnection: close\r\n\r\n",
                r#"{"errcode":"M_UNKNOWN","error":"Too many open connections"}"#,
            )
            .as_bytes(),
            Refusal::Address => concat!(
                "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: 101\r\n",
                "retry-after: 1\r\nconnection: close\r\n\r\n",
                r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too many connections from this address","retry_after_ms":1000}"#,
            )
            .as_bytes(),
        }
    }
}

/// Writes the refusal if the socket takes it at once, then closes: nothing of ours waits on
/// a connection we did not take.
fn refuse(tcp: TcpStream, refusal: Refusal) {
    let _ = tcp.try_write(refusal.answer());
    drop(tcp);
}

/// Counts open connections, in total and per client address.
struct Admission {
    total: Arc<Semaphore>,
    per_address: Option<(usize, parking_lot::Mutex<HashMap<IpAddr, usize>>)>,
}

/// One admitted connection; its place is given back when it is dropped.
struct Ticket {
    _permit: OwnedSemaphorePermit,
    address: Option<(Arc<Admission>, IpAddr)>,
}

impl Admission {
    fn new(limits: &HttpLimits) -> Admission {
        Admission {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: limits.per_address.map(|n| (n, Default::default())),
        }
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let permit = self.total.clone().try_acquire_owned().map_err(|_| Refusal::Full)?;
        let Some((cap, counts)) = &self.per_address else { return Ok(Ticket { _permit: permit, address: None }) };
        let mut counts = counts.lock();
        let count = counts.entry(ip).or_default();
        if *count >= *cap {
            return Err(Refusal::Address);
        }
        *count += 1;
        Ok(Ticket { _permit: permit, address: Some((self.clone(), ip)) })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some((admission, ip)) = &self.address else { return };
        let Some((_, counts)) = &admission.per_address else { return };
        let mut counts = counts.lock();
        if let Some(count) = counts.get_mut(ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(ip);
            }
        }
    }
}

/// One accepted connection and what it needs to serve requests.
struct Connection {
    app: Router,
    peer: SocketAddr,
    limits: Arc<HttpLimits>,
    /// With `http.tls`: the handshake comes first, within the request-head time.
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: Shutdown,
}

impl Connection {
    async fn run(self, tcp: TcpStream) {
        let activity = Arc::new(Activity::new());
        let watched = Watched { inner: tcp, activity: activity.clone() };
        match self.tls.clone() {
            None => self.serve(TokioIo::new(watched), activity).await,
            Some(acceptor) => {
                let handshake = tokio::time::timeout(self.limits.header_timeout, acceptor.accept(watched));
                match handshake.await {
                    Ok(Ok(tls)) => self.serve(TokioIo::new(tls), activity).await,
                    Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
                    Err(_) => {
                        metrics::counter!("trellis_http_connections_timed_out_total", "reason" => "tls_handshake")
                            .increment(1);
                        tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                    }
                }
            }
        }
    }

    async fn serve<I>(self, io: TokioIo<I>, activity: Arc<Activity>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = Requests {
            app: self.app,
            peer: self.peer,
            limits: self.limits.clone(),
            activity: activity.clone(),
            served: Arc::new(AtomicU64::new(0)),
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http2().timer(TokioTimer::new());
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, peer = %self.peer, "connection ended with an error");
                    }
                    return;
                }
                why = activity.expired(&self.limits) => {
                    // Nothing is under way on it: close it outright.
                    metrics::counter!("trellis_http_connections_timed_out_total", "reason" => why).increment(1);
                    tracing::debug!(peer = %self.peer, reason = why, "closing a connection");
                    return;
                }
                _ = self.shutdown.wait(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What a connection is doing, shared by its socket and its requests.
struct Activity {
    /// Requests whose answer is not ready yet.
    in_flight: AtomicUsize,
    /// When the connection last read or wrote, in milliseconds since `epoch`.
    last_io: AtomicU64,
    /// When the first byte of a request head arrived (with nothing under way), or `NONE`.
    head_started: AtomicU64,
    changed: Notify,
    epoch: Instant,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            last_io: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            changed: Notify::new(),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn request_began(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(NONE, Ordering::Release);
    }

    fn request_answered(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// Resolves, with the reason, when the connection has overstayed: silent for the idle
    /// timeout, or a request head begun but not finished within the header timeout — never
    /// while a request is under way.
    async fn expired(&self, limits: &HttpLimits) -> &'static str {
        loop {
            let notified = self.changed.notified();
            let (deadline, why) = if self.in_flight.load(Ordering::Acquire) > 0 {
                (None, "")
            } else {
                match self.head_started.load(Ordering::Acquire) {
                    NONE => {
                        (Some(self.last_io.load(Ordering::Relaxed) + limits.idle_timeout.as_millis() as u64), "idle")
                    }
                    began => (Some(began + limits.header_timeout.as_millis() as u64), "header"),
                }
            };
            match deadline {
                Some(at) if self.now() >= at => return why,
                Some(at) => {
                    let wait = self.epoch + Duration::from_millis(at);
                    tokio::select! {
                        _ = tokio::time::sleep_until(wait) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// The socket, noting every read and write in the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The requests of one connection, handed to the router with the peer's address and a body
/// that may not stall.
#[derive(Clone)]
struct Requests {
    app: Router,
    peer: SocketAddr,
    limits: Arc<HttpLimits>,
    activity: Arc<Activity>,
    served: Arc<AtomicU64>,
}

/// Marks a request answered when its future ends, however it ends.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_answered();
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Requests {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: hyper::Request<Incoming>) -> Answer {
        self.activity.request_began();
        let guard = InFlight(self.activity.clone());
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.limits.max_requests.is_some_and(|max| served >= max) && req.version() < hyper::Version::HTTP_2;
        let body_timeout = self.limits.body_timeout;
        let mut req = req.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let app = self.app.clone();
        Box::pin(async move {
            let mut response = app.oneshot(req).await?;
            if last {
                response.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(guard);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_address: Option<usize>) -> HttpLimits {
        HttpLimits {
            max_connections: total,
            per_address,
            header_timeout: Duration::from_millis(50),
            body_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_millis(100),
            max_requests: None,
        }
    }

    #[test]
    fn admits_within_the_caps_and_gives_places_back() {
        let admission = Arc::new(Admission::new(&limits(3, Some(2))));
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert!(matches!(admission.admit(a), Err(Refusal::Address)));
        let _other = admission.admit(b).unwrap();
        assert!(matches!(admission.admit(b), Err(Refusal::Full)));
        drop(first);
        assert!(admission.admit(a).is_ok(), "a closed connection's place is free again");
    }

    #[test]
    fn refusals_are_complete_answers() {
        for refusal in [Refusal::Full, Refusal::Address] {
            let text = std::str::from_utf8(refusal.answer()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
            assert_eq!(body.len(), length, "{head}");
            assert!(serde_json::from_str::<serde_json::Value>(body).unwrap()["errcode"].is_string());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silence_expires_but_never_under_way() {
        let limits = limits(1, None);
        let activity = Activity::new();
        assert_eq!(activity.expired(&limits).await, "idle");
        activity.read();
        assert_eq!(activity.expired(&limits).await, "header", "a head begun must end in time");
        activity.request_began();
        let long_poll = tokio::time::timeout(Duration::from_secs(30), activity.expired(&limits));
        assert!(long_poll.await.is_err(), "a request under way is never cut");
        activity.request_answered();
        assert_eq!(activity.expired(&limits).await, "idle");
    }

    #[test]
    fn reads_the_open_file_limit() {
        if cfg!(target_os = "linux") {
            assert!(open_file_limit().is_some_and(|n| n > 0));
        }
    }
}
