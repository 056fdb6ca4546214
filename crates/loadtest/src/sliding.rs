//! Simplified Sliding Sync (MSC4186) scenarios: `sliding-first`, a user in `--sync-rooms`
//! rooms opening a connection with a 20-room window and `timeline_limit` 1 (what Element X's
//! room list asks first), timed per request; `sliding-live`, a message sent into a window
//! room timed until a waiting long-poll of the connection brings it (`--repeat` times).

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{
    cli::Args,
    client::{Http, User},
    scenarios::populated_user,
    stats::{Latency, histogram, record},
};

/// The room list request: the 20 most recent rooms, their latest event and a little state.
fn window() -> Value {
    json!({"lists": {"all": {
        "ranges": [[0, 19]],
        "timeline_limit": 1,
        "required_state": [["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""],
                           ["m.room.member", "$LAZY"], ["m.room.member", "$ME"]],
    }}})
}

async fn open(user: &User, http: &Http, args: &Args, conn: &str) -> anyhow::Result<Value> {
    let mut body = window();
    body["conn_id"] = json!(conn);
    let bytes = user.sliding(http, None, 0, &body, args.request_timeout()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(serde_json::from_slice(&bytes)?)
}

pub async fn first(args: &Args, http: &Http, prefix: &str) -> anyhow::Result<()> {
    let user = populated_user(args, http, prefix).await?;
    let mut latency = histogram();
    let mut bytes = 0;
    for i in 0..args.repeat {
        let started = Instant::now();
        let v = open(&user, http, args, &format!("c{i}")).await?;
        record(&mut latency, started.elapsed().as_micros() as u64);
        bytes = v.to_string().len();
        let rooms = v["rooms"].as_object().map_or(0, |m| m.len());
        anyhow::ensure!(v["lists"]["all"]["count"] == json!(args.sync_rooms), "count: {}", v["lists"]["all"]);
        anyhow::ensure!(rooms == args.sync_rooms.min(20), "expected the window's rooms, got {rooms}");
    }
    let l = Latency::of(&latency);
    println!(
        "sliding-first: {} rooms x {} events, 20-room window, timeline_limit 1, {} connections: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms; {} KiB per response",
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
        println!("{}", json!({"scenario": "sliding-first", "rooms": args.sync_rooms, "latency": l, "bytes": bytes}));
    }
    Ok(())
}

pub async fn live(args: &Args, http: &Http, prefix: &str) -> anyhow::Result<()> {
    let user = populated_user(args, http, prefix).await?;
    let first = open(&user, http, args, "live").await?;
    let room =
        first["rooms"].as_object().and_then(|r| r.keys().next().cloned()).ok_or_else(|| anyhow::anyhow!("no room"))?;
    let mut pos = first["pos"].as_str().unwrap_or_default().to_owned();
    let mut body = window();
    body["conn_id"] = json!("live");
    let mut latency = histogram();
    let timeout = args.request_timeout() + std::time::Duration::from_millis(args.poll_timeout_ms);
    for i in 0..args.repeat {
        // The poll waits first; the message follows it.
        let poll = {
            let (user, http, body, pos) = (user.clone(), http.clone(), body.clone(), pos.clone());
            let wait = args.poll_timeout_ms;
            tokio::spawn(async move { user.sliding(&http, Some(&pos), wait, &body, timeout).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let started = Instant::now();
        let content = json!({"msgtype": "m.text", "body": format!("live {i}")});
        user.send_message(http, &room, &format!("live{i}"), &content).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let bytes = poll.await?.map_err(|e| anyhow::anyhow!("{e}"))?;
        record(&mut latency, started.elapsed().as_micros() as u64);
        let v: Value = serde_json::from_slice(&bytes)?;
        let got = v["rooms"][&room]["timeline"].as_array().and_then(|t| t.last().cloned()).unwrap_or_default();
        anyhow::ensure!(got["content"]["body"] == json!(format!("live {i}")), "the poll brought {v}");
        pos = v["pos"].as_str().unwrap_or_default().to_owned();
    }
    let l = Latency::of(&latency);
    println!(
        "sliding-live: user in {} rooms, {} messages into the window, send to delivery: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        args.sync_rooms, args.repeat, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
    );
    if args.json {
        println!("{}", json!({"scenario": "sliding-live", "rooms": args.sync_rooms, "latency": l}));
    }
    Ok(())
}
