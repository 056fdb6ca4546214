//! Where a gateway's sync workers come from — the fixed `remote.sync` list, or with
//! `sync.discovery = "redis"` the registry of live workers — and a sync worker's own entry in
//! that registry.
//!
//! The registry is one sorted set in Redis (`{bus.channel_prefix}:sync-workers`): a member per
//! worker URL, scored with the Redis-clock time its entry lapses. A worker renews its entry
//! every `sync.heartbeat_ms` (lapsing after three missed renewals, so a killed worker drops
//! out on its own) and removes it the moment it starts draining; gateways re-read the set as
//! often and hand the live URLs to their [`SyncPool`], which places users by rendezvous
//! hashing. Redis's own clock scores the entries, so hosts need not agree on the time.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use trellis_core::{
    config::{Config, SyncBalance},
    shutdown::Shutdown,
};
use trellis_proto::sync::{PoolWorker, SyncGrpcClient, SyncPool, SyncService};

use crate::health::Health;

/// Missed renewals after which an entry lapses.
const LAPSE_AFTER: u32 = 3;

/// Where the registry lives and how often it is renewed and read, from the configuration.
#[derive(Clone)]
pub struct Registry {
    redis: trellis_bus::RedisServer,
    key: String,
    every: Duration,
}

impl Registry {
    pub fn from_config(config: &Config) -> anyhow::Result<Registry> {
        let redis = trellis_bus::RedisServer::from_config(&config.redis)
            .context("sync.discovery = \"redis\" needs redis.url")?;
        Ok(Registry {
            redis,
            key: format!("{}:sync-workers", config.bus.channel_prefix),
            every: Duration::from_millis(config.sync.heartbeat_ms.max(50)),
        })
    }

    fn client(&self) -> trellis_core::Result<redis::Client> {
        self.redis.client()
    }
}

/// A known worker: the client calls go through, and its channel for the readiness probe.
type Known = (Arc<dyn SyncService>, tonic::transport::Channel);

/// A gateway's view of the sync workers: the pool its calls go through, and a channel per
/// worker for the readiness probe.
pub struct SyncDirectory {
    pool: Arc<SyncPool>,
    known: Mutex<HashMap<String, Known>>,
}

impl SyncDirectory {
    pub fn new(balance: SyncBalance) -> Arc<SyncDirectory> {
        Arc::new(SyncDirectory {
            pool: Arc::new(SyncPool::new(Vec::new(), balance)),
            known: Mutex::new(HashMap::new()),
        })
    }

    pub fn pool(&self) -> Arc<SyncPool> {
        self.pool.clone()
    }

    /// The workers now, with a channel each (for the readiness probe).
    pub fn channels(&self) -> Vec<(String, tonic::transport::Channel)> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let mut channels: Vec<_> = known.iter().map(|(url, (_, channel))| (url.clone(), channel.clone())).collect();
        channels.sort_by(|a, b| a.0.cmp(&b.0));
        channels
    }

    /// Makes `urls` the set of workers, keeping the connections to those already known.
    /// Returns whether anything changed.
    pub fn apply(&self, urls: &[String]) -> trellis_core::Result<bool> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let before = known.len();
        known.retain(|url, _| urls.contains(url));
        let mut changed = known.len() != before;
        for url in urls {
            if !known.contains_key(url) {
                let channel = trellis_proto::channel(url)?;
                let client: Arc<dyn SyncService> = Arc::new(SyncGrpcClient::new(channel.clone()));
                known.insert(url.clone(), (client, channel));
                changed = true;
            }
        }
        if changed {
            let mut workers: Vec<PoolWorker> = known
                .iter()
                .map(|(url, (service, _))| PoolWorker { name: url.clone(), service: service.clone() })
                .collect();
            workers.sort_by(|a, b| a.name.cmp(&b.name));
            let names: Vec<&str> = workers.iter().map(|w| w.name.as_str()).collect();
            tracing::info!(workers = ?names, "sync workers changed");
            metrics::gauge!("trellis_gateway_sync_workers").set(workers.len() as f64);
            self.pool.set_workers(workers);
        }
        Ok(changed)
    }
}

/// Redis's clock in milliseconds.
async fn redis_now(conn: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<u64> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs * 1000 + micros / 1000)
}

/// The URLs of the workers whose entries have not lapsed.
async fn live_workers(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> redis::RedisResult<Vec<String>> {
    let now = redis_now(conn).await?;
    redis::cmd("ZRANGEBYSCORE").arg(key).arg(now).arg("+inf").query_async(conn).await
}

/// How long a starting gateway tries to read the registry before giving up: a busy moment
/// (a timed-out read) is not a reason to exit; Redis unreachable for this long is.
const DISCOVER_PATIENCE: Duration = Duration::from_secs(10);

/// Reads the registry, so a gateway starts with the workers alive now; fails when Redis
/// cannot be read within [`DISCOVER_PATIENCE`].
pub async fn discover(directory: &SyncDirectory, registry: &Registry) -> anyhow::Result<()> {
    let client = registry.client()?;
    let deadline = tokio::time::Instant::now() + DISCOVER_PATIENCE;
    let urls = loop {
        let read = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            live_workers(&mut conn, &registry.key).await
        };
        match read.await {
            Ok(urls) => break urls,
            Err(e) if tokio::time::Instant::now() + registry.every < deadline => {
                tracing::warn!(error = %e, "sync discovery: Redis unreadable at start; trying again");
                tokio::time::sleep(registry.every).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    directory.apply(&urls)?;
    if urls.is_empty() {
        tracing::warn!("no sync worker is registered yet; /sync answers 503 until one is");
    }
    Ok(())
}

/// Follows the registry every heartbeat until shutdown. A Redis outage keeps the last known
/// workers (the pool skips any that stopped answering).
pub async fn follow(directory: Arc<SyncDirectory>, registry: Registry, shutdown: Shutdown) {
    let client = match registry.client() {
        Ok(client) => client,
        Err(e) => return tracing::error!(error = %e, "sync discovery: bad Redis URL"),
    };
    let mut conn = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(registry.every) => {}
            _ = shutdown.wait() => return,
        }
        if conn.is_none() {
            conn = client.get_multiplexed_async_connection().await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        match live_workers(c, &registry.key).await {
            Ok(urls) => {
                if let Err(e) = directory.apply(&urls) {
                    tracing::warn!(error = ?e, "sync discovery: a registered worker URL is unusable");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "sync discovery: Redis unreadable; keeping the known workers");
                conn = None;
            }
        }
    }
}

/// A sync worker's entry in the registry: renewed every heartbeat while the process serves,
/// removed as soon as it drains (gateways then stop sending it new polls while it answers the
/// ones it holds) and at shutdown.
pub async fn advertise(url: String, registry: Registry, health: Arc<Health>, shutdown: Shutdown) {
    let (key, every) = (&registry.key, registry.every);
    let client = match registry.client() {
        Ok(client) => client,
        Err(e) => return tracing::error!(error = %e, "sync registry: bad Redis URL"),
    };
    let lapse = every.as_millis() as u64 * u64::from(LAPSE_AFTER);
    let mut conn = None;
    let mut registered = false;
    loop {
        if conn.is_none() {
            conn = client.get_multiplexed_async_connection().await.ok();
        }
        if let Some(c) = conn.as_mut() {
            let draining = health.is_draining();
            let result = match draining {
                false => {
                    async {
                        let until = redis_now(c).await? + lapse;
                        redis::cmd("ZADD").arg(key).arg(until).arg(&url).query_async::<()>(c).await
                    }
                    .await
                }
                true => redis::cmd("ZREM").arg(key).arg(&url).query_async::<()>(c).await,
            };
            match result {
                Ok(()) if registered == draining => {
                    registered = !draining;
                    tracing::info!(url, registered, "sync registry entry updated");
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "sync registry: could not renew this worker's entry");
                    conn = None;
                }
            }
        }
        // Draining cuts the wait short once, to leave the registry at once; after that
        // `drained()` is always ready and would spin.
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = health.drained(), if !health.is_draining() => {}
            _ = shutdown.wait() => break,
        }
    }
    if let Some(c) = conn.as_mut() {
        let _ = redis::cmd("ZREM").arg(key).arg(&url).query_async::<()>(c).await;
    }
}

/// The URL a sync worker registers: `sync.advertise_url`, else `http://` and the gRPC address
/// it is bound to when that is a specific one.
pub fn advertise_url(configured: Option<&str>, bound: Option<std::net::SocketAddr>) -> anyhow::Result<String> {
    match (configured, bound) {
        (Some(url), _) => Ok(url.to_owned()),
        (None, Some(addr)) if !addr.ip().is_unspecified() => Ok(format!("http://{addr}")),
        _ => anyhow::bail!(
            "sync.discovery = \"redis\" needs sync.advertise_url (the URL gateways reach this worker at) when \
             grpc.listen is a wildcard address"
        ),
    }
}
