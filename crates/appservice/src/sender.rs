//! One appservice's delivery loop: from its stored position, the next events that concern it
//! go out as one transaction; the position (and the next transaction ID) move only once the
//! appservice answered 2xx, so a failure or a restart sends the same transaction again, with
//! the same ID, and nothing is lost or reordered.

use std::{sync::Arc, time::Duration};

use ruma::{
    OwnedTransactionId,
    api::{OutgoingRequestExt, appservice::event::push_events},
    serde::Raw,
};
use trellis_core::{Error, Result, appservice::Appservice, shutdown::Shutdown, time::now_ms};
use trellis_storage::events::{COLUMNS, EventRow, Format};

use trellis_bus::Channel;

use crate::{Ctx, interest};

/// Events looked at per step (a step may deliver fewer, or none).
const SCAN: i64 = 1_000;
/// First wait after a failure; it doubles up to `retry_max`.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// How often PostgreSQL is looked at when no wake-up came (the bus is a hint).
const IDLE_POLL: Duration = Duration::from_secs(5);

const INIT_POSITION: &str = "INSERT INTO appservice_positions (appservice_id, pos) \
     SELECT $1, pos FROM stream_positions WHERE stream = 'events' ON CONFLICT DO NOTHING";
const POSITION: &str = "SELECT pos, next_txn FROM appservice_positions WHERE appservice_id = $1";
const HEAD: &str = "SELECT pos FROM stream_positions WHERE stream = 'events'";
const ADVANCE: &str = "UPDATE appservice_positions SET pos = $2, next_txn = $3 WHERE appservice_id = $1";

enum Step {
    /// Caught up with the announced position.
    Idle,
    /// There may be more to look at now.
    More,
}

pub(crate) async fn deliver(ctx: Arc<Ctx>, appservice: Appservice, shutdown: Shutdown) {
    let id = appservice.id().to_owned();
    let subscription = match ctx.bus.subscribe(&[Channel::Appservices]).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, appservice = %id, "no wake-ups from the bus; polling PostgreSQL");
            None
        }
    };
    let mut failures = 0u32;
    loop {
        let outcome = step(&ctx, &appservice).await;
        let wait = match outcome {
            Ok(Step::More) => {
                failures = 0;
                continue;
            }
            Ok(Step::Idle) => {
                failures = 0;
                None
            }
            Err(e) => {
                failures += 1;
                let delay = FIRST_RETRY.saturating_mul(1 << failures.min(16)).min(ctx.settings.retry_max);
                tracing::warn!(appservice = %id, error = %e, retry_in_ms = delay.as_millis() as u64, "appservice transaction failed");
                Some(delay)
            }
        };
        match (wait, &subscription) {
            (Some(delay), _) => tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait() => return,
            },
            (None, Some(sub)) => tokio::select! {
                _ = sub.wait() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.wait() => return,
            },
            (None, None) => tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.wait() => return,
            },
        }
    }
}

/// Looks at the events after the appservice's position and sends those that concern it.
async fn step(ctx: &Ctx, appservice: &Appservice) -> Result<Step> {
    let client = ctx.pool.get().await?;
    let id = appservice.id();
    client.execute(&client.prepare_cached(INIT_POSITION).await?, &[&id]).await?;
    let row = client.query_one(&client.prepare_cached(POSITION).await?, &[&id]).await?;
    let (pos, txn): (i64, i64) = (row.get(0), row.get(1));
    let head: i64 = client.query_one(&client.prepare_cached(HEAD).await?, &[]).await?.get(0);
    if head <= pos {
        return Ok(Step::Idle);
    }
    let select = format!("SELECT {COLUMNS} FROM events WHERE pos > $1 AND pos <= $2 ORDER BY pos LIMIT $3");
    let rows = client.query(&client.prepare_cached(&select).await?, &[&pos, &head, &SCAN]).await?;
    let mut facts = interest::RoomFacts::default();
    let mut events = Vec::new();
    let mut scanned = pos;
    for row in &rows {
        let event = EventRow::from_row(row);
        if interest::concerns(&client, appservice, &event, &mut facts, &ctx.settings.server_name).await? {
            events.push(event.render(None, Format::Client, now_ms()));
        }
        scanned = event.pos;
        if events.len() >= ctx.settings.max_batch {
            break;
        }
    }
    // Nothing committed lies past the rows read when fewer than asked for came back.
    if rows.len() < SCAN as usize && events.len() < ctx.settings.max_batch {
        scanned = head;
    }
    let next_txn = match events.is_empty() {
        true => txn,
        false => {
            send(ctx, appservice, txn, &events).await?;
            metrics::counter!("trellis_appservice_events_sent_total", "appservice" => id.to_owned())
                .increment(events.len() as u64);
            tracing::debug!(appservice = id, txn, events = events.len(), pos = scanned, "appservice transaction sent");
            txn + 1
        }
    };
    client.execute(&client.prepare_cached(ADVANCE).await?, &[&id, &scanned, &next_txn]).await?;
    Ok(if scanned >= head { Step::Idle } else { Step::More })
}

/// `PUT {url}/_matrix/app/v1/transactions/{txn}` with `Authorization: Bearer hs_token`.
async fn send(ctx: &Ctx, appservice: &Appservice, txn: i64, events: &[String]) -> Result<()> {
    let url = appservice.registration.url.as_deref().unwrap_or_default().trim_end_matches('/');
    let events = events
        .iter()
        .map(|json| serde_json::value::RawValue::from_string(json.clone()).map(Raw::from_json))
        .collect::<Result<Vec<_>, _>>()?;
    let txn_id = OwnedTransactionId::from(txn.to_string());
    let request = push_events::v1::Request::new(txn_id, events)
        .try_into_http_request::<Vec<u8>>(url, &appservice.registration.hs_token, ())
        .map_err(|e| Error::internal(format!("building the transaction: {e}")))?;
    let request =
        reqwest::Request::try_from(request).map_err(|e| Error::internal(format!("transaction request: {e}")))?;
    let response = ctx.http.execute(request).await.map_err(|e| Error::internal(format!("unreachable: {e}")))?;
    let status = response.status();
    metrics::counter!("trellis_appservice_transactions_total", "appservice" => appservice.id().to_owned(), "status" => status.as_str().to_owned())
        .increment(1);
    if !status.is_success() {
        return Err(Error::internal(format!("the appservice answered {status}")));
    }
    Ok(())
}
