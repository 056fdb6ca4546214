//! What the chaos run found: delivery accounting over all receivers (lost, duplicated) and,
//! per fault, the recovery of sends and deliveries, the failures clients saw and the load
//! held, printed as a Markdown table.

use std::{
    collections::{HashMap, HashSet},
    fmt,
};

use super::{
    Injected,
    load::{Class, Log},
};

/// One fault's figures; times in seconds from the fault's start.
pub struct Row {
    pub name: String,
    pub window_s: f64,
    pub restored_s: f64,
    pub command_ok: bool,
    /// Until a send succeeded after the last failed send attempt (0: no send failed).
    pub send_recovery_s: f64,
    /// Until every receiver had a message sent after the fault began.
    pub delivery_recovery_s: f64,
    pub server_errors: u64,
    pub connection_errors: u64,
    /// 5xx and connection errors by operation.
    pub by_op: Vec<(&'static str, u64)>,
    pub accepted_per_s: f64,
    pub max_send_s: f64,
    pub max_delivery_s: f64,
    /// The slowest delivery of a message first sent in the window: (message, receiver, first
    /// send attempt, delivered), in seconds of the run, to trace it in the servers' logs.
    pub slowest: Option<(u64, usize, f64, f64)>,
}

pub struct Report {
    pub rate: f64,
    pub accepted: u64,
    pub given_up: u64,
    pub receivers: usize,
    pub expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Deliveries of messages whose send was given up on.
    pub unacknowledged: u64,
    pub limited: u64,
    pub media_ok: u64,
    pub media_mismatch: u64,
    pub rows: Vec<Row>,
    /// The first few lost deliveries: (message, receiver, accepted at).
    pub lost_examples: Vec<(u64, usize, f64)>,
    /// Every failed attempt of the run by kind.
    pub failures: Vec<(String, u64)>,
}

impl Report {
    pub fn new(log: &Log, faults: &[Injected], load_end: f64, rate: f64) -> Report {
        let accepted: HashSet<u64> = log.sent.iter().map(|s| s.0).collect();
        let first: HashMap<u64, f64> = log.sent.iter().map(|s| (s.0, s.1)).collect();
        let (mut lost, mut duplicates, mut unacknowledged) = (0, 0, 0);
        let mut lost_examples = Vec::new();
        for (slot, got) in log.delivered.iter().enumerate() {
            let mut count: HashMap<u64, u64> = HashMap::new();
            for (id, _) in got {
                *count.entry(*id).or_default() += 1;
            }
            for id in accepted.iter().filter(|id| !count.contains_key(id)) {
                lost += 1;
                if lost_examples.len() < 10 {
                    let at = log.sent.iter().find(|s| s.0 == *id).map_or(f64::NAN, |s| s.2);
                    lost_examples.push((*id, slot, at));
                }
            }
            duplicates += count.values().map(|c| c - 1).sum::<u64>();
            unacknowledged += count.keys().filter(|id| !accepted.contains(id)).count() as u64;
        }
        let rows = faults
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let end = faults.get(i + 1).map_or(load_end, |n| n.began);
                row(log, f, end, &first)
            })
            .collect();
        Report {
            rate,
            accepted: accepted.len() as u64,
            given_up: log.failed.len() as u64,
            receivers: log.delivered.len(),
            expected: accepted.len() as u64 * log.delivered.len() as u64,
            lost,
            duplicates,
            unacknowledged,
            limited: log.limited,
            media_ok: log.media_ok,
            media_mismatch: log.media_mismatch,
            rows,
            lost_examples,
            failures: {
                let mut by_kind: HashMap<&str, u64> = HashMap::new();
                for a in log.attempts.iter().filter(|a| a.2 != Class::Ok) {
                    *by_kind.entry(&a.3).or_default() += 1;
                }
                let mut v: Vec<_> = by_kind.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
                v.sort();
                v
            },
        }
    }
}

fn row(log: &Log, f: &Injected, end: f64, first: &HashMap<u64, f64>) -> Row {
    let t0 = f.began;
    let within = |t: f64| t >= t0 && t < end;
    let failed_sends: Vec<f64> =
        log.attempts.iter().filter(|a| a.1 == "send" && a.2 != Class::Ok && within(a.0)).map(|a| a.0).collect();
    let send_recovery_s = match failed_sends.iter().copied().reduce(f64::max) {
        None => 0.0,
        Some(last) => log.sent.iter().map(|s| s.2).filter(|t| *t > last).reduce(f64::min).map_or(f64::NAN, |t| t - t0),
    };
    // Each receiver's first delivery of a message first sent after the fault began.
    let delivery_recovery_s = log
        .delivered
        .iter()
        .map(|got| {
            got.iter()
                .filter(|(id, _)| first.get(id).is_some_and(|s| *s >= t0))
                .map(|(_, t)| *t)
                .reduce(f64::min)
                .map_or(f64::NAN, |t| t - t0)
        })
        .fold(0.0, |a: f64, b| if b.is_nan() || a.is_nan() { f64::NAN } else { a.max(b) });
    let (mut server_errors, mut connection_errors) = (0, 0);
    let mut by_op: HashMap<&'static str, u64> = HashMap::new();
    for a in log.attempts.iter().filter(|a| within(a.0)) {
        match a.2 {
            Class::Server => server_errors += 1,
            Class::Connection => connection_errors += 1,
            _ => continue,
        }
        *by_op.entry(a.1).or_default() += 1;
    }
    let mut by_op: Vec<_> = by_op.into_iter().collect();
    by_op.sort();
    let sent: Vec<_> = log.sent.iter().filter(|s| within(s.1)).collect();
    let slowest = log
        .delivered
        .iter()
        .enumerate()
        .flat_map(|(slot, got)| got.iter().map(move |(id, t)| (slot, *id, *t)))
        .filter_map(|(slot, id, t)| first.get(&id).filter(|s| within(**s)).map(|s| (id, slot, *s, t)))
        .max_by(|a, b| (a.3 - a.2).total_cmp(&(b.3 - b.2)));
    let max_delivery_s = slowest.map_or(0.0, |(_, _, s, t)| t - s);
    Row {
        name: f.name.clone(),
        window_s: end - t0,
        restored_s: f.restored - t0,
        command_ok: f.ok,
        send_recovery_s,
        delivery_recovery_s,
        server_errors,
        connection_errors,
        by_op,
        accepted_per_s: sent.len() as f64 / (end - t0),
        max_send_s: sent.iter().map(|s| s.2 - s.1).fold(0.0, f64::max),
        max_delivery_s,
        slowest,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| fault | restored after | sends again after | delivered again after | 5xx | connection errors | load held | slowest send | slowest delivery |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|---|---|")?;
        for r in &self.rows {
            let failed = if r.command_ok { "" } else { " (command failed)" };
            writeln!(
                f,
                "| {}{failed} | {:.1} s | {:.1} s | {:.1} s | {} | {} | {:.1}/{} msg/s | {:.1} s | {:.1} s |",
                r.name,
                r.restored_s,
                r.send_recovery_s,
                r.delivery_recovery_s,
                r.server_errors,
                r.connection_errors,
                r.accepted_per_s,
                self.rate,
                r.max_send_s,
                r.max_delivery_s
            )?;
        }
        writeln!(f)?;
        for r in self.rows.iter().filter(|r| !r.by_op.is_empty()) {
            let ops: Vec<String> = r.by_op.iter().map(|(op, n)| format!("{op} {n}")).collect();
            writeln!(f, "failures during {} ({:.0} s window): {}", r.name, r.window_s, ops.join(", "))?;
        }
        for r in &self.rows {
            if let Some((id, slot, sent, got)) = r.slowest {
                writeln!(
                    f,
                    "slowest delivery during {}: message {id}, first sent at {sent:.1} s, reached receiver {slot} at {got:.1} s",
                    r.name
                )?;
            }
        }
        for (id, slot, at) in &self.lost_examples {
            writeln!(f, "lost: message {id}, accepted at {at:.1} s, never reached receiver {slot}")?;
        }
        let failures: Vec<String> = self.failures.iter().map(|(k, n)| format!("{k} × {n}")).collect();
        writeln!(f, "failed attempts over the whole run: {}", failures.join(", "))?;
        writeln!(
            f,
            "accepted {} messages ({} given up), {} receivers: expected {} deliveries, lost {}, duplicates {}, \
             deliveries of unacknowledged sends {}, limited timelines {}; media round trips {} ok, {} mismatched",
            self.accepted,
            self.given_up,
            self.receivers,
            self.expected,
            self.lost,
            self.duplicates,
            self.unacknowledged,
            self.limited,
            self.media_ok,
            self.media_mismatch
        )
    }
}
