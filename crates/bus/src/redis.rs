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

use crate::{
    Bus, Channel, Listen, RedisServer, Subscription,
    barrier::Barriers,
    batches::{self, Batches},
    hub::Hub,
};

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
    /// The channel of the batch-end markers of large events batches (see `batches.rs`).
    marker: String,
    /// Messages this process has heard.
    received: std::sync::atomic::AtomicU64,
    /// The key holding the watermark of the latest events batch published.
    published: String,
    /// Batches whose publishing failed, published again before the next one and on recovery.
    unsent: parking_lot::Mutex<UnsentBatches>,
    barriers: Barriers,
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
            received: Default::default(),
            published: format!("{prefix}.pos"),
            unsent: Default::default(),
            barriers: Barriers::new(prefix),
        });

        let dispatch = inner.clone();
        tokio::spawn(async move {
            let mut batches = Batches::default();
            loop {
                let push = match batches.deadline() {
                    Some(deadline) => match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                        Ok(push) => push,
                        Err(_) => {
                            batches.give_up(&dispatch.hub);
                            continue;
                        }
                    },
                    None => rx.recv().await,
                };
                let Some(push) = push else { return };
                match push.kind {
                    PushKind::Message => {
                        let Some(msg) = redis::Msg::from_push_info(push) else { continue };
                        let channel = msg.get_channel_name();
                        let payload = msg.get_payload::<String>().unwrap_or_default();
                        if channel == dispatch.barriers.channel {
                            if let Some(pos) = dispatch.barriers.came_back(&payload) {
                                batches.caught_up(&dispatch.hub, pos);
                            }
                            continue;
                        }
                        dispatch.received.fetch_add(1, Ordering::Relaxed);
                        match batches::decode(&payload) {
                            Some((_, pos, _)) if channel == dispatch.marker => batches.marker(&dispatch.hub, pos),
                            Some((Stream::Events, pos, listed)) if !listed.is_empty() => {
                                batches.heard(&dispatch.hub, channel, pos, &listed)
                            }
                            Some((stream, pos, _)) => dispatch.hub.dispatch(channel, stream, pos),
                            None => tracing::warn!(channel, "ignoring malformed wake-up"),
                        }
                    }
                    PushKind::Disconnection => dispatch.set_unhealthy("connection to redis lost"),
                    _ => {}
                }
            }
        });

        let barriers = inner.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let (conn, published) = (barriers.conn.clone(), barriers.published.clone());
            barriers.barriers.run(conn, &published, stop).await
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

    /// How many wake-up messages (not counting its own catch-up barriers) this process has
    /// heard from Redis.
    pub fn messages_received(&self) -> u64 {
        self.inner.received.load(Ordering::Relaxed)
    }

    /// Channel keys this process currently tracks (held or lingering).
    pub fn channel_count(&self) -> usize {
        self.inner.hub.key_count()
    }
}

/// One batch to publish: channel keys, stream, position.
struct Unsent {
    keys: Vec<String>,
    stream: Stream,
    pos: StreamPos,
}

/// Unpublished batches, merged per stream (a wake-up only says "look from here": one message
/// per channel at the highest position says all that the lost ones did). Bounded: past
/// `MAX_UNSENT` channels the rest are dropped, and the long-polls' timeouts cover them.
#[derive(Default)]
pub(crate) struct UnsentBatches {
    streams: Vec<(Stream, std::collections::BTreeSet<String>, StreamPos)>,
}

const MAX_UNSENT: usize = 100_000;

impl UnsentBatches {
    fn take(&mut self) -> Vec<Unsent> {
        std::mem::take(&mut self.streams)
            .into_iter()
            .map(|(stream, keys, pos)| Unsent { keys: keys.into_iter().collect(), stream, pos })
            .collect()
    }

    fn keep(&mut self, batches: Vec<Unsent>) {
        for b in batches {
            let held: usize = self.streams.iter().map(|s| s.1.len()).sum();
            let i = match self.streams.iter().position(|s| s.0 == b.stream) {
                Some(i) => i,
                None => {
                    self.streams.push((b.stream, Default::default(), b.pos));
                    self.streams.len() - 1
                }
            };
            let entry = &mut self.streams[i];
            entry.2 = entry.2.max(b.pos);
            entry.1.extend(b.keys.into_iter().take(MAX_UNSENT.saturating_sub(held)));
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.streams.is_empty()
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
        // And what this process failed to publish goes out now, for the workers that came
        // back before it (their own look happened before those events).
        let unsent = self.unsent.lock().take();
        if !unsent.is_empty()
            && let Err(e) = self.send(&unsent).await
        {
            tracing::warn!(error = %e, "publishing kept wake-ups failed");
            self.unsent.lock().keep(unsent);
        }
    }

    /// Publishes `batches` in order. A small events batch names its channels in each message;
    /// a large one is ended by the shared marker, which Redis delivers after every channel of
    /// the batch (one client's publishes arrive in order). The watermark is set after the
    /// batch's messages, so a catch-up barrier that reads it comes after all of them. (Not a
    /// MULTI: a transaction on the connection that also receives would hide the wake-ups
    /// arriving during it.)
    async fn send(&self, batches: &[Unsent]) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for Unsent { keys, stream, pos } in batches {
            let (stream, pos) = (*stream, *pos);
            let listed = stream == Stream::Events && keys.len() <= batches::MAX_LISTED;
            let payload = if listed { batches::encode_listed(pos, keys) } else { crate::encode(stream, pos) };
            for key in keys {
                pipe.cmd("PUBLISH").arg(key).arg(&payload).ignore();
            }
            if stream == Stream::Events && !listed {
                pipe.cmd("PUBLISH").arg(&self.marker).arg(&payload).ignore();
            }
            if stream == Stream::Events {
                pipe.cmd("SET").arg(&self.published).arg(pos).ignore();
            }
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await
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
        let keys: Vec<String> = channels.iter().map(|c| c.key(&self.inner.prefix)).collect();
        // Batches that could not be published before go first, in stream order.
        let mut batches = self.inner.unsent.lock().take();
        batches.push(Unsent { keys, stream, pos });
        if let Err(e) = self.inner.send(&batches).await {
            metrics::counter!("trellis_bus_publish_failures_total").increment(1);
            tracing::warn!(error = %e, "publishing a wake-up failed; kept to publish again");
            self.inner.unsent.lock().keep(batches);
        }
    }

    async fn subscribe(&self, channels: &[Channel]) -> Result<Subscription> {
        if !self.inner.hub.has(&self.inner.marker) {
            let always = [self.inner.marker.clone(), self.inner.barriers.channel.clone()];
            for key in &always {
                self.inner.hub.ensure(key);
            }
            self.inner.listen(&always).await?;
        }
        let backend: Arc<dyn Listen> = self.inner.clone();
        let mut sub = Subscription::new(self.inner.hub.clone(), Some(backend), self.inner.prefix.clone());
        sub.add(channels).await?;
        Ok(sub)
    }

    fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }

    async fn catch_up(&self) {
        if self.is_healthy() && self.inner.hub.has(&self.inner.barriers.channel) {
            self.inner.barriers.ask().await;
        }
    }
}

#[cfg(test)]
mod tests;
