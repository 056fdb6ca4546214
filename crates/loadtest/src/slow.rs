//! The `slow-clients` scenario: thousands of connections that hold the server without
//! finishing a request — silent ones, request heads trickled a byte at a time, bodies half
//! sent and then trickled — from source addresses 127.0.0.2 and up (so a per-address cap
//! applies to each attacker address), reopened whenever the server closes them; meanwhile
//! real clients on the URL's own address register, send and sync, and their latency is
//! measured.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use serde_json::json;
use tokio::{io::AsyncWriteExt, net::TcpSocket, sync::watch, time::Instant};

use crate::{
    cli::Args,
    client::{Http, register},
    stats::{Errors, Latency, histogram, record},
};

/// How attacking connections fared.
#[derive(Default)]
struct Held {
    /// Open now.
    open: AtomicU64,
    opened: AtomicU64,
    /// Connections that could not be opened (refused, or the local port range ran out).
    connect_failed: AtomicU64,
    /// Closed by the server (a timeout or a cap) while being held.
    closed_by_server: AtomicU64,
}

/// What an attacking connection sends.
#[derive(Clone, Copy)]
enum Kind {
    Silent,
    TrickledHead,
    HalfBody,
}

/// One attacking slot: opens a connection from `source`, holds it as `kind` says until the
/// server closes it, then opens another, until `stop`.
async fn attacker(target: SocketAddr, source: Ipv4Addr, kind: Kind, held: Arc<Held>, stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let socket = match TcpSocket::new_v4().and_then(|s| s.bind(SocketAddr::new(source.into(), 0)).map(|_| s)) {
            Ok(s) => s,
            Err(_) => {
                held.connect_failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(mut stream) = socket.connect(target).await else {
            held.connect_failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        held.opened.fetch_add(1, Ordering::Relaxed);
        held.open.fetch_add(1, Ordering::Relaxed);
        let head = "POST /_matrix/client/v3/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
        let opening: Vec<u8> = match kind {
            Kind::Silent => Vec::new(),
            Kind::TrickledHead => head.as_bytes()[..1].to_vec(),
            Kind::HalfBody => format!("{head}Content-Length: 4096\r\n\r\n{{\"username\":\"").into_bytes(),
        };
        let mut alive = stream.write_all(&opening).await.is_ok();
        let mut sent = opening.len();
        let (mut reader, mut writer) = stream.split();
        let mut sink = [0u8; 512];
        while alive && !*stop.borrow() {
            tokio::select! {
                // Anything from the server (a 408, a 503/429 refusal) or EOF ends the hold.
                r = tokio::io::AsyncReadExt::read(&mut reader, &mut sink) => {
                    if matches!(r, Ok(0) | Err(_)) {
                        alive = false;
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(5)) => {
                    let byte = match kind {
                        Kind::Silent => None,
                        Kind::TrickledHead => head.as_bytes().get(sent % head.len()).copied(),
                        Kind::HalfBody => Some(b'a'),
                    };
                    if let Some(b) = byte {
                        alive = writer.write_all(&[b]).await.is_ok();
                        sent += 1;
                    }
                }
            }
        }
        held.open.fetch_sub(1, Ordering::Relaxed);
        if !alive {
            held.closed_by_server.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A real client: registers, then sends and syncs in a loop, timing every request.
/// Registrations go two at a time: each hashes a password, and a burst of them would
/// measure the CPU of this machine rather than the connection handling.
async fn real(
    args: &Args,
    http: &Http,
    name: String,
    stop: watch::Receiver<bool>,
    errors: Errors,
    registering: Arc<tokio::sync::Semaphore>,
) -> Vec<(u8, u64)> {
    let mut times = Vec::new();
    let base = args.url_for(0);
    let permit = registering.acquire().await;
    let t = Instant::now();
    let registered = register(http, base, &name, &args.password).await;
    drop(permit);
    let Ok(user) = registered.map_err(|f| errors.add(&f.kind)) else {
        return times;
    };
    times.push((0, t.elapsed().as_micros() as u64));
    let Ok(room) = user.create_room(http, &json!({"preset": "private_chat"})).await else {
        errors.add("createRoom");
        return times;
    };
    let filter = crate::receiver::filter(10);
    let mut since: Option<String> = None;
    for i in 0u64.. {
        if *stop.borrow() {
            break;
        }
        let t = Instant::now();
        match user.send_message(http, &room, &format!("t{i}"), &json!({"msgtype": "m.text", "body": "hi"})).await {
            Ok(()) => times.push((1, t.elapsed().as_micros() as u64)),
            Err(f) => errors.add(&f.kind),
        }
        let t = Instant::now();
        match user.sync(http, since.as_deref(), &filter, 0, args.request_timeout()).await {
            Ok(body) => {
                times.push((2, t.elapsed().as_micros() as u64));
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                since = v["next_batch"].as_str().map(str::to_owned);
            }
            Err(f) => errors.add(&f.kind),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    times
}

pub async fn run(args: &Args, http: &Http, prefix: &str) -> anyhow::Result<()> {
    let url = args.url_for(0);
    let authority = url.strip_prefix("http://").context("slow-clients needs an http:// URL")?;
    let target: SocketAddr = authority.parse().context("slow-clients needs http://IP:PORT")?;
    let held = Arc::new(Held::default());
    let (stop_tx, stop) = watch::channel(false);
    let addresses = args.attack_addresses.clamp(1, 253);
    let mut attackers = Vec::new();
    for i in 0..args.attack_connections {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % addresses) as u8);
        let kind = [Kind::Silent, Kind::TrickledHead, Kind::HalfBody][i % 3];
        attackers.push(tokio::spawn(attacker(target, source, kind, held.clone(), stop.clone())));
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Let the attack build up before measuring the real clients.
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.open.load(Ordering::Relaxed) < args.attack_connections as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_at_start = held.open.load(Ordering::Relaxed);
    eprintln!(
        "slow-clients: {open_at_start} attacking connections open from {addresses} addresses; real clients start"
    );

    let errors = Errors::default();
    let (real_stop_tx, real_stop) = watch::channel(false);
    let min_open = Arc::new(AtomicU64::new(open_at_start));
    let sampler = {
        let (held, min_open, real_stop) = (held.clone(), min_open.clone(), real_stop.clone());
        tokio::spawn(async move {
            while !*real_stop.borrow() {
                min_open.fetch_min(held.open.load(Ordering::Relaxed), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let mut clients = Vec::new();
    let registering = Arc::new(tokio::sync::Semaphore::new(2));
    for i in 0..args.receivers {
        let (args, http, errors, stop) = (args.clone(), http.clone(), errors.clone(), real_stop.clone());
        let (name, registering) = (format!("{prefix}real{i}"), registering.clone());
        clients.push(tokio::spawn(async move { real(&args, &http, name, stop, errors, registering).await }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    real_stop_tx.send_replace(true);
    let mut by_op = [histogram(), histogram(), histogram()];
    // Requests that do no deliberate CPU work (registration hashes a password).
    let mut all = histogram();
    for c in clients {
        for (op, us) in c.await? {
            record(&mut by_op[op as usize], us);
            if op > 0 {
                record(&mut all, us);
            }
        }
    }
    sampler.await?;
    let open_at_end = held.open.load(Ordering::Relaxed);
    stop_tx.send_replace(true);
    for a in attackers {
        a.abort();
    }

    let line = |name: &str, l: Latency| {
        println!(
            "{name:<9} {:>6} requests  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
            l.count, l.p50_ms, l.p99_ms, l.max_ms
        )
    };
    println!(
        "attack: {} connections wanted from {addresses} addresses; open at start {open_at_start}, lowest while measured {}, at end {open_at_end}; opened {}, closed by the server {}, could not connect {}",
        args.attack_connections,
        min_open.load(Ordering::Relaxed),
        held.opened.load(Ordering::Relaxed),
        held.closed_by_server.load(Ordering::Relaxed),
        held.connect_failed.load(Ordering::Relaxed)
    );
    println!("real clients: {} for {} s", args.receivers, args.duration);
    line("register", Latency::of(&by_op[0]));
    line("send", Latency::of(&by_op[1]));
    line("sync", Latency::of(&by_op[2]));
    line("send+sync", Latency::of(&all));
    let errors = errors.snapshot();
    println!("real-client errors: {errors:?}");
    let p99 = Latency::of(&all).p99_ms;
    anyhow::ensure!(errors.is_empty(), "real clients saw errors");
    anyhow::ensure!(p99 < 1000.0, "real clients' p99 {p99:.0} ms is not under one second");
    Ok(())
}
