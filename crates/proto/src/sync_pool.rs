//! [`Pool`]: one handle over the workers alive now, each user's calls going to the same
//! worker for as long as it lives (rendezvous hashing, so a worker coming or going moves only
//! its own share of users). The sync service is served so (`crate::sync::SyncPool`: its
//! `service!` list implements the trait for the pool); this file knows no service.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use trellis_core::config::SyncBalance;

/// A worker as the pool knows it: a stable name (its URL) and a handle to it (`S`: the
/// service's trait object).
pub struct Worker<S: ?Sized> {
    pub name: String,
    pub service: Arc<S>,
}

impl<S: ?Sized> Clone for Worker<S> {
    fn clone(&self) -> Self {
        Worker { name: self.name.clone(), service: self.service.clone() }
    }
}

/// Spreads calls over several sync workers. Any worker can answer any call: tokens carry the
/// whole position and PostgreSQL holds the truth, so the choice only affects warm caches and
/// which worker holds a user's long-polls. A worker that cannot be reached is skipped in
/// favour of the user's next choice. The set of workers can change at any time
/// ([`Pool::set_workers`]); calls under way on a worker that leaves the set are moved to
/// the next choice.
pub struct Pool<S: ?Sized> {
    workers: RwLock<Arc<Vec<Worker<S>>>>,
    balance: SyncBalance,
    next: AtomicUsize,
    /// Per worker in the set: turns true when it leaves the set.
    departures: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl<S: ?Sized> Pool<S> {
    pub fn new(workers: Vec<Worker<S>>, balance: SyncBalance) -> Pool<S> {
        let departures = workers.iter().map(|w| (w.name.clone(), watch::channel(false).0)).collect();
        Pool {
            workers: RwLock::new(Arc::new(workers)),
            balance,
            next: AtomicUsize::new(0),
            departures: Mutex::new(departures),
        }
    }

    /// Replaces the set of workers. Calls under way on a worker still in the set finish
    /// there; those on a worker that left (its registration lapsed: it died, hangs or was
    /// stopped) are given up and made again on the user's next choice, rather than waiting
    /// on a worker nobody expects to answer.
    pub fn set_workers(&self, workers: Vec<Worker<S>>) {
        let mut departures = self.departures.lock();
        departures.retain(|name, departed| {
            let stays = workers.iter().any(|w| &w.name == name);
            if !stays {
                departed.send_replace(true);
            }
            stays
        });
        for w in &workers {
            departures.entry(w.name.clone()).or_insert_with(|| watch::channel(false).0);
        }
        *self.workers.write() = Arc::new(workers);
    }

    /// Resolves when `name` leaves the set of workers (at once if it is not in it).
    fn departure(&self, name: &str) -> impl std::future::Future<Output = ()> + use<S> {
        let watching = self.departures.lock().get(name).map(watch::Sender::subscribe);
        async move {
            if let Some(mut departed) = watching {
                // A dropped sender also means the worker left.
                let _ = departed.wait_for(|gone| *gone).await;
            }
        }
    }

    /// The names of the workers calls go to now.
    pub fn worker_names(&self) -> Vec<String> {
        self.workers.read().iter().map(|w| w.name.clone()).collect()
    }

    /// The workers in the order `user_id`'s calls try them.
    fn order(&self, user_id: &str) -> Vec<Worker<S>> {
        let mut order: Vec<Worker<S>> = self.workers.read().to_vec();
        match self.balance {
            SyncBalance::RoundRobin => {
                if !order.is_empty() {
                    let start = self.next.fetch_add(1, Ordering::Relaxed) % order.len();
                    order.rotate_left(start);
                }
            }
            // Highest score first: every gateway computes the same order, and removing a
            // worker only moves the users whose first choice it was.
            SyncBalance::User => order.sort_by_key(|w| std::cmp::Reverse(score(&w.name, user_id))),
        }
        order
    }

    /// Makes `f` on `user_id`'s worker, moving it to the next choice while workers fail or
    /// leave (what the service's `pool` line calls for every method).
    pub(crate) async fn call<T, F, Fut>(&self, user_id: &str, f: F) -> trellis_core::Result<T>
    where
        F: Fn(Arc<S>) -> Fut,
        Fut: std::future::Future<Output = trellis_core::Result<T>>,
    {
        // The set of workers is read again before each attempt: workers that joined while
        // the call was being moved are candidates too, and one tried already is not tried
        // again within the call.
        let mut tried: Vec<String> = Vec::new();
        let mut last = None;
        while let Some(worker) = self.order(user_id).into_iter().find(|w| !tried.contains(&w.name)) {
            let departed = self.departure(&worker.name);
            let answer = tokio::select! {
                answer = f(worker.service) => answer,
                () = departed => Err(trellis_core::Error::new(
                    trellis_core::ErrorCode::Unknown,
                    "The sync worker left while the call was under way",
                )
                .with_status(503)),
            };
            match answer {
                // Only an unreachable or failing worker is retried elsewhere; a Matrix error is
                // an answer.
                Err(e) if e.is_internal() || crate::status::is_unavailable(&e) => {
                    tracing::warn!(worker = %worker.name, error = ?e, "sync worker failed; trying the next one");
                    tried.push(worker.name);
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| {
            trellis_core::Error::new(trellis_core::ErrorCode::Unknown, "No sync worker is available").with_status(503)
        }))
    }
}

/// The rendezvous score of a (worker, user) pair: FNV-1a over both, mixed (stable across
/// processes and releases, so every gateway agrees).
fn score(worker: &str, user: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in worker.bytes().chain([0xff]).chain(user.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    // FNV's last byte barely reaches the high bits: finish with a 64-bit mixer.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ceb9fe1a85ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool whose "service" is just a name: these tests look at the order and the moves.
    type Names = Pool<str>;

    fn pool(names: &[&str]) -> Names {
        let workers = names.iter().map(|n| Worker { name: (*n).into(), service: Arc::from(*n) }).collect();
        Pool::new(workers, SyncBalance::User)
    }

    fn first(pool: &Names, user: &str) -> String {
        pool.order(user)[0].name.clone()
    }

    #[tokio::test]
    async fn adding_or_removing_a_worker_moves_only_its_share_of_users() {
        let users: Vec<String> = (0..3000).map(|i| format!("@user{i}:example.org")).collect();
        let three = pool(&["http://a:1", "http://b:1", "http://c:1"]);
        let before: Vec<String> = users.iter().map(|u| first(&three, u)).collect();
        // Spread roughly evenly.
        for name in ["http://a:1", "http://b:1", "http://c:1"] {
            let share = before.iter().filter(|w| *w == name).count();
            assert!((800..1200).contains(&share), "{name} holds {share} of 3000");
        }
        // A fourth worker takes about a quarter, all from the others; nobody else moves.
        three.set_workers(pool(&["http://a:1", "http://b:1", "http://c:1", "http://d:1"]).workers.read().to_vec());
        let after: Vec<String> = users.iter().map(|u| first(&three, u)).collect();
        let moved: Vec<usize> = (0..users.len()).filter(|&i| before[i] != after[i]).collect();
        assert!(moved.iter().all(|&i| after[i] == "http://d:1"), "only moves to the new worker");
        assert!((550..950).contains(&moved.len()), "{} of 3000 moved", moved.len());
        // Removing b moves exactly b's users, each to its second choice.
        let without_b = pool(&["http://a:1", "http://c:1", "http://d:1"]);
        for (i, u) in users.iter().enumerate() {
            let now = first(&without_b, u);
            match after[i].as_str() {
                "http://b:1" => assert_eq!(now, three.order(u)[1].name),
                kept => assert_eq!(now, kept),
            }
        }
    }

    #[tokio::test]
    async fn every_gateway_orders_the_same_whatever_the_listing_order() {
        let one = pool(&["http://a:1", "http://b:1", "http://c:1"]);
        let other = pool(&["http://c:1", "http://a:1", "http://b:1"]);
        for i in 0..100 {
            let user = format!("@u{i}:x");
            let names = |p: &Names| p.order(&user).into_iter().map(|w| w.name).collect::<Vec<_>>();
            assert_eq!(names(&one), names(&other));
        }
    }

    #[tokio::test]
    async fn a_call_moves_to_a_worker_that_joined_after_it_started() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let pool = Pool::new(vec![Worker { name: "http://a:1".into(), service: a.clone() }], SyncBalance::User);
        let replacement = vec![Worker { name: "http://b:1".into(), service: b.clone() }];
        let answered = pool
            .call("@u:x", |worker| {
                let on_a = Arc::ptr_eq(&worker, &a);
                if on_a {
                    // a is replaced by b while the call waits on a (a rolling update).
                    pool.set_workers(replacement.clone());
                }
                async move {
                    if on_a {
                        std::future::pending::<()>().await;
                    }
                    Ok("answered by b")
                }
            })
            .await;
        assert_eq!(answered.unwrap(), "answered by b");
    }
}
