//! Catch-up barriers (Redis bus). A batch ends only for the processes it concerns, so a quiet
//! process cannot tell from its own wake-ups whether it has heard everything published: a
//! request answered at once must still show what was committed before it. It asks Redis, in
//! one step, to publish on the process's own channel the watermark of the latest events batch
//! published (set after each batch's messages). Redis delivers that after every message
//! published before it, so once it comes back, every batch up to the watermark has been heard.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use redis::aio::ConnectionManager;
use trellis_core::{StreamPos, shutdown::Shutdown};

/// Publishes the request number and the watermark on the asking process's channel.
const SCRIPT: &str = "redis.call('PUBLISH', KEYS[2], ARGV[1] .. ' ' .. (redis.call('GET', KEYS[1]) or '0')) return 1";

/// How long a caller waits for its barrier.
const PATIENCE: Duration = Duration::from_millis(100);

pub(crate) struct Barriers {
    /// This process's own channel.
    pub channel: String,
    /// Barriers asked for, and the last one that came back.
    asked: AtomicU64,
    done: tokio::sync::watch::Sender<u64>,
    kick: tokio::sync::Notify,
}

impl Barriers {
    pub(crate) fn new(prefix: &str) -> Barriers {
        Barriers {
            channel: format!("{prefix}.b.{:016x}", random_id()),
            asked: AtomicU64::new(0),
            done: tokio::sync::watch::Sender::new(0),
            kick: tokio::sync::Notify::new(),
        }
    }

    /// Returns once a barrier sent after this call came back (or after [`PATIENCE`]).
    pub(crate) async fn ask(&self) {
        let mine = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
        self.kick.notify_one();
        let mut done = self.done.subscribe();
        let _ = tokio::time::timeout(PATIENCE, done.wait_for(|d| *d >= mine)).await;
    }

    /// A barrier came back: its watermark, every batch up to which has now been heard.
    pub(crate) fn came_back(&self, payload: &str) -> Option<StreamPos> {
        let (asked, pos) = payload.split_once(' ')?;
        let (asked, pos): (u64, StreamPos) = (asked.parse().ok()?, pos.parse().ok()?);
        self.done.send_if_modified(|done| {
            let newer = asked > *done;
            *done = (*done).max(asked);
            newer
        });
        Some(pos)
    }

    /// Sends the barriers asked for, one at a time: callers asking meanwhile share the next.
    pub(crate) async fn run(&self, mut conn: ConnectionManager, published: &str, shutdown: Shutdown) {
        let script = redis::Script::new(SCRIPT);
        loop {
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = shutdown.wait() => return,
            }
            let asked = self.asked.load(Ordering::Acquire);
            let sent = script.key(published).key(&self.channel).arg(asked).invoke_async::<()>(&mut conn).await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "catch-up barrier failed");
            }
        }
    }
}

fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}
