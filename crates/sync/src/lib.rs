//! A sync worker: answers `/sync` long-polls and stores filters. It reads what the rooms
//! service writes and listens on the bus only for the users whose long-polls it holds. Any
//! number of workers can run side by side; a client's consecutive polls may land on any of
//! them because tokens carry whole positions and PostgreSQL holds the truth.

mod access;
mod poll;
mod push;
mod queries;
mod service;
mod sliding;
mod streams;

use std::{sync::Arc, time::Duration};

use trellis_bus::Bus;
use trellis_core::{config::Config, shutdown::Shutdown};
use trellis_storage::Pool;

#[derive(Clone, Debug)]
pub struct SyncSettings {
    /// Upper bound on a client's `timeout`.
    pub max_timeout: Duration,
    /// Timeline events per room when the filter sets no limit.
    pub default_timeline_limit: u32,
    /// How often a long-poll looks at PostgreSQL while the bus is degraded.
    pub degraded_poll: Duration,
    /// How long a long-poll woken only by receipts, typing or presence gathers more of them.
    pub ephemeral_batch: Duration,
}

impl SyncSettings {
    pub fn from_config(config: &Config) -> SyncSettings {
        SyncSettings {
            max_timeout: Duration::from_millis(config.sync.max_timeout_ms),
            default_timeline_limit: config.sync.default_timeline_limit,
            degraded_poll: Duration::from_millis(500),
            ephemeral_batch: Duration::from_millis(config.sync.ephemeral_batch_ms),
        }
    }
}

pub struct SyncWorker {
    pool: Pool,
    bus: Arc<dyn Bus>,
    settings: SyncSettings,
    shutdown: Shutdown,
    /// Presence each user last refreshed through this worker, and when (ms): most syncs
    /// need no database round trip to know their refresh is not due.
    presence_seen: dashmap::DashMap<String, (String, i64)>,
    /// What lets a woken long-poll answer from memory (see `fast.rs`).
    caches: poll::caches::Caches,
    /// When this worker last answered a long-poll (ms since `started`, a monotonic clock):
    /// the notifier waits for a lull.
    last_answer_ms: std::sync::atomic::AtomicI64,
    started: std::time::Instant,
    /// Committed positions read once for a burst of long-polls (see `positions.rs`).
    positions: Arc<poll::positions::SharedPositions>,
    /// Bus subscriptions kept between a device's long-polls (see `parked.rs`).
    parked: poll::parked::Parking,
    /// Signalled when pushes were queued here, so delivery sends them at once.
    push_queued: Arc<tokio::sync::Notify>,
    /// Sliding sync connection states this worker last read or wrote.
    sliding: sliding::Memory,
    /// What each sliding sync connection's last exact answer knew (see `sliding/fast.rs`).
    sliding_snapshots: sliding::Snapshots,
    /// The numbering of push rule gates shared by the rules this worker compiles (see
    /// `push/matching.rs`).
    push_gates: push::matching::Gates,
    /// Lazy-loading records of the fast path, waiting to be written together.
    lazy_batch: Arc<poll::lazy_batch::LazyBatch>,
}

impl SyncWorker {
    /// Milliseconds since this worker started, on a clock that never steps back.
    fn uptime_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// A worker, with its housekeeping running until `shutdown`: typing notifications time
    /// out, users who stopped syncing go offline.
    pub fn new(pool: Pool, bus: Arc<dyn Bus>, settings: SyncSettings, shutdown: Shutdown) -> Arc<SyncWorker> {
        let worker = Arc::new(SyncWorker {
            positions: poll::positions::SharedPositions::new(pool.clone()),
            pool,
            bus,
            settings,
            shutdown: shutdown.clone(),
            presence_seen: dashmap::DashMap::new(),
            caches: poll::caches::Caches::new(),
            last_answer_ms: Default::default(),
            started: std::time::Instant::now(),
            parked: poll::parked::Parking::new(poll::parked::KEEP),
            push_queued: Arc::new(tokio::sync::Notify::new()),
            sliding: sliding::Memory::new(),
            sliding_snapshots: sliding::Snapshots::new(),
            push_gates: Default::default(),
            lazy_batch: Arc::default(),
        });
        tokio::spawn(poll::lazy_batch::run(Arc::downgrade(&worker), worker.lazy_batch.clone(), shutdown.clone()));
        tokio::spawn(push::notifier::run(Arc::downgrade(&worker), shutdown.clone()));
        tokio::spawn(push::delivery::run(Arc::downgrade(&worker), shutdown.clone()));
        tokio::spawn(housekeeping(Arc::downgrade(&worker), shutdown));
        worker
    }
}

async fn housekeeping(worker: std::sync::Weak<SyncWorker>, shutdown: Shutdown) {
    let mut tick = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait() => return,
        }
        let Some(worker) = worker.upgrade() else { return };
        worker.parked.sweep();
        if let Err(e) = worker.expire_typing().await {
            tracing::warn!(error = ?e, "expiring typing notifications failed");
        }
        tick += 1;
        if tick.is_multiple_of(60) {
            worker.caches.trim();
            worker.caches.tails.evict_idle();
            worker.caches.room_members.evict_idle();
            metrics::gauge!("trellis_sync_cached_rooms").set(worker.caches.tails.len() as f64);
            metrics::gauge!("trellis_sync_parked_subscriptions").set(worker.parked.len() as f64);
        }
        if tick.is_multiple_of(3600)
            && let Err(e) = expire_sliding(&worker).await
        {
            tracing::warn!(error = ?e, "expiring sliding sync connections failed");
        }
        if tick.is_multiple_of(30)
            && let Err(e) = worker.expire_presence().await
        {
            tracing::warn!(error = ?e, "expiring presence failed");
        }
    }
}

async fn expire_sliding(worker: &SyncWorker) -> trellis_core::Result<()> {
    let gone = sliding::expire(&worker.pool.get().await?).await?;
    if gone > 0 {
        tracing::info!(connections = gone, "expired sliding sync connections");
    }
    Ok(())
}
