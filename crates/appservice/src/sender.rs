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
use serde_json::Value;
use trellis_core::{Error, Result, appservice::Appservice, shutdown::Shutdown, time::now_ms};
use trellis_storage::events::{COLUMNS, EventRow, Format};

use trellis_bus::Channel;

use crate::{Ctx, ephemeral, interest};

/// Events looked at per step (a step may deliver fewer, or none).
const SCAN: i64 = 1_000;
/// First wait after a failure; it doubles up to `retry_max`.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// How often PostgreSQL is looked at when no wake-up came (the bus is a hint).
const IDLE_POLL: Duration = Duration::from_secs(5);
/// How often PostgreSQL is looked at for an appservice that receives ephemeral data.
const EPHEMERAL_POLL: Duration = Duration::from_millis(250);

const INIT_POSITION: &str = "INSERT INTO appservice_positions (appservice_id, pos) \
     SELECT $1, pos FROM stream_positions WHERE stream = 'events' ON CONFLICT DO NOTHING";
const POSITION: &str = "SELECT pos, next_txn FROM appservice_positions WHERE appservice_id = $1";
const HEAD: &str = "SELECT pos FROM stream_positions WHERE stream = 'events'";
const ADVANCE: &str = "UPDATE appservice_positions SET pos = $2, next_txn = $3 WHERE appservice_id = $1";
const ADVANCE_ALL: &str = "UPDATE appservice_positions SET pos = $2, next_txn = $3, \
     receipts_pos = $4, typing_pos = $5, presence_pos = $6, to_device_pos = $7 WHERE appservice_id = $1";

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
    // Typing, receipts, presence and to-device messages come with no wake-up on the bus
    // (the sync service announces them to rooms and users only): looked for more often.
    let idle_poll = match appservice.ephemeral || appservice.to_device {
        true => EPHEMERAL_POLL,
        false => IDLE_POLL,
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
                _ = tokio::time::sleep(idle_poll) => {}
                _ = shutdown.wait() => return,
            },
            (None, None) => tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.wait() => return,
            },
        }
    }
}

/// Looks at the events (and, when it asks for them, the ephemeral data and to-device
/// messages) after the appservice's positions and sends those that concern it.
async fn step(ctx: &Ctx, appservice: &Appservice) -> Result<Step> {
    let client = ctx.pool.get().await?;
    let id = appservice.id();
    client.execute(&client.prepare_cached(INIT_POSITION).await?, &[&id]).await?;
    let row = client.query_one(&client.prepare_cached(POSITION).await?, &[&id]).await?;
    let (pos, txn): (i64, i64) = (row.get(0), row.get(1));
    let head: i64 = client.query_one(&client.prepare_cached(HEAD).await?, &[]).await?.get(0);
    let mut facts = interest::RoomFacts::default();
    let mut events = Vec::new();
    let mut scanned = pos;
    if head > pos {
        let select = format!("SELECT {COLUMNS} FROM events WHERE pos > $1 AND pos <= $2 ORDER BY pos LIMIT $3");
        let rows = client.query(&client.prepare_cached(&select).await?, &[&pos, &head, &SCAN]).await?;
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
    }
    let extra = match appservice.ephemeral || appservice.to_device {
        true => Some(ephemeral::gather(&client, appservice, &mut facts, &ctx.settings.server_name).await?),
        false => None,
    };
    let (ephemeral, to_device) = match &extra {
        Some((_, found)) => (found.ephemeral.as_slice(), found.to_device.as_slice()),
        None => (&[][..], &[][..]),
    };
    let moved = scanned != pos || extra.as_ref().is_some_and(|(at, found)| found.next != *at);
    if !moved {
        return Ok(Step::Idle);
    }
    let next_txn = match events.is_empty() && ephemeral.is_empty() && to_device.is_empty() {
        true => txn,
        false => {
            send(ctx, appservice, txn, &events, ephemeral, to_device).await?;
            metrics::counter!("trellis_appservice_events_sent_total", "appservice" => id.to_owned())
                .increment(events.len() as u64);
            tracing::debug!(
                appservice = id,
                txn,
                events = events.len(),
                ephemeral = ephemeral.len(),
                to_device = to_device.len(),
                pos = scanned,
                "appservice transaction sent"
            );
            txn + 1
        }
    };
    // Every position moves in one statement: a crash leaves all of them before the
    // transaction (sent again, under its ID) or all after it.
    match &extra {
        Some((_, found)) => {
            let n = found.next;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                [&id, &scanned, &next_txn, &n.receipts, &n.typing, &n.presence, &n.to_device];
            client.execute(&client.prepare_cached(ADVANCE_ALL).await?, &params).await?;
        }
        None => {
            client.execute(&client.prepare_cached(ADVANCE).await?, &[&id, &scanned, &next_txn]).await?;
        }
    }
    let more = scanned < head || extra.as_ref().is_some_and(|(_, found)| found.more);
    Ok(if more { Step::More } else { Step::Idle })
}

/// `PUT {url}/_matrix/app/v1/transactions/{txn}` with `Authorization: Bearer hs_token`; the
/// ephemeral data under `ephemeral` and MSC2409's `de.sorunome.msc2409.ephemeral`, to-device
/// messages under MSC4203's `to_device` and `de.sorunome.msc2409.to_device` (as Synapse, for
/// libraries reading either).
async fn send(
    ctx: &Ctx,
    appservice: &Appservice,
    txn: i64,
    events: &[String],
    ephemeral: &[Value],
    to_device: &[Value],
) -> Result<()> {
    let url = appservice.registration.url.as_deref().unwrap_or_default().trim_end_matches('/');
    let events = events
        .iter()
        .map(|json| serde_json::value::RawValue::from_string(json.clone()).map(Raw::from_json))
        .collect::<Result<Vec<_>, _>>()?;
    let txn_id = OwnedTransactionId::from(txn.to_string());
    let mut request = push_events::v1::Request::new(txn_id, events)
        .try_into_http_request::<Vec<u8>>(url, &appservice.registration.hs_token, ())
        .map_err(|e| Error::internal(format!("building the transaction: {e}")))?;
    if !ephemeral.is_empty() || !to_device.is_empty() {
        let mut body: serde_json::Map<String, Value> = serde_json::from_slice(request.body())?;
        for (key, list) in [
            ("ephemeral", ephemeral),
            ("de.sorunome.msc2409.ephemeral", ephemeral),
            ("to_device", to_device),
            ("de.sorunome.msc2409.to_device", to_device),
        ] {
            if !list.is_empty() {
                body.insert(key.to_owned(), Value::Array(list.to_vec()));
            }
        }
        *request.body_mut() = serde_json::to_vec(&body)?;
    }
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
