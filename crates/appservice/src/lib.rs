//! The application-service transaction sender: every event that concerns an appservice
//! (`interest.rs`) is pushed to it in order, in `PUT /_matrix/app/v1/transactions/{txnId}`
//! batches (`sender.rs`), retried with backoff while it is down, and never lost or reordered
//! across restarts: each appservice's position in the events stream is kept in
//! `appservice_positions`, which only this role writes.
//!
//! One process sends: the one holding the `SENDER_LOCK` advisory lock; others wait for it as
//! hot standbys, as rooms standbys wait for the event writer. New events are noticed through
//! the bus's `Channel::Appservices`, which the rooms writer publishes with every events batch
//! while appservices are configured (a slow poll of PostgreSQL backs it up).

mod ephemeral;
mod interest;
mod sender;

use std::{sync::Arc, time::Duration};

use tokio::task::JoinSet;
use trellis_bus::Bus;
use trellis_core::{appservice::Registry, config::Config, shutdown::Shutdown};
use trellis_storage::{Pool, Target};

/// How long an appservice may take to answer a transaction before it counts as failed (and
/// is retried under the same ID). Bridges answer at once and work afterwards; a request that
/// hangs (an appservice that accepted the connection but never answers) holds up every
/// later event of that appservice, so this stays short.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Arbitrary constant naming the advisory lock held by the one active sender.
const SENDER_LOCK: i64 = 0x0074_726c_6173_7364;

/// How the sender works, from the `[appservices]` section.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    pub server_name: String,
    /// Longest wait between two delivery attempts to an appservice that is down.
    pub retry_max: Duration,
    /// Most events in one transaction.
    pub max_batch: usize,
}

impl SenderSettings {
    pub fn from_config(config: &Config) -> SenderSettings {
        SenderSettings {
            server_name: config.server_name.clone(),
            retry_max: Duration::from_millis(config.appservices.retry_max_ms.max(1)),
            max_batch: config.appservices.max_batch.max(1),
        }
    }
}

pub(crate) struct Ctx {
    pool: Pool,
    bus: Arc<dyn Bus>,
    settings: SenderSettings,
    http: reqwest::Client,
}

/// Runs until `shutdown`: waits for the sender lock, then delivers to every appservice with a
/// URL; gives the work up (and waits for the lock again) if the lock's session ends.
pub async fn run(
    pool: Pool,
    database: Target,
    bus: Arc<dyn Bus>,
    registry: Registry,
    settings: SenderSettings,
    shutdown: Shutdown,
) {
    let receivers: Vec<_> = registry.all().iter().filter(|a| a.registration.url.is_some()).cloned().collect();
    if receivers.is_empty() {
        shutdown.wait().await;
        return;
    }
    let http =
        reqwest::Client::builder().timeout(TRANSACTION_TIMEOUT).build().unwrap_or_else(|_| reqwest::Client::new());
    let ctx = Arc::new(Ctx { pool, bus, settings, http });
    loop {
        let lock = match trellis_storage::lock::acquire(&database, SENDER_LOCK, "appservice-sender", &shutdown).await {
            Ok(lock) => lock,
            Err(e) => {
                if shutdown.is_triggered() {
                    return;
                }
                tracing::warn!(error = %e, "cannot take the appservice-sender lock; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.wait() => return,
                }
            }
        };
        tracing::info!(appservices = receivers.len(), "appservice sender active");
        let mut loops = JoinSet::new();
        for appservice in &receivers {
            loops.spawn(sender::deliver(ctx.clone(), appservice.clone(), shutdown.clone()));
        }
        loop {
            tokio::select! {
                _ = shutdown.wait() => {
                    while loops.join_next().await.is_some() {}
                    return;
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if lock.is_closed() {
                        tracing::error!("the appservice-sender lock's session ended; standing by again");
                        loops.abort_all();
                        break;
                    }
                }
            }
        }
    }
}
