//! The stream tracker: hands out event positions and decides which position readers may see.
//!
//! Transactions commit out of order: position 11 may commit before 10. A reader given a
//! token at 11 would then never see 10. So the tracker announces a position only when every
//! lower position has committed or aborted (the *watermark*); the announcement is written to
//! `stream_positions` and then published on the bus, in that order, so a long-poll that read
//! `stream_positions` after subscribing cannot miss it.
//!
//! Positions come from memory, not a sequence: allocation and registration must be one step,
//! or a lower position could be allocated after the watermark moved past it. That requires a
//! single event writer, which the rooms service guarantees with an advisory lock.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use trellis_bus::{Bus, Channel};
use trellis_core::{Result, StreamPos, shutdown::Shutdown};
use trellis_storage::Pool;

const ANNOUNCE: &str = "UPDATE stream_positions SET pos = $1 WHERE stream = 'events' AND pos < $1";
/// The rooms and member targets of events in `($1, $2]`.
const ORPHANS: &str = "SELECT DISTINCT room_id, CASE WHEN type = 'm.room.member' THEN state_key END \
     FROM events WHERE pos > $1 AND pos <= $2";
/// How far below the last announced position a new writer wakes channels again: the previous
/// writer's last announced batches may not have been published (it announces, then publishes).
const ORPHAN_MARGIN: StreamPos = 1_000;

struct State {
    next: StreamPos,
    in_flight: BTreeSet<StreamPos>,
    /// Committed positions whose wake-ups wait for the watermark.
    pending: BTreeMap<StreamPos, Vec<Channel>>,
}

impl State {
    fn watermark(&self) -> StreamPos {
        match self.in_flight.first() {
            Some(lowest) => lowest - 1,
            None => self.next - 1,
        }
    }
}

pub struct Tracker {
    state: Mutex<State>,
    kick: Notify,
    announced: watch::Sender<StreamPos>,
}

/// Positions taken by one transaction. Dropped without [`Tracker::commit`], they count as
/// aborted, so a failed transaction never holds the watermark back.
pub struct Reservation {
    tracker: Arc<Tracker>,
    positions: Vec<StreamPos>,
    done: bool,
}

impl Reservation {
    pub fn positions(&self) -> &[StreamPos] {
        &self.positions
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            self.tracker.finish(&self.positions, Vec::new());
        }
    }
}

impl Tracker {
    /// Starts the tracker after every event up to `max_pos` has committed (start-up, under
    /// the writer lock) and spawns the announcer; `feed` (the appservice sender's channel,
    /// when appservices are configured) is published with every batch.
    pub async fn start(
        pool: Pool,
        lock: Arc<tokio_postgres::Client>,
        bus: Arc<dyn Bus>,
        max_pos: StreamPos,
        feed: Option<Channel>,
        shutdown: Shutdown,
    ) -> Result<Arc<Tracker>> {
        let client = pool.get().await?;
        let announced: StreamPos =
            client.query_one("SELECT pos FROM stream_positions WHERE stream = 'events'", &[]).await?.get(0);
        lock.execute(ANNOUNCE, &[&max_pos]).await?;
        // A writer that stopped between committing and publishing (or between announcing and
        // publishing) left events nobody was woken for; a sync worker that hears a later batch
        // would answer past them. Wake their channels now, at the announced position.
        let orphans = client.query(ORPHANS, &[&(announced - ORPHAN_MARGIN), &max_pos]).await?;
        let mut channels: Vec<Channel> = Vec::new();
        for row in &orphans {
            let (room, target): (String, Option<String>) = (row.get(0), row.get(1));
            for c in std::iter::once(Channel::Room(room)).chain(target.map(Channel::User)) {
                if !channels.contains(&c) {
                    channels.push(c);
                }
            }
        }
        drop(client);
        if !channels.is_empty() {
            channels.extend(feed.clone());
            tracing::info!(
                channels = channels.len(),
                announced,
                max_pos,
                "waking the channels of the last writer's latest events"
            );
            bus.publish(&channels, max_pos).await;
        }
        let tracker = Arc::new(Tracker {
            state: Mutex::new(State { next: max_pos + 1, in_flight: BTreeSet::new(), pending: BTreeMap::new() }),
            kick: Notify::new(),
            announced: watch::channel(max_pos).0,
        });
        tokio::spawn(announcer(tracker.clone(), Arc::downgrade(&lock), bus, feed, shutdown));
        Ok(tracker)
    }

    /// Reserves `n` consecutive positions.
    pub fn reserve(self: &Arc<Tracker>, n: usize) -> Reservation {
        let mut st = self.state.lock();
        let start = st.next;
        st.next += n as StreamPos;
        let positions: Vec<StreamPos> = (start..start + n as StreamPos).collect();
        st.in_flight.extend(positions.iter().copied());
        Reservation { tracker: self.clone(), positions, done: false }
    }

    /// Marks a reservation committed; `channels` are woken once it is announced.
    pub fn commit(&self, mut reservation: Reservation, channels: Vec<Channel>) -> StreamPos {
        reservation.done = true;
        let last = *reservation.positions.last().unwrap_or(&0);
        self.finish(&reservation.positions, channels);
        last
    }

    fn finish(&self, positions: &[StreamPos], channels: Vec<Channel>) {
        let mut st = self.state.lock();
        for p in positions {
            st.in_flight.remove(p);
        }
        if let Some(last) = positions.last()
            && !channels.is_empty()
        {
            st.pending.insert(*last, channels);
        }
        drop(st);
        self.kick.notify_one();
    }

    /// The highest position readers may see.
    pub fn announced(&self) -> StreamPos {
        *self.announced.borrow()
    }

    /// Waits until `pos` is announced (read-your-writes for the caller that wrote it).
    pub async fn wait_announced(&self, pos: StreamPos) {
        let mut rx = self.announced.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|a| *a >= pos)).await;
    }
}

/// Moves the announced position forward: `stream_positions` first, then the bus.
/// Positions are recorded through the session holding the event-writer lock: a writer whose
/// session died (its successor may already be writing) can never announce again. The
/// session belongs to the rooms service; once it is dropped the announcer stops.
async fn announcer(
    tracker: Arc<Tracker>,
    lock: std::sync::Weak<tokio_postgres::Client>,
    bus: Arc<dyn Bus>,
    feed: Option<Channel>,
    shutdown: Shutdown,
) {
    loop {
        let (watermark, due) = {
            let mut st = tracker.state.lock();
            let w = st.watermark();
            let later = st.pending.split_off(&(w + 1));
            let due = std::mem::replace(&mut st.pending, later);
            (w, due)
        };
        if watermark > tracker.announced() {
            // Retry until PostgreSQL takes it: readers must never see a position that the
            // table does not hold yet.
            let mut backoff = Duration::from_millis(50);
            loop {
                let Some(session) = lock.upgrade() else { return };
                match session.execute(ANNOUNCE, &[&watermark]).await {
                    Ok(_) => break,
                    Err(e) => tracing::warn!(error = %e, "recording the stream position failed"),
                }
                drop(session);
                if shutdown.is_triggered() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            tracker.announced.send_replace(watermark);
            metrics::gauge!("trellis_stream_position", "stream" => "events").set(watermark as f64);
        }
        if !due.is_empty() {
            let mut channels: HashSet<Channel> = HashSet::new();
            for (_, cs) in due {
                channels.extend(cs);
            }
            channels.extend(feed.clone());
            let channels: Vec<Channel> = channels.into_iter().collect();
            bus.publish(&channels, watermark).await;
        }
        tokio::select! {
            _ = tracker.kick.notified() => {}
            _ = shutdown.wait() => return,
        }
    }
}
