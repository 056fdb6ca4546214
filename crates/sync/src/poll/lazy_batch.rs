//! The lazy-loading records of the fast path (which member event each device was sent, and at
//! which position), written to PostgreSQL in batches: when a new member speaks in a big room,
//! every device of the room gets the member's event at once, and one statement records them
//! all instead of one per device.
//!
//! A record is only a saving — it spares the device a member event it already has. One
//! that is late or lost (a worker stopped before writing it) makes a later exact sync send
//! that member event again, which the spec allows; never one the device lacks. A late record
//! never replaces a newer one (the write keeps the higher position).

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use parking_lot::Mutex;
use trellis_core::{Result, shutdown::Shutdown};

use crate::SyncWorker;

/// How long records gather before they are written.
const GATHER: Duration = Duration::from_millis(50);
/// Records written by one statement at most.
const MAX_BATCH: usize = 5_000;

const RECORD: &str = "INSERT INTO lazy_members_sent AS s (user_id, device_id, room_id, member_id, event_id, pos) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
     ON CONFLICT (user_id, device_id, room_id, member_id) DO UPDATE SET event_id = EXCLUDED.event_id, pos = EXCLUDED.pos \
     WHERE s.pos <= EXCLUDED.pos";

/// `(user, device, room, member)` → `(event ID, position)`.
type Key = (String, String, String, String);

#[derive(Default)]
pub struct LazyBatch {
    pending: Mutex<HashMap<Key, (String, i64)>>,
    queued: tokio::sync::Notify,
}

impl LazyBatch {
    /// Queues the record that `member`'s event `event_id` went to the device at `pos`.
    pub fn record(&self, (user, device): (&str, &str), room: &str, member: &str, event_id: &str, pos: i64) {
        let key = (user.to_owned(), device.to_owned(), room.to_owned(), member.to_owned());
        let mut pending = self.pending.lock();
        match pending.get_mut(&key) {
            Some(old) if old.1 > pos => {}
            Some(old) => *old = (event_id.to_owned(), pos),
            None => {
                pending.insert(key, (event_id.to_owned(), pos));
            }
        }
        drop(pending);
        self.queued.notify_one();
    }

    fn take(&self) -> Vec<(Key, (String, i64))> {
        let mut pending = self.pending.lock();
        if pending.len() <= MAX_BATCH {
            return pending.drain().collect();
        }
        let keys: Vec<Key> = pending.keys().take(MAX_BATCH).cloned().collect();
        keys.into_iter().filter_map(|k| pending.remove(&k).map(|v| (k, v))).collect()
    }
}

impl SyncWorker {
    /// Writes every queued record; records that fail to be written are dropped (see above).
    pub(crate) async fn flush_lazy_records(&self) -> Result<usize> {
        let mut written = 0;
        loop {
            let batch = self.lazy_batch.take();
            if batch.is_empty() {
                return Ok(written);
            }
            let records = batch
                .iter()
                .map(|((u, d, r, m), (e, p))| (u.as_str(), d.as_str(), r.as_str(), m.as_str(), e.as_str(), *p));
            write(&self.pool.get().await?, records).await?;
            written += batch.len();
        }
    }
}

/// Writes records `(user, device, room, member, event ID, position)`, each keeping the higher
/// position where one is already stored (the fast path's batches and the exact path's own
/// writes both go through here).
pub(crate) async fn write<'a>(
    client: &deadpool_postgres::Client,
    records: impl Iterator<Item = (&'a str, &'a str, &'a str, &'a str, &'a str, i64)>,
) -> Result<()> {
    let (mut users, mut devices, mut rooms, mut members, mut events, mut positions) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (u, d, r, m, e, p) in records {
        users.push(u);
        devices.push(d);
        rooms.push(r);
        members.push(m);
        events.push(e);
        positions.push(p);
    }
    if users.is_empty() {
        return Ok(());
    }
    let stmt = client.prepare_cached(RECORD).await?;
    client.execute(&stmt, &[&users, &devices, &rooms, &members, &events, &positions]).await?;
    Ok(())
}

/// Writes the queued records a moment after they come, and once more at shutdown.
pub(crate) async fn run(worker: Weak<SyncWorker>, batch: Arc<LazyBatch>, shutdown: Shutdown) {
    loop {
        let stopping = tokio::select! {
            _ = batch.queued.notified() => false,
            _ = shutdown.wait() => true,
        };
        if !stopping {
            tokio::time::sleep(GATHER).await;
        }
        let Some(w) = worker.upgrade() else { return };
        match w.flush_lazy_records().await {
            Ok(n) => metrics::counter!("trellis_sync_lazy_records_written_total").increment(n as u64),
            Err(e) => {
                tracing::warn!(error = ?e, "writing lazy-loading records failed; devices may get member events again")
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_member_is_queued_once_at_its_latest_position() {
        let batch = LazyBatch::default();
        batch.record(("@a:x", "D"), "!r:x", "@b:x", "$new", 20);
        batch.record(("@a:x", "D"), "!r:x", "@b:x", "$old", 10);
        batch.record(("@a:x", "E"), "!r:x", "@b:x", "$new", 20);
        let mut taken = batch.take();
        taken.sort();
        assert_eq!(taken.len(), 2, "one record per device and member");
        assert_eq!(taken[0].1, ("$new".to_owned(), 20), "an older record does not replace a newer one");
        assert!(batch.take().is_empty());
    }
}
