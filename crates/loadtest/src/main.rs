//! `trellis-loadtest`: a bounded load test of any Matrix homeserver. Sets up users and rooms,
//! starts long-polling receivers, sends paced messages for a fixed window, drains, reports.

mod chaos;
mod cli;
mod client;
mod conn;
mod pacing;
mod procstat;
mod receiver;
mod report;
mod scenarios;
mod sender;
mod setup;
mod sliding;
mod slow;
mod stats;
mod sync_body;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use clap::Parser;
use tokio::{sync::watch, time::Instant};

use crate::{
    cli::Args,
    client::Http,
    pacing::Plan,
    procstat::Sample,
    report::{ProcUsage, Report},
    stats::{Errors, Latency, Received, histogram},
};

type Samples = BTreeMap<u32, Sample>;

fn sample_all(pids: &[u32]) -> Samples {
    pids.iter().filter_map(|p| procstat::sample(*p).map(|s| (*p, s))).collect()
}

/// The allocator the server uses: on a machine the load shares with the server, the load
/// tool's own allocation work is kept small.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.validate()?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = args.user_prefix.clone().unwrap_or_else(|| format!("lt{}_", &run_id[..8]));
    let http = Http::new(args.request_timeout())?;
    match args.scenario {
        cli::Scenario::Fanout => {}
        cli::Scenario::FirstSync => return scenarios::first_sync(&args, &http, &prefix).await,
        cli::Scenario::IdleSync => return scenarios::idle_sync(&args, &http, &prefix).await,
        cli::Scenario::Held => return scenarios::held(&args, &http, &prefix).await,
        cli::Scenario::SlidingFirst => return sliding::first(&args, &http, &prefix).await,
        cli::Scenario::SlidingLive => return sliding::live(&args, &http, &prefix).await,
        cli::Scenario::Chaos => return chaos::run(&args, &http, &prefix).await,
        cli::Scenario::SlowClients => return slow::run(&args, &http, &prefix).await,
    }
    let filter = receiver::filter(args.timeline_limit);
    let mut pids = args.server_pid.clone();
    pids.push(std::process::id());
    let before = sample_all(&pids);

    let setup_started = Instant::now();
    let setup = setup::run(&args, &http, &prefix, &filter).await?;
    let setup_s = setup_started.elapsed().as_secs_f64();
    if let Some(cmd) = &args.after_setup {
        let status = tokio::process::Command::new("sh").arg("-c").arg(cmd).status().await?;
        anyhow::ensure!(status.success(), "--after-setup command failed: {status}");
    }

    let plan = Plan {
        rate: args.rate,
        warmup: args.warmup,
        duration: args.duration,
        senders: args.senders,
        rooms: args.rooms,
    };
    let errors = Errors::default();
    let shared = Arc::new(receiver::Shared {
        http: http.clone(),
        poll_timeout_ms: args.poll_timeout_ms,
        hard_timeout: Duration::from_millis(args.poll_timeout_ms) + args.request_timeout(),
        run_id: run_id.clone(),
        first_measured: plan.first_measured(),
        total: plan.total(),
        errors: errors.clone(),
        delivered: Default::default(),
        sliding: args.sliding.then(|| receiver::sliding_request(args.timeline_limit)),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let receivers: Vec<_> = setup
        .receivers
        .into_iter()
        .map(|r| tokio::spawn(receiver::run(r.user, r.filter_id, r.since, shared.clone(), stop_rx.clone())))
        .collect();
    // Let the first long-polls reach the server before anything is sent.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let start = Instant::now();
    eprintln!("run: sending {} msg/s for {} s warmup + {} s measured", args.rate, args.warmup, args.duration);
    let sampler = {
        let pids = pids.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(start + plan.window_start()).await;
            let a = (sample_all(&pids), procstat::machine());
            tokio::time::sleep_until(start + plan.window_end()).await;
            (a, (sample_all(&pids), procstat::machine()))
        })
    };
    let rooms = Arc::new(setup.rooms);
    let senders: Vec<_> = setup
        .senders
        .into_iter()
        .enumerate()
        .map(|(index, user)| {
            let job = sender::Job {
                index,
                user,
                rooms: rooms.clone(),
                plan,
                run_id: run_id.clone(),
                max_in_flight: args.max_in_flight,
                http: http.clone(),
                errors: errors.clone(),
            };
            tokio::spawn(sender::run(job, start))
        })
        .collect();
    let mut sent_ok = HashSet::new();
    let mut sent_failed = HashSet::new();
    let (mut unsent, mut max_lag, mut send_latency) = (0, Duration::ZERO, histogram());
    for s in senders {
        let s = s.await?;
        sent_ok.extend(s.ok);
        sent_failed.extend(s.failed);
        unsent += s.unsent;
        max_lag = max_lag.max(s.max_lag);
        send_latency.add(&s.latency)?;
    }

    // Drain: wait for the deliveries still in flight, up to --drain seconds.
    let expected = sent_ok.len() as u64 * receivers.len() as u64;
    let drain_started = Instant::now();
    let drain_limit = Duration::from_secs_f64(args.drain);
    while shared.delivered.load(Ordering::Relaxed) < expected && drain_started.elapsed() < drain_limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_s = drain_started.elapsed().as_secs_f64();
    stop_tx.send_replace(true);
    let mut received: Vec<Received> = Vec::with_capacity(receivers.len());
    for r in receivers {
        received.push(r.await?);
    }
    let ((window_a, machine_a), (window_b, machine_b)) = sampler.await?;
    let cores = procstat::cores();
    let machine_cpu_pct = match (machine_a, machine_b) {
        (Some((busy_a, all_a)), Some((busy_b, all_b))) if all_b > all_a => {
            Some(100.0 * cores as f64 * (busy_b - busy_a) as f64 / (all_b - all_a) as f64)
        }
        _ => None,
    };
    let after = sample_all(&pids);

    let mut delivery = histogram();
    for r in &received {
        delivery.add(&r.latency)?;
    }
    let processes = pids
        .iter()
        .filter_map(|p| {
            let get = |m: &Samples| m.get(p).cloned();
            Some(ProcUsage::from_samples(
                &get(&before)?,
                &get(&window_a)?,
                &get(&window_b)?,
                &get(&after)?,
                args.duration,
            ))
        })
        .collect();
    let report = Report {
        urls: args.url.clone(),
        receivers: args.receivers,
        senders: args.senders,
        rooms: args.rooms,
        rate: args.rate,
        duration_s: args.duration,
        warmup_s: args.warmup,
        poll_timeout_ms: args.poll_timeout_ms,
        setup_s,
        planned: plan.measured_count(),
        sent_ok: sent_ok.len() as u64,
        send_failed: sent_failed.len() as u64,
        unsent,
        achieved_rate: sent_ok.len() as f64 / args.duration,
        max_send_lag_ms: max_lag.as_secs_f64() * 1000.0,
        send: Latency::of(&send_latency),
        delivery: Latency::of(&delivery),
        deliveries: stats::account(&sent_ok, &sent_failed, &received),
        sync_responses: received.iter().map(|r| r.polls).sum(),
        drain_s,
        errors: errors.snapshot(),
        processes,
        machine_cpu_pct,
        cores,
    };
    print!("{report}");
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
