//! Whether a process is alive and ready for work. A background monitor checks, every
//! `health.interval_ms`, what this process's roles depend on — its database, Redis, and the
//! gRPC services it calls (their own health service) — and publishes one [`Report`]: served
//! by `/health/ready` on the operations port and pushed to this process's gRPC health
//! service. A process is not ready while it starts (a rooms standby waits here for the
//! event-writer lock), after a required check failed, and from the moment it starts draining.
//! It is not alive only when a restart is the cure: a rooms writer that lost the session
//! holding its lock can no longer prove it is the only writer.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::{Mutex, Notify, watch};
use trellis_core::{config::HealthConfig, shutdown::Shutdown};
use trellis_proto::health::{HealthReporter, ServingStatus};
use trellis_storage::Pool;

/// The outcome of the latest round of checks.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `starting`, `ready`, `not_ready` or `draining`.
    pub status: &'static str,
    #[serde(skip)]
    pub ready: bool,
    #[serde(skip)]
    pub live: bool,
    pub checks: Vec<Check>,
}

/// One dependency's check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// A failed required check makes the process not ready; others are only reported.
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Something a role depends on.
pub enum Probe {
    /// The role's PostgreSQL (a pool of one connection of its own, so a busy role pool does
    /// not fail the check).
    Database(Pool),
    /// Redis: the bus, or the rate-limit counters gateways share.
    Redis(Box<RedisProbe>),
    /// A service this process calls, through its gRPC health service.
    Service { name: &'static str, channel: tonic::transport::Channel },
    /// The sync workers a gateway spreads long-polls over: one answering is enough, the
    /// gateway retries a call on another.
    SyncWorkers(Arc<crate::sync_directory::SyncDirectory>),
    /// The rooms event writer still holds its lock (its liveness hangs on this).
    Writer(Arc<trellis_rooms::Rooms>),
}

/// Redis, asked with PING over a connection kept between checks.
pub struct RedisProbe {
    client: redis::Client,
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
    required: bool,
}

impl Probe {
    pub fn redis(server: &trellis_bus::RedisServer, required: bool) -> anyhow::Result<Probe> {
        let probe = RedisProbe { client: server.client()?, conn: Mutex::new(None), required };
        Ok(Probe::Redis(Box::new(probe)))
    }

    fn name(&self) -> String {
        match self {
            Probe::Database(_) => "database".into(),
            Probe::Redis(_) => "redis".into(),
            Probe::Service { name, .. } => (*name).into(),
            Probe::SyncWorkers(_) => "sync".into(),
            Probe::Writer(_) => "event_writer_lock".into(),
        }
    }

    fn required(&self) -> bool {
        match self {
            Probe::Redis(redis) => redis.required,
            _ => true,
        }
    }

    async fn run(&self, timeout: Duration) -> Result<(), String> {
        let deadline = |e: tokio::time::error::Elapsed| format!("no answer within {} ms ({e})", timeout.as_millis());
        match self {
            Probe::Database(pool) => tokio::time::timeout(timeout, async {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                client.simple_query("SELECT 1").await.map(drop).map_err(|e| e.to_string())
            })
            .await
            .map_err(deadline)?,
            Probe::Redis(redis) => {
                let (client, mut conn) = (&redis.client, redis.conn.lock().await);
                let result = tokio::time::timeout(timeout, async {
                    if conn.is_none() {
                        *conn = Some(client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?);
                    }
                    let c = conn.as_mut().expect("connected above");
                    redis::cmd("PING").query_async::<String>(c).await.map(drop).map_err(|e| e.to_string())
                })
                .await
                .map_err(deadline)
                .and_then(|r| r);
                if result.is_err() {
                    // Reconnect next time rather than queue behind a dead connection.
                    *conn = None;
                }
                result
            }
            Probe::Service { channel, .. } => serving(channel.clone(), timeout).await,
            Probe::SyncWorkers(directory) => {
                let workers = directory.channels();
                if workers.is_empty() {
                    return Err("no sync worker is known".to_owned());
                }
                let answers = join_all(workers.iter().map(|(_, c)| serving(c.clone(), timeout))).await;
                if answers.iter().any(Result::is_ok) {
                    return Ok(());
                }
                let why: Vec<String> =
                    workers.iter().zip(answers).map(|((url, _), a)| format!("{url}: {}", a.unwrap_err())).collect();
                Err(format!("no sync worker is serving ({})", why.join("; ")))
            }
            Probe::Writer(rooms) => match rooms.holds_writer_lock() {
                true => Ok(()),
                false => Err("the session holding the event-writer lock was lost; restart to take it again".into()),
            },
        }
    }
}

async fn serving(channel: tonic::transport::Channel, timeout: Duration) -> Result<(), String> {
    match trellis_proto::health::check(channel, "", timeout).await? {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("reports {other}")),
    }
}

/// The health of this process, shared by the monitor, the operations port and `Node`.
pub struct Health {
    config: HealthConfig,
    report: watch::Sender<Report>,
    started: AtomicBool,
    draining: AtomicBool,
    changed: Notify,
}

impl Health {
    pub fn new(config: HealthConfig) -> Arc<Health> {
        let starting = Report { status: "starting", ready: false, live: true, checks: Vec::new() };
        Arc::new(Health {
            config,
            report: watch::channel(starting).0,
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    pub fn report(&self) -> Report {
        self.report.borrow().clone()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Resolves once the process drains (at once if it already does).
    pub async fn drained(&self) {
        let mut reports = self.report.subscribe();
        while !self.is_draining() {
            if reports.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// From now on the process is not ready (it keeps serving what it is sent).
    pub fn begin_drain(&self) {
        if !self.draining.swap(true, Ordering::AcqRel) {
            tracing::info!("draining: reporting not ready");
            self.report.send_modify(|r| {
                r.status = "draining";
                r.ready = false;
            });
            self.changed.notify_one();
        }
    }

    /// Checks `probes` until `shutdown`, publishing each round's report and mirroring it on
    /// the gRPC health service; `pools` are sampled for the database-pool gauges.
    pub async fn monitor(
        self: Arc<Health>,
        probes: Vec<Probe>,
        grpc: Option<HealthReporter>,
        pools: Vec<(&'static str, Pool)>,
        shutdown: Shutdown,
    ) {
        self.started.store(true, Ordering::Release);
        let interval = Duration::from_millis(self.config.interval_ms.max(10));
        let timeout = Duration::from_millis(self.config.timeout_ms.max(1));
        let mut reported: Option<bool> = None;
        loop {
            let results = tokio::select! {
                results = join_all(probes.iter().map(|p| p.run(timeout))) => results,
                _ = shutdown.wait() => break,
            };
            let checks: Vec<Check> = probes
                .iter()
                .zip(results)
                .map(|(p, r)| Check { name: p.name(), ok: r.is_ok(), required: p.required(), error: r.err() })
                .collect();
            self.publish(checks);
            record_pools(&pools);
            let ready = self.report.borrow().ready;
            if let Some(grpc) = &grpc
                && reported != Some(ready)
            {
                grpc.set(ready).await;
                reported = Some(ready);
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.changed.notified() => {}
                _ = shutdown.wait() => break,
            }
        }
        if let Some(grpc) = &grpc {
            grpc.set(false).await;
        }
    }

    fn publish(&self, checks: Vec<Check>) {
        let live = !checks.iter().any(|c| c.name == "event_writer_lock" && !c.ok);
        let healthy = checks.iter().all(|c| c.ok || !c.required);
        let draining = self.is_draining();
        let ready = self.started.load(Ordering::Acquire) && healthy && !draining && live;
        let status = match (draining, ready) {
            (true, _) => "draining",
            (false, true) => "ready",
            (false, false) => "not_ready",
        };
        for c in checks.iter().filter(|c| !c.ok) {
            tracing::debug!(check = %c.name, error = c.error.as_deref().unwrap_or(""), "health check failed");
        }
        self.report.send_replace(Report { status, ready, live, checks });
    }
}

/// Connections of each role's pool, for the database-pool panel.
fn record_pools(pools: &[(&'static str, Pool)]) {
    for (role, pool) in pools {
        let s = pool.status();
        let in_use = s.size.saturating_sub(s.available);
        metrics::gauge!("trellis_db_pool_connections", "role" => *role, "state" => "in_use").set(in_use as f64);
        metrics::gauge!("trellis_db_pool_connections", "role" => *role, "state" => "idle").set(s.available as f64);
        metrics::gauge!("trellis_db_pool_max_connections", "role" => *role).set(s.max_size as f64);
        metrics::gauge!("trellis_db_pool_waiting", "role" => *role).set(s.waiting as f64);
    }
}
