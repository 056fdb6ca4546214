//! A sender: sends its share of the schedule, each message when it is due (open loop, at
//! most `max_in_flight` at once), with a fresh transaction ID, its sequence number and its
//! send timestamp in the content. Stops at the end of the measuring window.

use std::{sync::Arc, time::Duration};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};

use crate::{
    client::{Failure, Http, User},
    pacing::Plan,
    stats::{Errors, histogram, now_us, record},
};

/// What one sender did.
pub struct Sent {
    /// Measured messages the server accepted.
    pub ok: Vec<u64>,
    /// Measured messages whose send failed (they may still have been persisted).
    pub failed: Vec<u64>,
    /// Measured messages not sent because the sender was still behind at the window's end.
    pub unsent: u64,
    /// HTTP round trip of measured sends.
    pub latency: Histogram<u64>,
    /// Worst delay between a message being due and its send starting.
    pub max_lag: Duration,
}

pub struct Job {
    pub index: usize,
    pub user: User,
    pub rooms: Arc<Vec<String>>,
    pub plan: Plan,
    pub run_id: String,
    pub max_in_flight: usize,
    pub http: Http,
    pub errors: Errors,
}

/// Sends from `start`; returns once every send has finished.
pub async fn run(job: Job, start: Instant) -> Sent {
    let job = Arc::new(job);
    let mut sent = Sent { ok: vec![], failed: vec![], unsent: 0, latency: histogram(), max_lag: Duration::ZERO };
    let slots = Arc::new(Semaphore::new(job.max_in_flight));
    let end = start + job.plan.window_end();
    let mut tasks: JoinSet<(u64, u64, Result<(), Failure>)> = JoinSet::new();
    let collect = |sent: &mut Sent, (seq, us, r): (u64, u64, Result<(), Failure>)| {
        if let Err(f) = &r {
            job.errors.add(&f.kind);
        }
        if job.plan.is_measured(seq) {
            record(&mut sent.latency, us);
            match r {
                Ok(()) => sent.ok.push(seq),
                Err(_) => sent.failed.push(seq),
            }
        }
    };
    let seqs: Vec<u64> = job.plan.seqs_of(job.index).collect();
    for (k, &seq) in seqs.iter().enumerate() {
        let due = start + job.plan.due(seq);
        tokio::time::sleep_until(due).await;
        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
        let now = Instant::now();
        if now >= end {
            // Still behind when the window closed: the rest is not sent at all.
            sent.unsent += seqs[k..].iter().filter(|s| job.plan.is_measured(**s)).count() as u64;
            break;
        }
        sent.max_lag = sent.max_lag.max(now - due);
        let job = job.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let room = &job.rooms[job.plan.room_of(seq)];
            let sent_us = now_us();
            let content = json!({
                "msgtype": "m.text",
                "body": format!("load test message {seq}"),
                "lt_run": job.run_id,
                "lt_seq": seq,
                "lt_sent_us": sent_us,
            });
            let txn = format!("{}-{seq}", job.run_id);
            let t = std::time::Instant::now();
            let r = job.user.send_message(&job.http, room, &txn, &content).await;
            (seq, t.elapsed().as_micros() as u64, r)
        });
        while let Some(done) = tasks.try_join_next() {
            collect(&mut sent, done.expect("send task"));
        }
    }
    while let Some(done) = tasks.join_next().await {
        collect(&mut sent, done.expect("send task"));
    }
    sent
}
