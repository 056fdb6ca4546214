//! Measurements: latency histograms (µs), error counts by kind, and the delivery accounting
//! (expected, received, lost, duplicates) over every (receiver, message) pair.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Microseconds since the Unix epoch (sender and receivers share this machine's clock).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// A latency histogram from 1 µs to 1 hour at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Records `us`, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.max(1));
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// Failures by kind, shared by every task.
#[derive(Clone, Default)]
pub struct Errors(Arc<Mutex<BTreeMap<String, u64>>>);

impl Errors {
    pub fn add(&self, kind: &str) {
        *self.0.lock().expect("errors lock").entry(kind.to_owned()).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().expect("errors lock").clone()
    }
}

/// What one receiver saw of the measured messages.
pub struct Received {
    pub seen: HashSet<u64>,
    pub duplicates: u64,
    pub latency: Histogram<u64>,
    /// `/sync` responses this receiver got (including empty, timed-out long-polls).
    pub polls: u64,
}

impl Default for Received {
    fn default() -> Received {
        Received { seen: HashSet::new(), duplicates: 0, latency: histogram(), polls: 0 }
    }
}

impl Received {
    /// Notes one delivery; returns whether it was the first of `seq` to this receiver.
    pub fn deliver(&mut self, seq: u64, sent_us: u64, at_us: u64) -> bool {
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            return false;
        }
        record(&mut self.latency, at_us.saturating_sub(sent_us));
        true
    }
}

/// The delivery totals over all receivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Accounting {
    /// Messages whose send succeeded, times receivers.
    pub expected: u64,
    /// Of those, pairs that arrived (before the drain ended).
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Arrivals of messages whose send had failed (e.g. timed out but persisted).
    pub from_failed_sends: u64,
}

/// Matches what receivers saw against what senders know was accepted.
pub fn account<'a>(
    sent_ok: &HashSet<u64>,
    sent_failed: &HashSet<u64>,
    receivers: impl IntoIterator<Item = &'a Received>,
) -> Accounting {
    let mut a = Accounting::default();
    for r in receivers {
        a.expected += sent_ok.len() as u64;
        a.received += r.seen.iter().filter(|s| sent_ok.contains(s)).count() as u64;
        a.from_failed_sends += r.seen.iter().filter(|s| sent_failed.contains(s)).count() as u64;
        a.duplicates += r.duplicates;
    }
    a.lost = a.expected - a.received;
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_milliseconds() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            record(&mut h, us * 1000);
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50_ms - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p90_ms - 900.0).abs() < 1.0, "{l:?}");
        assert!((l.p99_ms - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max_ms - 1000.0).abs() < 1.0, "{l:?}");
        assert_eq!(Latency::of(&histogram()), Latency::default());
    }

    #[test]
    fn clock_skew_and_huge_values_are_clamped() {
        let mut h = histogram();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }

    #[test]
    fn duplicates_are_counted_once_and_not_timed_twice() {
        let mut r = Received::default();
        assert!(r.deliver(7, 1_000, 3_000));
        assert!(!r.deliver(7, 1_000, 9_000));
        assert_eq!((r.duplicates, r.latency.len(), r.latency.max()), (1, 1, 2_000));
    }

    #[test]
    fn accounting_over_receivers() {
        let ok: HashSet<u64> = [1, 2, 3, 4].into();
        let failed: HashSet<u64> = [5].into();
        let mut a = Received::default();
        for s in [1, 2, 3, 4, 5] {
            a.deliver(s, 0, 1);
        }
        a.deliver(2, 0, 1);
        let mut b = Received::default();
        b.deliver(1, 0, 1);
        b.deliver(3, 0, 1);
        let acc = account(&ok, &failed, [&a, &b]);
        assert_eq!(acc, Accounting { expected: 8, received: 6, lost: 2, duplicates: 1, from_failed_sends: 1 });
    }

    #[test]
    fn errors_count_by_kind() {
        let e = Errors::default();
        e.add("sync: timeout");
        e.clone().add("sync: timeout");
        e.add("send: http 502 -");
        let s = e.snapshot();
        assert_eq!((s["sync: timeout"], s["send: http 502 -"]), (2, 1));
    }
}
