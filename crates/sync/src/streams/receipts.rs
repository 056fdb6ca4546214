//! Read receipts (`m.read`, `m.read.private`) and read markers. A receipt only moves
//! forward; private receipts are delivered to their owner alone.

use std::collections::HashMap;

use serde_json::{Value, json};
use trellis_bus::Channel;
use trellis_core::{Error, Result, Stream, time::now_ms};
use trellis_proto::sync::{Ack, PostReceiptRequest, ReadMarkersRequest, SetAccountDataRequest};

use crate::{SyncWorker, access, streams::next_position};

const EVENT_POS: &str = "SELECT pos FROM events WHERE event_id = $1 AND room_id = $2";
const UPSERT: &str = "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, event_pos, ts, pos) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET event_id = EXCLUDED.event_id, \
     event_pos = EXCLUDED.event_pos, ts = EXCLUDED.ts, pos = EXCLUDED.pos \
     WHERE receipts.event_pos < EXCLUDED.event_pos";
const CHANGED: &str = "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts \
     WHERE room_id = ANY($1) AND pos > $2 AND pos <= $3 AND (receipt_type = 'm.read' OR user_id = $4)";

impl SyncWorker {
    #[tracing::instrument(skip_all, fields(user = %req.user_id, room = %req.room_id, kind = %req.receipt_type))]
    pub(crate) async fn post_receipt(&self, req: PostReceiptRequest) -> Result<Ack> {
        access::room_id(&req.room_id)?;
        match req.receipt_type.as_str() {
            "m.read" | "m.read.private" => {}
            "m.fully_read" => {
                if req.thread_id.is_some() {
                    return Err(Error::invalid_param("m.fully_read cannot be threaded"));
                }
                return self.set_fully_read(&req.user_id, &req.room_id, &req.event_id).await;
            }
            other => return Err(Error::invalid_param(format!("unknown receipt type {other}"))),
        }
        let thread = match req.thread_id.as_deref() {
            None => String::new(),
            Some("") => return Err(Error::invalid_param("thread_id must not be empty")),
            Some(t) => t.to_owned(),
        };
        let mut client = self.pool.get().await?;
        access::joined(&client, &req.user_id, &req.room_id).await?;
        let event_pos: i64 = client
            .query_opt(EVENT_POS, &[&req.event_id, &req.room_id])
            .await?
            .ok_or_else(|| Error::not_found("Event not found in this room"))?
            .get(0);
        let tx = client.transaction().await?;
        let pos = next_position(&tx, Stream::Receipts).await?;
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
            [&req.room_id, &req.user_id, &req.receipt_type, &thread, &req.event_id, &event_pos, &now_ms(), &pos];
        if tx.execute(UPSERT, &args).await? == 0 {
            // An older receipt than the one held: nothing changes (the position is unused).
            tx.commit().await?;
            return Ok(Ack {});
        }
        // The unread count may have dropped: the user's push gateways hear the new badge.
        let badges = tx.execute(crate::push::delivery::QUEUE_BADGES, &[&req.user_id, &now_ms()]).await?;
        tx.commit().await?;
        if badges > 0 {
            self.push_queued.notify_one();
        }
        // The room sees a public receipt; the owner's channel fires for every receipt, as its
        // unread counts change even for a client that filters receipts out.
        let mut channels = vec![Channel::User(req.user_id)];
        if req.receipt_type == "m.read" {
            channels.push(Channel::Room(req.room_id));
        }
        self.announce(&channels, Stream::Receipts, pos).await;
        Ok(Ack {})
    }

    pub(crate) async fn set_read_markers(&self, req: ReadMarkersRequest) -> Result<Ack> {
        access::room_id(&req.room_id)?;
        if let Some(event) = &req.fully_read {
            self.set_fully_read(&req.user_id, &req.room_id, event).await?;
        }
        for (kind, event) in [("m.read", &req.read), ("m.read.private", &req.read_private)] {
            if let Some(event_id) = event {
                let r = PostReceiptRequest {
                    user_id: req.user_id.clone(),
                    room_id: req.room_id.clone(),
                    receipt_type: kind.into(),
                    event_id: event_id.clone(),
                    thread_id: None,
                };
                self.post_receipt(r).await?;
            }
        }
        Ok(Ack {})
    }

    /// The `m.fully_read` marker is room account data.
    async fn set_fully_read(&self, user: &str, room: &str, event_id: &str) -> Result<Ack> {
        let client = self.pool.get().await?;
        access::joined(&client, user, room).await?;
        client
            .query_opt(EVENT_POS, &[&event_id, &room])
            .await?
            .ok_or_else(|| Error::not_found("Event not found in this room"))?;
        drop(client);
        self.write_account_data(SetAccountDataRequest {
            requester: user.into(),
            user_id: user.into(),
            room_id: room.into(),
            data_type: "m.fully_read".into(),
            content_json: json!({ "event_id": event_id }).to_string(),
        })
        .await
    }

    /// `m.receipt` events per room for receipts written in `(since, upto]` (or all receipts
    /// when `since` is `None`), private ones only to their owner.
    pub(crate) async fn receipt_events(
        &self,
        client: &deadpool_postgres::Client,
        user: &str,
        rooms: &[String],
        since: Option<i64>,
        upto: i64,
    ) -> Result<HashMap<String, Value>> {
        if rooms.is_empty() {
            return Ok(HashMap::new());
        }
        let from = since.unwrap_or(-1);
        let rows = client.query(CHANGED, &[&rooms, &from, &upto, &user]).await?;
        Ok(receipt_events_of(rows.iter().map(ReceiptRow::from_row)))
    }
}

/// One stored receipt.
pub(crate) struct ReceiptRow {
    pub room: String,
    pub user: String,
    pub kind: String,
    pub thread: String,
    pub event: String,
    pub ts: i64,
}

impl ReceiptRow {
    /// From a row of `room_id, user_id, receipt_type, thread_id, event_id, ts`.
    pub(crate) fn from_row(row: &tokio_postgres::Row) -> ReceiptRow {
        ReceiptRow {
            room: row.get(0),
            user: row.get(1),
            kind: row.get(2),
            thread: row.get(3),
            event: row.get(4),
            ts: row.get(5),
        }
    }
}

/// One `m.receipt` event per room for `rows`.
pub(crate) fn receipt_events_of<'a, R: std::borrow::Borrow<ReceiptRow> + 'a>(
    rows: impl Iterator<Item = R>,
) -> HashMap<String, Value> {
    let mut content: HashMap<String, serde_json::Map<String, Value>> = HashMap::new();
    for row in rows {
        let r = row.borrow();
        let mut receipt = json!({ "ts": r.ts });
        if !r.thread.is_empty() {
            receipt["thread_id"] = json!(r.thread);
        }
        let by_event = content.entry(r.room.clone()).or_default();
        let slot = by_event.entry(r.event.clone()).or_insert_with(|| json!({}));
        slot.as_object_mut().expect("object").entry(r.kind.clone()).or_insert_with(|| json!({}))[&r.user] = receipt;
    }
    content.into_iter().map(|(room, c)| (room, json!({ "type": "m.receipt", "content": c }))).collect()
}
