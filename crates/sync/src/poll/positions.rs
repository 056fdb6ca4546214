//! Committed stream positions read on behalf of many long-polls at once. A caller gets the
//! result of a read that began after it asked — so it sees everything committed before its
//! call, as if it had queried itself — but a burst of callers shares one PostgreSQL query.
//!
//! One read runs at a time; callers that arrive while it runs wait for the next one, which
//! starts as soon as the running one ends. If a shared read fails or stalls, the caller
//! queries on its own, so an error reaches it as it would have without sharing.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use deadpool_postgres::Pool;
use tokio::sync::watch;
use trellis_core::{Result, StreamToken};

use crate::streams;

/// How long a caller waits for a shared read before querying on its own.
const SHARED_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct SharedPositions {
    pool: Pool,
    state: Mutex<State>,
    /// The latest read: its generation and, unless it failed, the positions.
    done: watch::Sender<(u64, Option<StreamToken>)>,
}

#[derive(Default)]
struct State {
    /// The generation of the newest read started.
    started: u64,
    /// Whether a read is running.
    running: bool,
    /// Whether a caller waits for a read that has not started yet.
    wanted: bool,
}

impl SharedPositions {
    pub(crate) fn new(pool: Pool) -> Arc<SharedPositions> {
        Arc::new(SharedPositions { pool, state: Mutex::default(), done: watch::channel((0, None)).0 })
    }

    /// Every stream's committed position, read after this call began.
    pub(crate) async fn current(self: &Arc<Self>) -> Result<StreamToken> {
        let mut done = self.done.subscribe();
        let (need, start) = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.running {
                // The running read may have begun before this call: wait for the next.
                state.wanted = true;
                (state.started + 1, false)
            } else {
                state.running = true;
                state.started += 1;
                (state.started, true)
            }
        };
        if start {
            tokio::spawn(self.clone().reads());
        }
        let shared = tokio::time::timeout(SHARED_WAIT, async {
            loop {
                let (generation, token) = *done.borrow_and_update();
                if generation >= need {
                    return token;
                }
                if done.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match shared {
            Ok(Some(token)) => Ok(token),
            // The shared read failed or stalled: ask on our own, errors and all.
            _ => streams::current(&self.pool.get().await?).await,
        }
    }

    /// Runs reads until no caller waits for another.
    async fn reads(self: Arc<Self>) {
        let mut reset = Reset(Some(&self));
        loop {
            let generation = self.state.lock().unwrap_or_else(|e| e.into_inner()).started;
            let token = match self.pool.get().await {
                Ok(client) => streams::current(&client).await.ok(),
                Err(_) => None,
            };
            self.done.send_replace((generation, token));
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !state.wanted {
                // Stopped under the lock: a caller arriving now starts the next reader.
                state.running = false;
                reset.0 = None;
                return;
            }
            state.wanted = false;
            state.started += 1;
        }
    }
}

/// Marks the reader stopped if `reads` ends abnormally (a panic, or its task dropped at
/// shutdown); its waiters then query on their own after `SHARED_WAIT`.
struct Reset<'a>(Option<&'a SharedPositions>);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            state.running = false;
            state.wanted = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use trellis_storage::testing::TestDb;

    use super::*;

    const BUMP: &str = "UPDATE stream_positions SET pos = pos + 1 WHERE stream = 'events' RETURNING pos";

    /// A position committed before a call is always seen by it, while other callers keep
    /// the shared reads busy; and a burst of callers shares reads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_sees_what_was_committed_before_it_asked() {
        let db = TestDb::new().await.expect("test database");
        let pool = db.pool(8);
        let shared = SharedPositions::new(pool.clone());

        // Background callers, so that most calls below find a read already running.
        let stop = Arc::new(AtomicBool::new(false));
        let mut background = Vec::new();
        for _ in 0..4 {
            let (shared, stop) = (shared.clone(), stop.clone());
            background.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    shared.current().await.expect("background read");
                }
            }));
        }
        let writer = pool.get().await.unwrap();
        for _ in 0..200 {
            let committed: i64 = writer.query_one(BUMP, &[]).await.unwrap().get(0);
            let seen = shared.current().await.unwrap().events;
            assert!(seen >= committed, "read {seen} after {committed} was committed");
        }
        stop.store(true, Ordering::Relaxed);
        for task in background {
            task.await.unwrap();
        }

        // A burst: 200 callers at once are served by far fewer reads.
        let before = shared.state.lock().unwrap().started;
        let committed: i64 = writer.query_one(BUMP, &[]).await.unwrap().get(0);
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let shared = shared.clone();
                tokio::spawn(async move { shared.current().await.unwrap().events })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap() >= committed);
        }
        let reads = shared.state.lock().unwrap().started - before;
        assert!((1..100).contains(&reads), "200 callers took {reads} reads");
    }
}
