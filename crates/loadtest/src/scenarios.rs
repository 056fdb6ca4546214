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
pub(crate) async fn populated_user(args: &Args, http: &Http, prefix: &str) -> anyhow::Result<User> {
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
    let rss = |pids: &[u32]| -> u64 { pids.iter().filter_map(|p| procstat::sample(*p)).map(|s| s.rss_kib).sum() };
    // Registration's password hashing leaves memory the allocator hands back over the next
    // seconds: wait for the RSS to settle before taking the baseline.
    let before = settled(|| rss(&args.server_pid)).await;
    let poll_ms = args.poll_timeout_ms.max(60_000);
    let hard = Duration::from_millis(poll_ms) + Duration::from_secs(30);
    // Held in four steps; memory per poll is the slope through the steps, so a fixed cost
    // (the first connection's buffers, say) does not count as per-poll memory.
    let steps = 4;
    let per_step = users.len().div_ceil(steps);
    let mut points = vec![(0usize, before)];
    let mut polls = Vec::new();
    let mut users = users.into_iter().peekable();
    while users.peek().is_some() {
        for (user, since) in users.by_ref().take(per_step) {
            let (http, filter) = (http.clone(), filter.clone());
            polls.push(tokio::spawn(async move { user.sync(&http, Some(&since), &filter, poll_ms, hard).await }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        points.push((polls.len(), settled(|| rss(&args.server_pid)).await));
    }
    for p in &polls {
        p.abort();
    }
    // The first step also pays one-off costs (buffers and tables sized on first use): the
    // slope through the steps with polls held is the cost of one more poll.
    let per_poll = slope(&points[1..]) * 1024.0;
    let during = points.last().map_or(before, |p| p.1);
    let steps_text: Vec<String> = points.iter().map(|(n, kib)| format!("{n}: {kib}")).collect();
    // An upper bound that needs no fit: all growth, one-off costs included, shared out.
    let growth = (during as f64 - before as f64) / args.receivers as f64;
    println!(
        "held: {} long-polls held; server RSS {} -> {} KiB (held: KiB {}); growth {:.1} KiB per held \
         long-poll, slope after the first step {:.1} KiB",
        args.receivers,
        before,
        during,
        steps_text.join(", "),
        growth,
        per_poll / 1024.0
    );
    if args.json {
        println!(
            "{}",
            json!({"scenario": "held", "held": args.receivers, "rss_before_kib": before, "rss_during_kib": during, "steps": points, "bytes_per_poll": per_poll, "growth_kib_per_poll": growth})
        );
    }
    Ok(())
}

/// Reads `sample` once a second until two readings differ by less than 1 MiB (at most 30 s).
async fn settled(sample: impl Fn() -> u64) -> u64 {
    let mut last = sample();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sample();
        if now.abs_diff(last) < 1024 {
            return now;
        }
        last = now;
    }
    last
}

/// The least-squares slope of `y` over `x`.
fn slope(points: &[(usize, u64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + *x as f64 / n, b + *y as f64 / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        let dx = *x as f64 - mx;
        (a + dx * (*y as f64 - my), b + dx * dx)
    });
    if den == 0.0 { 0.0 } else { num / den }
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn slope_fits_a_line() {
        assert!((slope(&[(0, 100), (10, 120), (20, 140)]) - 2.0).abs() < 1e-9);
        assert!((slope(&[(0, 100), (10, 100)])).abs() < 1e-9);
        assert_eq!(slope(&[(5, 1)]), 0.0);
    }
}
