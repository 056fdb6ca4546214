//! A receiver: long-polls `/sync` with `since` = the last `next_batch` (or, with
//! `--sliding`, Simplified Sliding Sync with `pos`) until told to stop, timing every measured
//! `m.room.message` of this run from its send timestamp to the moment the response body
//! arrived.

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
    sync_body::{SlidingBody, SyncBody},
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
    /// With `--sliding`: the sliding sync request every long-poll sends.
    pub sliding: Option<Vec<u8>>,
}

/// The sliding sync request of a receiver: the one room of the test as a 1-room window.
pub fn sliding_request(timeline_limit: u32) -> Vec<u8> {
    serde_json::json!({
        "conn_id": "loadtest",
        "lists": {"all": {"ranges": [[0, 0]], "timeline_limit": timeline_limit, "required_state": []}},
    })
    .to_string()
    .into_bytes()
}

const SLIDING_PATH: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

fn sliding_path(pos: Option<&str>, timeout_ms: u64) -> String {
    match pos {
        Some(p) => format!("{SLIDING_PATH}?timeout={timeout_ms}&pos={}", crate::client::enc(p)),
        None => format!("{SLIDING_PATH}?timeout={timeout_ms}"),
    }
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

/// A sliding sync response as a `/sync` one: its `pos` as the next batch, its rooms joined.
fn parse_sliding(bytes: &[u8]) -> Result<SyncBody<Event>, Failure> {
    let body: SlidingBody<Event> = serde_json::from_slice(bytes)
        .map_err(|_| Failure { kind: "sliding sync: bad json".into(), retry_after: None })?;
    let join = body
        .rooms
        .into_iter()
        .map(|(id, r)| {
            (
                id,
                crate::sync_body::Joined {
                    timeline: crate::sync_body::Timeline { events: r.timeline, limited: r.limited },
                },
            )
        })
        .collect();
    Ok(SyncBody { next_batch: body.pos, rooms: crate::sync_body::Rooms { join } })
}

/// The `pos` of a new sliding sync connection (its first, immediate answer).
pub async fn first_pos(base: &str, user: &User, request: &[u8], timeout: Duration) -> Result<String, Failure> {
    let mut conn = Conn::new(base).ok_or_else(|| Failure::new("sliding sync: only http:// URLs".into()))?;
    let bytes = conn.post("sliding", &sliding_path(None, 0), &user.token, request, timeout).await?;
    Ok(parse_sliding(&bytes)?.next_batch)
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
            match (conn.as_mut(), &s.sliding) {
                (Some(c), Some(request)) => {
                    c.post("sliding", &sliding_path(Some(&since), timeout), &user.token, request, hard).await
                }
                (None, Some(_)) => Err(Failure::new("sliding sync: only http:// URLs".into())),
                (Some(c), None) => user.sync_on(c, Some(&since), &filter_id, timeout, hard).await,
                (None, None) => user.sync(&s.http, Some(&since), &filter_id, timeout, hard).await,
            }
        };
        let result = tokio::select! {
            r = poll => r,
            _ = stop.changed() => break,
        };
        let at = now_us();
        let parsed = match s.sliding {
            Some(_) => result.and_then(|b| parse_sliding(&b)),
            None => result.and_then(|b| parse(&b)),
        };
        let body = match parsed {
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
    fn sliding_responses_read_like_sync_ones() {
        let body = br#"{"pos":"7","lists":{"all":{"count":1}},"rooms":{"!a:x":{"limited":true,"timeline":[
            {"type":"m.room.message","content":{"lt_run":"r1","lt_seq":3,"lt_sent_us":50}},
            {"type":"m.room.message","content":{"body":"a human"}}]}}}"#;
        let parsed = parse_sliding(body).unwrap();
        assert_eq!(parsed.next_batch, "7");
        let mut limited = 0;
        assert_eq!(messages(&parsed, "r1", &mut limited), vec![(3, 50)]);
        assert_eq!(limited, 1);
        assert!(parse_sliding(br#"{"pos":"8"}"#).unwrap().rooms.join.is_empty());
        assert_eq!(parse_sliding(b"{}").err().unwrap().kind, "sliding sync: bad json");
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
