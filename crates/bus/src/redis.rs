//! The Redis bus of split mode. One multiplexed RESP3 connection per process publishes and
//! receives; channels are subscribed on demand for the long-polls this process holds and
//! unsubscribed after a linger period, so a worker hears only about its own users.
//!
//! Redis is a hint, never the truth: while it is unreachable `is_healthy` is false and
//! long-polls poll PostgreSQL; when it comes back every channel is subscribed again and every
//! held long-poll is woken to look at PostgreSQL once more.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::{
    PushKind,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use trellis_core::{Error, Result, Stream, StreamPos, shutdown::Shutdown};

use crate::{Bus, Channel, Listen, RedisServer, Subscription, hub::Hub};

/// How often an unhealthy bus tries Redis again.
const RECOVERY_INTERVAL: Duration = Duration::from_millis(500);

pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    hub: Arc<Hub>,
    healthy: AtomicBool,
    /// Serialises SUBSCRIBE/UNSUBSCRIBE so an unsubscribe cannot overtake a resubscribe.
    control: tokio::sync::Mutex<()>,
    prefix: Arc<str>,
    /// The channel of events batch-end markers.
    marker: String,
}

impl RedisBus {
    /// Connects to Redis (failing if it cannot be reached now) and starts the background
    /// tasks: message dispatch, recovery after an outage, and unsubscribing idle channels.
    pub async fn connect(
        server: &RedisServer,
        prefix: &str,
        linger: Duration,
        shutdown: Shutdown,
    ) -> Result<Arc<RedisBus>> {
        let client = server.resp3_client()?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(tx)
            .set_automatic_resubscription()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let mut conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| Error::internal(format!("cannot reach Redis: {e}")))?;
        let _: () = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| Error::internal(format!("cannot reach Redis: {e}")))?;
        let inner = Arc::new(Inner {
            conn,
            hub: Arc::new(Hub::default()),
            healthy: AtomicBool::new(true),
            control: tokio::sync::Mutex::new(()),
            prefix: prefix.into(),
            marker: format!("{prefix}.w"),
        });

        let dispatch = inner.clone();
        tokio::spawn(async move {
            while let Some(push) = rx.recv().await {
                match push.kind {
                    PushKind::Message => {
                        let Some(msg) = redis::Msg::from_push_info(push) else { continue };
                        let pos = msg.get_payload::<String>().ok().and_then(|p| crate::decode(&p));
                        match pos {
                            Some((_, pos)) if msg.get_channel_name() == dispatch.marker => dispatch.hub.batch_end(pos),
                            Some((stream, pos)) => dispatch.hub.dispatch(msg.get_channel_name(), stream, pos),
                            None => tracing::warn!(channel = msg.get_channel_name(), "ignoring malformed wake-up"),
                        }
                    }
                    PushKind::Disconnection => dispatch.set_unhealthy("connection to redis lost"),
                    _ => {}
                }
            }
        });

        let recover = inner.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RECOVERY_INTERVAL) => {}
                    _ = stop.wait() => return,
                }
                if !recover.healthy.load(Ordering::Acquire) {
                    recover.try_recover().await;
                }
            }
        });

        let sweep = inner.clone();
        tokio::spawn(async move {
            let period = (linger / 2).max(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = shutdown.wait() => return,
                }
                sweep.unsubscribe_idle(linger).await;
            }
        });

        Ok(Arc::new(RedisBus { inner }))
    }

    /// Channel keys this process currently tracks (held or lingering).
    pub fn channel_count(&self) -> usize {
        self.inner.hub.key_count()
    }
}

impl Inner {
    fn set_unhealthy(&self, why: &str) {
        // Messages may be lost from here on: what this process knew of changes is void.
        self.hub.forget_all();
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(reason = why, "wake-up bus degraded: long-polls fall back to polling PostgreSQL");
            metrics::counter!("trellis_bus_outages_total").increment(1);
            self.hub.wake_all();
        }
    }

    async fn try_recover(&self) {
        let mut conn = self.conn.clone();
        if redis::cmd("PING").query_async::<()>(&mut conn).await.is_err() {
            return;
        }
        // Every channel is subscribed again here, whatever the connection manager restored on
        // its own: only a subscription confirmed after the outage counts as live.
        let _guard = self.control.lock().await;
        let epoch = self.hub.epoch();
        let missing = self.hub.all_not_live();
        if !missing.is_empty() {
            if let Err(e) = conn.subscribe(&missing).await {
                tracing::debug!(error = %e, "resubscribe failed; will retry");
                return;
            }
            if !self.hub.mark_live_since(&missing, epoch) {
                return;
            }
        }
        self.healthy.store(true, Ordering::Release);
        tracing::info!(channels = missing.len(), "wake-up bus recovered");
        // Anything published while Redis was away was lost: every long-poll looks again.
        self.hub.wake_all();
    }

    async fn unsubscribe_idle(&self, linger: Duration) {
        let idle = self.hub.take_idle(linger);
        if idle.is_empty() {
            return;
        }
        let _guard = self.control.lock().await;
        // A key registered again since `take_idle` has a live subscriber-to-be: keep it.
        let idle: Vec<String> = idle.into_iter().filter(|k| !self.hub.has(k)).collect();
        if idle.is_empty() {
            return;
        }
        if let Err(e) = self.conn.clone().unsubscribe(&idle).await {
            tracing::debug!(error = %e, "unsubscribe failed");
        }
    }
}

#[async_trait::async_trait]
impl Listen for Inner {
    async fn listen(&self, keys: &[String]) -> Result<()> {
        if !self.healthy.load(Ordering::Acquire) {
            // Recovery subscribes every registered key; meanwhile the long-poll polls.
            return Ok(());
        }
        if self.hub.not_live(keys).is_empty() {
            return Ok(());
        }
        let _guard = self.control.lock().await;
        let epoch = self.hub.epoch();
        let missing = self.hub.not_live(keys);
        if missing.is_empty() {
            return Ok(());
        }
        match self.conn.clone().subscribe(&missing).await {
            // An outage that began meanwhile voids the confirmation: recovery resubscribes.
            Ok(()) => {
                self.hub.mark_live_since(&missing, epoch);
            }
            Err(e) => self.set_unhealthy(&e.to_string()),
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Bus for RedisBus {
    async fn publish_at(&self, channels: &[Channel], stream: Stream, pos: StreamPos) {
        if channels.is_empty() {
            return;
        }
        let payload = crate::encode(stream, pos);
        let mut pipe = redis::pipe();
        for c in channels {
            pipe.cmd("PUBLISH").arg(c.key(&self.inner.prefix)).arg(&payload).ignore();
        }
        // Redis delivers one client's publishes in order: the marker reaches a worker after
        // every channel of the batch it ends.
        if stream == Stream::Events {
            pipe.cmd("PUBLISH").arg(&self.inner.marker).arg(&payload).ignore();
        }
        let mut conn = self.inner.conn.clone();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            metrics::counter!("trellis_bus_publish_failures_total").increment(1);
            tracing::warn!(error = %e, "publishing a wake-up failed");
        }
    }

    async fn subscribe(&self, channels: &[Channel]) -> Result<Subscription> {
        if !self.inner.hub.has(&self.inner.marker) {
            self.inner.hub.ensure(&self.inner.marker);
            self.inner.listen(std::slice::from_ref(&self.inner.marker)).await?;
        }
        let backend: Arc<dyn Listen> = self.inner.clone();
        let mut sub = Subscription::new(self.inner.hub.clone(), Some(backend), self.inner.prefix.clone());
        sub.add(channels).await?;
        Ok(sub)
    }

    fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, process::Command};

    use super::*;

    fn test_url() -> String {
        std::env::var("TRELLIS_TEST_REDIS_URL")
            .expect("TRELLIS_TEST_REDIS_URL is not set: run the tests with `make test`")
    }

    fn test_server() -> RedisServer {
        RedisServer::new(&test_url(), None)
    }

    fn prefix() -> String {
        format!("t{}", uuid::Uuid::new_v4().simple())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn wakes_subscribers_across_connections() {
        let p = prefix();
        let publisher =
            RedisBus::connect(&test_server(), &p, Duration::from_secs(30), Shutdown::never()).await.unwrap();
        let worker = RedisBus::connect(&test_server(), &p, Duration::from_secs(30), Shutdown::never()).await.unwrap();
        let other =
            RedisBus::connect(&test_server(), &prefix(), Duration::from_secs(30), Shutdown::never()).await.unwrap();
        let sub = worker.subscribe(&[Channel::Room("!r:x".into())]).await.unwrap();
        let foreign = other.subscribe(&[Channel::Room("!r:x".into())]).await.unwrap();
        publisher.publish(&[Channel::Room("!r:x".into())], 42).await;
        tokio::time::timeout(Duration::from_secs(5), sub.wait()).await.expect("woken");
        assert_eq!(sub.announced().events, 42);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), foreign.wait()).await.is_err(),
            "another prefix (deployment) must not hear it"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn idle_channels_are_unsubscribed_after_linger() {
        let p = prefix();
        let bus = RedisBus::connect(&test_server(), &p, Duration::from_millis(200), Shutdown::never()).await.unwrap();
        let sub = bus.subscribe(&[Channel::User("@u:x".into())]).await.unwrap();
        assert_eq!(bus.channel_count(), 1);
        drop(sub);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(bus.channel_count(), 0);
        let mut conn = redis::Client::open(test_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let n: Vec<(String, i64)> =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(format!("{p}.u.@u:x")).query_async(&mut conn).await.unwrap();
        assert_eq!(n[0].1, 0, "redis no longer has the subscription");
    }

    /// A private redis-server that the test may kill and restart on the same port.
    struct PrivateRedis {
        port: u16,
        child: std::process::Child,
    }

    impl PrivateRedis {
        fn start(port: u16) -> PrivateRedis {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is installed (make test installs it)");
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            PrivateRedis { port, child }
        }
    }

    impl Drop for PrivateRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn survives_a_redis_restart() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let redis = PrivateRedis::start(port);
        let url = RedisServer::new(&format!("redis://127.0.0.1:{}/", redis.port), None);
        let p = prefix();
        let publisher = RedisBus::connect(&url, &p, Duration::from_secs(30), Shutdown::never()).await.unwrap();
        let worker = RedisBus::connect(&url, &p, Duration::from_secs(30), Shutdown::never()).await.unwrap();
        let sub = worker.subscribe(&[Channel::Room("!a:x".into())]).await.unwrap();
        let zero = trellis_core::StreamToken::default();
        sub.baseline(&zero);
        assert!(sub.news_since(&zero).known);

        drop(redis);
        // The held long-poll is woken so it can fall back to PostgreSQL.
        tokio::time::timeout(Duration::from_secs(5), sub.wait()).await.expect("woken by the outage");
        assert!(!worker.is_healthy());
        assert!(!sub.news_since(&zero).known, "messages may be lost: knowledge is void");
        sub.baseline(&zero);
        assert!(!sub.news_since(&zero).known, "no baseline before the channel is subscribed again");

        let _redis = PrivateRedis::start(port);
        tokio::time::timeout(Duration::from_secs(10), async {
            while !(worker.is_healthy() && publisher.is_healthy()) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("bus recovers");
        sub.baseline(&zero);
        assert!(sub.news_since(&zero).known, "subscribed again: a new baseline holds");
        // A subscription made during the outage and the old one both work again.
        let late = worker.subscribe(&[Channel::Room("!b:x".into())]).await.unwrap();
        // Drain the recovery wake-up, then expect a real one.
        let _ = tokio::time::timeout(Duration::from_millis(100), sub.wait()).await;
        publisher.publish(&[Channel::Room("!a:x".into()), Channel::Room("!b:x".into())], 9).await;
        tokio::time::timeout(Duration::from_secs(5), async {
            while sub.announced().events < 9 {
                sub.wait().await;
            }
        })
        .await
        .expect("old subscription hears again");
        tokio::time::timeout(Duration::from_secs(5), late.wait()).await.expect("new subscription hears");
        assert_eq!(late.announced().events, 9);
    }
}
