//! The summary of a run: printed for people, and optionally as one JSON line.

use std::{collections::BTreeMap, fmt};

use serde::Serialize;

use crate::{
    procstat::Sample,
    stats::{Accounting, Latency},
};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub urls: Vec<String>,
    pub receivers: usize,
    pub senders: usize,
    pub rooms: usize,
    pub rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub poll_timeout_ms: u64,
    pub setup_s: f64,
    /// Messages due in the measuring window.
    pub planned: u64,
    pub sent_ok: u64,
    pub send_failed: u64,
    pub unsent: u64,
    /// Accepted measured sends per second of window.
    pub achieved_rate: f64,
    pub max_send_lag_ms: f64,
    pub send: Latency,
    pub delivery: Latency,
    pub deliveries: Accounting,
    /// `/sync` responses received by all receivers during the run.
    pub sync_responses: u64,
    /// How long the drain waited for the last deliveries.
    pub drain_s: f64,
    pub errors: BTreeMap<String, u64>,
    /// Server processes (`--server-pid`) and, last, the load tool itself.
    pub processes: Vec<ProcUsage>,
    /// Busy CPU of the whole machine during the window, in % of one core (all cores: 100 × cores).
    pub machine_cpu_pct: Option<f64>,
    pub cores: usize,
}

/// Memory and CPU of one process around the measuring window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcUsage {
    pub pid: u32,
    pub name: String,
    pub rss_before_mib: f64,
    /// After setup, when the measuring window starts.
    pub rss_window_start_mib: f64,
    pub rss_after_mib: f64,
    pub peak_rss_mib: f64,
    /// CPU seconds used during the measuring window.
    pub window_cpu_s: f64,
    /// Of one core, averaged over the window.
    pub window_cpu_pct: f64,
}

impl ProcUsage {
    /// From readings before setup, at the window's start and end, and after the drain.
    pub fn from_samples(before: &Sample, start: &Sample, end: &Sample, after: &Sample, window_s: f64) -> ProcUsage {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let cpu = (end.cpu_secs - start.cpu_secs).max(0.0);
        ProcUsage {
            pid: after.pid,
            name: after.name.clone(),
            rss_before_mib: mib(before.rss_kib),
            rss_window_start_mib: mib(start.rss_kib),
            rss_after_mib: mib(after.rss_kib),
            peak_rss_mib: mib(after.hwm_kib),
            window_cpu_s: cpu,
            window_cpu_pct: if window_s > 0.0 { 100.0 * cpu / window_s } else { 0.0 },
        }
    }
}

fn lat(l: &Latency) -> String {
    format!(
        "p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n={})",
        l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load: {} receivers, {} senders, {} msg/s into {} room(s) for {} s (+{} s warmup), poll timeout {} ms, {}",
            self.receivers,
            self.senders,
            self.rate,
            self.rooms,
            self.duration_s,
            self.warmup_s,
            self.poll_timeout_ms,
            self.urls.join(" ")
        )?;
        writeln!(f, "setup:      {:.1} s", self.setup_s)?;
        writeln!(
            f,
            "sent:       {} of {} planned ok, {} failed, {} unsent; {:.2} msg/s achieved (target {}); max lag {:.1} ms",
            self.sent_ok,
            self.planned,
            self.send_failed,
            self.unsent,
            self.achieved_rate,
            self.rate,
            self.max_send_lag_ms
        )?;
        writeln!(f, "send:       {}", lat(&self.send))?;
        writeln!(f, "delivery:   {}", lat(&self.delivery))?;
        let d = &self.deliveries;
        writeln!(
            f,
            "deliveries: expected {}, received {}, LOST {}, DUPLICATES {}, from failed sends {}; drain {:.1} s; {} sync responses",
            d.expected, d.received, d.lost, d.duplicates, d.from_failed_sends, self.drain_s, self.sync_responses
        )?;
        if self.errors.is_empty() {
            writeln!(f, "errors:     none")?;
        } else {
            writeln!(f, "errors:")?;
            for (kind, n) in &self.errors {
                writeln!(f, "  {n:>8}  {kind}")?;
            }
        }
        for p in &self.processes {
            writeln!(
                f,
                "process {:>7} {:<36} RSS {:.0} / {:.0} / {:.0} MiB (before setup / window start / end), peak {:.0} MiB; window CPU {:.1} s ({:.0} % of a core)",
                p.pid,
                p.name,
                p.rss_before_mib,
                p.rss_window_start_mib,
                p.rss_after_mib,
                p.peak_rss_mib,
                p.window_cpu_s,
                p.window_cpu_pct
            )?;
        }
        if let Some(m) = self.machine_cpu_pct {
            writeln!(
                f,
                "machine:    {m:.0} % of a core busy over the window ({} cores = {} %)",
                self.cores,
                100 * self.cores
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cpu: f64, rss: u64, hwm: u64) -> Sample {
        Sample { pid: 7, name: "trellis serve".into(), rss_kib: rss, hwm_kib: hwm, cpu_secs: cpu }
    }

    #[test]
    fn process_usage_over_the_window() {
        let p = ProcUsage::from_samples(
            &sample(1.0, 10240, 10240),
            &sample(2.0, 20480, 20480),
            &sample(17.0, 30720, 40960),
            &sample(18.0, 25600, 40960),
            30.0,
        );
        assert_eq!(
            (p.rss_before_mib, p.rss_window_start_mib, p.rss_after_mib, p.peak_rss_mib),
            (10.0, 20.0, 25.0, 40.0)
        );
        assert_eq!((p.window_cpu_s, p.window_cpu_pct), (15.0, 50.0));
    }

    #[test]
    fn renders_and_serializes() {
        let r = Report {
            urls: vec!["http://127.0.0.1:8008".into()],
            receivers: 2,
            senders: 1,
            rooms: 1,
            rate: 10.0,
            duration_s: 1.0,
            warmup_s: 0.0,
            poll_timeout_ms: 30000,
            setup_s: 0.5,
            planned: 10,
            sent_ok: 10,
            send_failed: 0,
            unsent: 0,
            achieved_rate: 10.0,
            max_send_lag_ms: 0.2,
            send: Latency::default(),
            delivery: Latency { count: 20, p50_ms: 1.0, p90_ms: 2.0, p99_ms: 3.0, max_ms: 4.0 },
            deliveries: Accounting { expected: 20, received: 20, ..Accounting::default() },
            sync_responses: 22,
            drain_s: 0.01,
            errors: [("sync: timeout".to_owned(), 1)].into(),
            processes: vec![],
            machine_cpu_pct: Some(150.0),
            cores: 2,
        };
        let text = r.to_string();
        assert!(text.contains("LOST 0, DUPLICATES 0"), "{text}");
        assert!(text.contains("p99 3.0 ms"), "{text}");
        assert!(text.contains("1  sync: timeout"), "{text}");
        assert!(text.contains("150 % of a core busy"), "{text}");
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["delivery"]["p99_ms"], 3.0);
        assert_eq!(json["deliveries"]["lost"], 0);
    }
}
