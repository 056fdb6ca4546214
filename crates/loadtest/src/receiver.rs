//! A receiver: long-polls `/sync` with `since` = the last `next_batch` until told to stop,
//! timing every measured `m.room.message` of this run from its send timestamp to the
//! moment the response body arrived.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Deserialize;
use tokio::sync::watch;

use crate::{
    client::{Failure, Http, User},
    conn::Conn,
    stats::{Errors, Received, now_us},
    sync_body::SyncBody,
};

/// What every receiver shares.
pub struct Shared {
    pub http: Http,
    pub poll_timeout_ms: u64,
    /// Hard timeout of one long-poll.
    pub hard_timeout: Duration,
    pub run_id: String,
    pub first_measured: u64,
    pub total: u64,
    pub errors: Errors,
    /// First deliveries of measured messages over all receivers (for the drain).
    pub delivered: AtomicU64,
}

/// The `/sync` filter: our messages in the timeline, as few other events as possible.
pub fn filter(timeline_limit: u32) -> String {
    serde_json::json!({
        "room": {
            "timeline": {"limit": timeline_limit},
            "state": {"lazy_load_members": true},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    })
    .to_string()
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    content: Content,
}

/// The load test's fields in a message's content (absent in anyone else's messages).
#[derive(Deserialize, Default)]
struct Content {
    lt_run: Option<String>,
    lt_seq: Option<u64>,
    lt_sent_us: Option<u64>,
}

fn parse(bytes: &[u8]) -> Result<SyncBody<Event>, Failure> {
    serde_json::from_slice(bytes).map_err(|_| Failure { kind: "sync: bad json".into(), retry_after: None })
}

/// The `next_batch` of an initial sync.
pub async fn first_batch(http: &Http, user: &User, filter: &str, timeout: Duration) -> Result<String, Failure> {
    let bytes = user.sync(http, None, filter, 0, timeout).await?;
    Ok(parse(&bytes)?.next_batch)
}

/// Messages of this run in a response: `(seq, sent_us)`; counts limited timelines.
fn messages(body: &SyncBody<Event>, run_id: &str, limited: &mut u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for room in body.rooms.join.values() {
        *limited += u64::from(room.timeline.limited);
        for e in &room.timeline.events {
            if e.kind != "m.room.message" || e.content.lt_run.as_deref() != Some(run_id) {
                continue;
            }
            if let (Some(seq), Some(sent)) = (e.content.lt_seq, e.content.lt_sent_us) {
                out.push((seq, sent));
            }
        }
    }
    out
}

/// Long-polls until `stop` turns true; returns what arrived.
pub async fn run(
    user: User,
    filter_id: String,
    mut since: String,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut got = Received::default();
    let s = &*shared;
    let mut conn = Conn::new(&user.base);
    while !*stop.borrow() {
        let (timeout, hard) = (s.poll_timeout_ms, s.hard_timeout);
        let poll = async {
            match conn.as_mut() {
                Some(c) => user.sync_on(c, Some(&since), &filter_id, timeout, hard).await,
                None => user.sync(&s.http, Some(&since), &filter_id, timeout, hard).await,
            }
        };
        let result = tokio::select! {
            r = poll => r,
            _ = stop.changed() => break,
        };
        let at = now_us();
        let body = match result.and_then(|b| parse(&b)) {
            Ok(body) => body,
            Err(f) => {
                s.errors.add(&f.kind);
                // Back off briefly, then retry from the same position.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
        };
        got.polls += 1;
        let mut limited = 0;
        for (seq, sent_us) in messages(&body, &s.run_id, &mut limited) {
            if seq >= s.first_measured && seq < s.total && got.deliver(seq, sent_us, at) {
                s.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        for _ in 0..limited {
            s.errors.add("sync: limited timeline (gap)");
        }
        since = body.next_batch;
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_this_runs_messages_only() {
        let body = br#"{"next_batch":"s9","rooms":{"join":{
            "!a:x":{"timeline":{"limited":true,"events":[
                {"type":"m.room.member","content":{"membership":"join"}},
                {"type":"m.room.message","content":{"body":"hi","lt_run":"r1","lt_seq":4,"lt_sent_us":100}},
                {"type":"m.room.message","content":{"body":"other run","lt_run":"r0","lt_seq":5,"lt_sent_us":100}},
                {"type":"m.room.message","content":{"body":"a human"}}]}},
            "!b:x":{"timeline":{"events":[
                {"type":"m.room.message","content":{"lt_run":"r1","lt_seq":6,"lt_sent_us":200}}]}}}}}"#;
        let parsed = parse(body).unwrap();
        assert_eq!(parsed.next_batch, "s9");
        let mut limited = 0;
        let mut got = messages(&parsed, "r1", &mut limited);
        got.sort_unstable();
        assert_eq!(got, vec![(4, 100), (6, 200)]);
        assert_eq!(limited, 1);
    }

    #[test]
    fn empty_and_broken_bodies() {
        let parsed = parse(br#"{"next_batch":"s1"}"#).unwrap();
        assert!(messages(&parsed, "r", &mut 0).is_empty());
        assert_eq!(parse(b"<html>").err().unwrap().kind, "sync: bad json");
    }

    #[test]
    fn the_filter_is_json_with_the_limit() {
        let f: serde_json::Value = serde_json::from_str(&filter(42)).unwrap();
        assert_eq!(f["room"]["timeline"]["limit"], 42);
    }
}
