//! Batch ends heard only by the processes a batch concerns (Redis bus). Each channel's
//! events wake-up of a small batch names every channel of the batch; a process knows the batch
//! has ended once it has heard each named channel it listens to, so no process hears of a
//! batch that touches none of its channels. Batches of more than [`MAX_LISTED`] channels keep
//! the shared batch-end marker instead: naming them all in every message would cost more than
//! the marker saves.
//!
//! This relies on what the marker already relied on: one publisher (the rooms writer's
//! announcer, publishing batch after batch) and Redis delivering one client's publishes in
//! order, so the messages of a batch reach a process before any of the next batch. A named
//! channel whose message never comes (subscribed a moment after the publish) closes the batch
//! when the next one begins, or after [`PATIENCE`].

use std::time::{Duration, Instant};

use foldhash::HashSet as FastSet;
use trellis_core::{Stream, StreamPos};

use crate::hub::Hub;

/// The largest batch whose messages name their channels.
pub(crate) const MAX_LISTED: usize = 16;
/// How long an open batch waits for a named channel's message.
pub(crate) const PATIENCE: Duration = Duration::from_millis(50);

/// The payload of each channel's message of a small events batch: the position, then every
/// channel key of the batch, one per line.
pub(crate) fn encode_listed(pos: StreamPos, keys: &[String]) -> String {
    let mut out = pos.to_string();
    for k in keys {
        out.push('\n');
        out.push_str(k);
    }
    out
}

/// A wake-up: its stream, position, and for a listed events batch the batch's channel keys.
pub(crate) fn decode(payload: &str) -> Option<(Stream, StreamPos, Vec<&str>)> {
    let mut lines = payload.split('\n');
    let (stream, pos) = crate::decode(lines.next()?)?;
    let listed: Vec<&str> = lines.collect();
    (listed.is_empty() || stream == Stream::Events).then_some((stream, pos, listed))
}

struct Open {
    pos: StreamPos,
    /// Named channels this process listens to and has not heard in this batch yet.
    awaiting: FastSet<String>,
    deadline: Instant,
}

/// The events batch a process is hearing, if it has not heard all of it yet.
#[derive(Default)]
pub(crate) struct Batches {
    open: Option<Open>,
}

impl Batches {
    /// The events wake-up of `key` at `pos`, in a batch naming `listed`.
    pub(crate) fn heard(&mut self, hub: &Hub, key: &str, pos: StreamPos, listed: &[&str]) {
        hub.dispatch(key, Stream::Events, pos);
        if let Some(open) = &self.open
            && open.pos < pos
        {
            // A later batch began: in-order delivery means the open one is complete.
            hub.batch_end(open.pos);
            self.open = None;
        }
        if self.open.as_ref().is_some_and(|o| o.pos > pos) {
            // Out of order (not expected): woken with the open batch, at its end.
            return;
        }
        let open = self.open.get_or_insert_with(|| Open {
            pos,
            awaiting: hub.listening(listed.iter().copied()),
            deadline: Instant::now() + PATIENCE,
        });
        open.awaiting.remove(key);
        if open.awaiting.is_empty() {
            self.open = None;
            hub.batch_end(pos);
        }
    }

    /// The shared marker of a large batch at `pos`.
    pub(crate) fn marker(&mut self, hub: &Hub, pos: StreamPos) {
        if self.open.as_ref().is_some_and(|o| o.pos <= pos) {
            self.open = None;
        }
        hub.batch_end(pos);
    }

    /// A barrier came back with the watermark `pos`: every batch up to it has been heard.
    pub(crate) fn caught_up(&mut self, hub: &Hub, pos: StreamPos) {
        if let Some(open) = &self.open
            && open.pos <= pos
        {
            hub.batch_end(open.pos);
            self.open = None;
        }
        hub.complete_to(pos);
    }

    /// When the open batch stops waiting, if one is open.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.deadline)
    }

    /// Ends the open batch without the messages still awaited.
    pub(crate) fn give_up(&mut self, hub: &Hub) {
        if let Some(open) = self.open.take() {
            metrics::counter!("trellis_bus_batches_given_up_total").increment(1);
            tracing::debug!(pos = open.pos, missing = ?open.awaiting, "ending a batch without all its wake-ups");
            hub.batch_end(open.pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_payloads_round_trip_and_plain_ones_still_decode() {
        let keys = vec!["p.r.!a:x".to_owned(), "p.u.@b:x".to_owned()];
        let payload = encode_listed(42, &keys);
        assert_eq!(decode(&payload), Some((Stream::Events, 42, vec!["p.r.!a:x", "p.u.@b:x"])));
        assert_eq!(decode("42"), Some((Stream::Events, 42, vec![])));
        let receipts = crate::encode(Stream::Receipts, 7);
        assert_eq!(decode(&receipts), Some((Stream::Receipts, 7, vec![])));
        assert_eq!(decode(&format!("{receipts}\np.r.!a:x")), None, "only events batches are listed");
        assert_eq!(decode("x\nfoo"), None);
    }
}
