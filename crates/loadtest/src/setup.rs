//! Setup before the measurement: register every user, create the rooms, join everyone and
//! give each receiver its first `next_batch` from an initial sync. Runs with bounded
//! concurrency, retries rate limits, and fails the run if any user cannot be set up.

use std::{future::Future, time::Duration, time::Instant};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::json;

use crate::{
    cli::Args,
    client::{Failure, Http, User, register},
    receiver::{first_batch, first_pos, sliding_request},
};

/// Everyone, ready to measure.
pub struct Setup {
    pub senders: Vec<User>,
    pub receivers: Vec<Receiver>,
    pub rooms: Vec<String>,
}

/// A receiving user, its stored `/sync` filter and the `next_batch` of its initial sync.
pub struct Receiver {
    pub user: User,
    pub filter_id: String,
    pub since: String,
}

/// Retries rate limits (as long as the server says) and transport failures a few times.
async fn retrying<T, F, Fut>(mut f: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_rate_limited() && attempt < 30 => {
                tokio::time::sleep(e.retry_after.unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(10))).await;
            }
            Err(e) if !e.kind.contains(" http ") && attempt < 3 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

pub async fn run(args: &Args, http: &Http, prefix: &str, filter: &str) -> anyhow::Result<Setup> {
    let started = Instant::now();
    let names: Vec<(usize, String)> = (0..args.senders)
        .map(|i| format!("{prefix}s{i}"))
        .chain((0..args.receivers).map(|i| format!("{prefix}r{i}")))
        .enumerate()
        .collect();
    let users: Vec<User> = stream::iter(names)
        .map(|(i, name)| async move {
            retrying(|| register(http, args.url_for(i), &name, &args.password))
                .await
                .with_context(|| format!("registering {name}"))
        })
        .buffered(args.concurrency)
        .try_collect()
        .await?;
    let (senders, receivers) = users.split_at(args.senders);
    eprintln!("setup: registered {} users in {:.1} s", users.len(), started.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut rooms = Vec::new();
    for k in 0..args.rooms {
        let body = json!({"preset": "public_chat", "name": format!("{prefix} load test {k}")});
        rooms.push(retrying(|| senders[0].create_room(http, &body)).await.context("creating a room")?);
    }
    let joiners: Vec<(&User, String)> =
        senders[1..].iter().chain(receivers).flat_map(|u| rooms.iter().map(move |r| (u, r.clone()))).collect();
    let joins = joiners.len();
    stream::iter(joiners)
        .map(|(u, room)| async move {
            retrying(|| u.join(http, &room)).await.with_context(|| format!("{} joining {room}", u.user_id))
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    eprintln!("setup: {} room(s), {joins} joins in {:.1} s", rooms.len(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let receivers: Vec<Receiver> = stream::iter(receivers.iter().cloned())
        .map(|u| async move {
            if args.sliding {
                let request = sliding_request(args.timeline_limit);
                let pos = retrying(|| first_pos(&u.base, &u, &request, args.request_timeout()))
                    .await
                    .with_context(|| format!("sliding sync connection of {}", u.user_id))?;
                return anyhow::Ok(Receiver { user: u, filter_id: String::new(), since: pos });
            }
            let filter_id =
                retrying(|| u.upload_filter(http, filter)).await.with_context(|| format!("filter of {}", u.user_id))?;
            let since = retrying(|| first_batch(http, &u, &filter_id, args.request_timeout()))
                .await
                .with_context(|| format!("initial sync of {}", u.user_id))?;
            anyhow::Ok(Receiver { user: u, filter_id, since })
        })
        .buffered(args.concurrency)
        .try_collect()
        .await?;
    eprintln!("setup: {} initial syncs in {:.1} s", receivers.len(), t.elapsed().as_secs_f64());
    Ok(Setup { senders: senders.to_vec(), receivers, rooms })
}
