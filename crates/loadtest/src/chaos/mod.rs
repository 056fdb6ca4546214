//! The `chaos` scenario: a mixed chat load (paced senders into a few rooms, long-polling
//! receivers with read receipts, media uploads and downloads) through several gateways,
//! while the `--fault` commands run one after another; then every receiver's deliveries
//! are checked against what was accepted, and each fault's recovery is measured.

mod load;
mod report;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{sync::watch, time::Instant};

use crate::{cli::Args, client::Http, receiver, setup};
use load::{Client, Log, Shared};

/// A fault: its name and the shell command that injects it (and restores the process).
pub struct Fault {
    pub name: String,
    pub command: String,
}

fn faults(args: &Args) -> anyhow::Result<Vec<Fault>> {
    args.fault
        .iter()
        .map(|f| {
            let (name, command) = f.split_once('=').context("--fault takes NAME=COMMAND")?;
            Ok(Fault { name: name.to_owned(), command: command.to_owned() })
        })
        .collect()
}

/// When each fault began and its command ended, in seconds since the start of the load.
pub struct Injected {
    pub name: String,
    pub began: f64,
    pub restored: f64,
    pub ok: bool,
}

pub async fn run(args: &Args, http: &Http, prefix: &str) -> anyhow::Result<()> {
    let faults = faults(args)?;
    // Deep enough that a receiver paused for a fault never gets a gappy timeline.
    let filter = receiver::filter(args.timeline_limit.max(5_000));
    let setup = setup::run(args, http, prefix, &filter).await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let urls = args.url.iter().map(|u| u.trim_end_matches('/').to_owned()).collect();
    let s = Arc::new(Shared { http: http.clone(), urls, start: Instant::now(), run_id, log: Default::default() });
    s.log.lock().expect("log").delivered = vec![Vec::new(); setup.receivers.len()];

    let (stop_send, send_rx) = watch::channel(false);
    let (stop_recv, recv_rx) = watch::channel(false);
    let mut receivers = Vec::new();
    for (slot, r) in setup.receivers.into_iter().enumerate() {
        let c = Arc::new(Client::new(r.user, slot));
        let task = load::receiver(s.clone(), c, slot, r.filter_id, r.since, args.poll_timeout_ms, recv_rx.clone());
        receivers.push(tokio::spawn(task));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rooms = Arc::new(setup.rooms);
    let rate = args.rate / setup.senders.len() as f64;
    let mut senders = Vec::new();
    for (i, user) in setup.senders.iter().cloned().enumerate() {
        let c = Arc::new(Client::new(user, i));
        senders.push(tokio::spawn(load::sender(s.clone(), c, i as u64, rooms.clone(), rate, send_rx.clone())));
    }
    let media = tokio::spawn(load::media(s.clone(), Arc::new(Client::new(setup.senders[0].clone(), 1)), send_rx));
    eprintln!(
        "chaos: {} msg/s from {} senders into {} room(s), {} receivers, media once a second; first fault in {} s",
        args.rate,
        setup.senders.len(),
        rooms.len(),
        receivers.len(),
        args.warmup
    );

    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let mut injected = Vec::new();
    for f in &faults {
        let began = s.now();
        eprintln!("chaos: {:>6.1} s  fault {}: {}", began, f.name, f.command);
        let status = tokio::process::Command::new("sh").arg("-c").arg(&f.command).status().await?;
        let restored = s.now();
        eprintln!("chaos: {:>6.1} s  fault {} restored ({status})", restored, f.name);
        injected.push(Injected { name: f.name.clone(), began, restored, ok: status.success() });
        tokio::time::sleep(Duration::from_secs_f64(args.fault_gap)).await;
    }
    let load_end = s.now();
    stop_send.send_replace(true);
    for t in senders {
        t.await?;
    }
    media.await?;

    // Drain: until every receiver has every accepted message, or --drain.
    let drain_until = Instant::now() + Duration::from_secs_f64(args.drain);
    while Instant::now() < drain_until {
        let done = {
            let log = s.log.lock().expect("log");
            log.delivered.iter().all(|d| d.len() >= log.sent.len())
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_recv.send_replace(true);
    for t in receivers {
        t.await?;
    }
    let log: Log = std::mem::take(&mut *s.log.lock().expect("log"));
    let out = report::Report::new(&log, &injected, load_end, args.rate);
    print!("{out}");
    anyhow::ensure!(out.lost == 0 && out.duplicates == 0, "events lost or duplicated");
    Ok(())
}
