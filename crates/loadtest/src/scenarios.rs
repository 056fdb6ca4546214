//! The scenarios besides fan-out: a user in many rooms syncing from scratch (`first-sync`),
//! incremental syncs with nothing new (`idle-sync`), and server memory per held long-poll
//! (`held`).

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::{
    cli::Args,
    client::{Http, User, register},
    procstat,
    stats::{Latency, histogram, record},
};

/// A user in `--sync-rooms` rooms with `--events-per-room` messages each.
async fn populated_user(args: &Args, http: &Http, prefix: &str) -> anyhow::Result<User> {
    let user = register(http, args.url_for(0), &format!("{prefix}reader"), &args.password)
        .await
        .map_err(|e| anyhow::anyhow!("register: {e}"))?;
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut jobs = Vec::new();
    for r in 0..args.sync_rooms {
        let (user, http, sem) = (user.clone(), http.clone(), sem.clone());
        let per_room = args.events_per_room;
        jobs.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let room = user.create_room(&http, &json!({"preset": "private_chat", "name": format!("room {r}")})).await?;
            for i in 0..per_room {
                let content = json!({"msgtype": "m.text", "body": format!("message {i} in room {r}")});
                user.send_message(&http, &room, &format!("r{r}m{i}"), &content).await?;
            }
            Ok::<_, crate::client::Failure>(())
        }));
    }
    for j in jobs {
        j.await?.map_err(|e| anyhow::anyhow!("populating rooms: {e}"))?;
    }
    Ok(user)
}

/// The filter a client like Element uses: lazy-loaded members, a modest timeline.
fn client_filter() -> String {
    json!({"room": {"timeline": {"limit": 10}, "state": {"lazy_load_members": true}}}).to_string()
}

pub async fn first_sync(args: &Args, http: &Http, prefix: &str) -> anyhow::Result<()> {
    let user = populated_user(args, http, prefix).await?;
    let filter = client_filter();
    let mut latency = histogram();
    let mut bytes = 0usize;
    for _ in 0..args.repeat {
        let started = Instant::now();
        let body = user
            .sync(http, None, &filter, 0, args.request_timeout())
            .await
            .map_err(|e| anyhow::anyhow!("sync: {e}"))?;
        record(&mut latency, started.elapsed().as_micros() as u64);
        bytes = body.len();
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let rooms = v["rooms"]["join"].as_object().map_or(0, |m| m.len());
        anyhow::ensure!(rooms == args.sync_rooms, "expected {} joined rooms, got {rooms}", args.sync_rooms);
    }
    let l = Latency::of(&latency);
    println!(
        "first-sync: {} rooms x {} events, {} syncs: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms; {} KiB per response",
        args.sync_rooms,
        args.events_per_room,
        args.repeat,
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.max_ms,
        bytes / 1024
    );
    if args.json {
        println!(
            "{}",
            json!({"scenario": "first-sync", "rooms": args.sync_rooms, "events_per_room": args.events_per_room, "latency": l, "bytes": bytes})
        );
    }
    Ok(())
}

pub async fn idle_sync(args: &Args, http: &Http, prefix: &str) -> anyhow::Result<()> {
    let user = populated_user(args, http, prefix).await?;
    let filter = client_filter();
    let first = user.sync(http, None, &filter, 0, args.request_timeout()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let since =
        serde_json::from_slice::<serde_json::Value>(&first)?["next_batch"].as_str().unwrap_or_default().to_owned();
    let mut latency = histogram();
    for _ in 0..args.repeat {
        let started = Instant::now();
        let body = user
            .sync(http, Some(&since), &filter, 0, args.request_timeout())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        record(&mut latency, started.elapsed().as_micros() as u64);
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        anyhow::ensure!(v["rooms"]["join"].as_object().is_none_or(|m| m.is_empty()), "an idle sync returned rooms");
    }
    let l = Latency::of(&latency);
    println!(
        "idle-sync: user in {} rooms, {} no-change incremental syncs: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        args.sync_rooms, args.repeat, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
    );
    if args.json {
        println!("{}", json!({"scenario": "idle-sync", "rooms": args.sync_rooms, "latency": l}));
    }
    Ok(())
}

/// Holds `--receivers` long-polls open in an idle room and reads the server's memory
/// before and while they are held.
pub async fn held(args: &Args, http: &Http, prefix: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!args.server_pid.is_empty(), "held needs --server-pid to read the server's memory");
    let owner = register(http, args.url_for(0), &format!("{prefix}owner"), &args.password)
        .await
        .map_err(|e| anyhow::anyhow!("register: {e}"))?;
    let room = owner.create_room(http, &json!({"preset": "public_chat"})).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let filter = client_filter();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut ready = Vec::new();
    for i in 0..args.receivers {
        let (http, sem, room, filter) = (http.clone(), sem.clone(), room.clone(), filter.clone());
        let (base, password, name) = (args.url_for(i).to_owned(), args.password.clone(), format!("{prefix}h{i}"));
        let timeout = args.request_timeout();
        ready.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let user = register(&http, &base, &name, &password).await?;
            user.join(&http, &room).await?;
            let body = user.sync(&http, None, &filter, 0, timeout).await?;
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            Ok::<_, crate::client::Failure>((user, v["next_batch"].as_str().unwrap_or_default().to_owned()))
        }));
    }
    let mut users = Vec::new();
    for r in ready {
        users.push(r.await?.map_err(|e| anyhow::anyhow!("setup: {e}"))?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = |pids: &[u32]| -> u64 { pids.iter().filter_map(|p| procstat::sample(*p)).map(|s| s.rss_kib).sum() };
    let before = rss(&args.server_pid);
    let poll_ms = args.poll_timeout_ms.max(60_000);
    let mut polls = Vec::new();
    for (user, since) in users {
        let (http, filter) = (http.clone(), filter.clone());
        let hard = Duration::from_millis(poll_ms) + Duration::from_secs(30);
        polls.push(tokio::spawn(async move { user.sync(&http, Some(&since), &filter, poll_ms, hard).await }));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = rss(&args.server_pid);
    for p in &polls {
        p.abort();
    }
    let per_poll = (during as f64 - before as f64) * 1024.0 / args.receivers as f64;
    println!(
        "held: {} long-polls held; server RSS {} -> {} KiB; {:.1} KiB per held long-poll",
        args.receivers,
        before,
        during,
        per_poll / 1024.0
    );
    if args.json {
        println!(
            "{}",
            json!({"scenario": "held", "held": args.receivers, "rss_before_kib": before, "rss_during_kib": during, "bytes_per_poll": per_poll})
        );
    }
    Ok(())
}
