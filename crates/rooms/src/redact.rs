//! Redaction: the permission rule of the client-server API (one's own events, or anyone's
//! with the `redact` power level), and what a redaction does to the stored event — its
//! content and PDU stripped by the room version's algorithm, `unsigned.redacted_because` set,
//! its relations dropped — in the same transaction as the redaction itself. A suspended
//! account may redact only its own events.

use ruma::{CanonicalJsonObject, EventId, RoomId, UserId};
use serde_json::{Map, Value, json};
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::rooms::{RedactRequest, SendEventResponse};

use crate::{
    Rooms,
    new_event::{Appended, NewEvent, Redacts, Row, Txn},
    pdu,
    state::RoomState,
};

const SELECT_TARGET: &str = "SELECT sender FROM events WHERE event_id = $1 AND room_id = $2";
const SELECT_ELSEWHERE: &str = "SELECT 1 FROM events WHERE event_id = $1";
const SELECT_STORED: &str = "SELECT type, state_key, content, pdu, unsigned_json, redacted_by FROM events \
     WHERE event_id = $1 AND room_id = $2 FOR UPDATE";
const UPDATE_REDACTED: &str =
    "UPDATE events SET content = $2, pdu = $3, unsigned_json = $4, redacted_by = $5 WHERE event_id = $1";
const DELETE_RELATION: &str = "DELETE FROM event_relations WHERE event_id = $1 RETURNING relates_to, rel_type";
const DROP_EMPTY_THREAD: &str = "DELETE FROM threads WHERE root_id = $1 AND NOT EXISTS \
     (SELECT 1 FROM event_relations WHERE relates_to = $1 AND rel_type = 'm.thread')";
const REFRESH_THREAD: &str = "UPDATE threads SET latest_pos = \
     (SELECT max(pos) FROM event_relations WHERE relates_to = $1 AND rel_type = 'm.thread') WHERE root_id = $1";
// Later state events show the redacted content as their `prev_content`.
const UPDATE_PREV_CONTENT: &str = "UPDATE events SET unsigned_json = \
     jsonb_set(trellis_jsonb(unsigned_json), '{prev_content}', trellis_jsonb($3::text))::text \
     WHERE room_id = $1 AND type = $4 AND state_key = $5 AND trellis_jsonb(unsigned_json)->>'replaces_state' = $2";

impl Rooms {
    #[tracing::instrument(skip_all, fields(sender = %req.sender, room_id = %req.room_id, event_id = %req.event_id))]
    pub(crate) async fn redact(&self, req: RedactRequest) -> Result<SendEventResponse> {
        let txn = Txn::redact(&req.device_id, req.txn_id.clone(), &req.room_id, &req.event_id);
        self.redact_in(req, txn).await
    }

    /// A redaction sent by the transaction `txn` (of `/redact`, or of `/send` when the
    /// client sent an `m.room.redaction` event).
    pub(crate) async fn redact_in(&self, req: RedactRequest, txn: Option<Txn>) -> Result<SendEventResponse> {
        let sender = UserId::parse(&req.sender)?;
        let room_id = RoomId::parse(&req.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        let event_id = EventId::parse(&req.event_id).map_err(|_| Error::invalid_param("invalid event ID"))?;
        if let Some(id) = self.txn_event(&sender, txn.as_ref()).await? {
            return Ok(SendEventResponse { event_id: id.to_string() });
        }
        let target_sender: String = {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(SELECT_TARGET).await?;
            match client.query_opt(&stmt, &[&event_id.as_str(), &room_id.as_str()]).await? {
                Some(row) => row.get(0),
                None => {
                    let stmt = client.prepare_cached(SELECT_ELSEWHERE).await?;
                    if client.query_opt(&stmt, &[&event_id.as_str()]).await?.is_some() {
                        return Err(Error::invalid_param("The event is in another room"));
                    }
                    return Err(Error::not_found("Event not found"));
                }
            }
        };
        if req.only_own && target_sender != sender.as_str() {
            return Err(Error::suspended());
        }
        let mut content = CanonicalJsonObject::new();
        if let Some(reason) = req.reason.filter(|r| !r.is_empty()) {
            content.insert("reason".into(), ruma::CanonicalJsonValue::String(reason));
        }
        let event = NewEvent {
            sender,
            kind: "m.room.redaction".into(),
            state_key: None,
            content,
            txn,
            redacts: Some(Redacts { event_id, sender: UserId::parse(target_sender)? }),
            origin_server_ts: None,
        };
        match self.append(&room_id, None, vec![event]).await {
            Ok(Appended::New(pdus)) => Ok(SendEventResponse { event_id: pdus[0].event_id.to_string() }),
            Ok(Appended::Duplicate(id)) => Ok(SendEventResponse { event_id: id.to_string() }),
            Err(e) if e.code() == ErrorCode::NotFound => Err(Error::forbidden("You are not in this room")),
            Err(e) => Err(e),
        }
    }
}

/// Whether `sender` may redact an event of `target_sender` (client-server API, redactions).
pub(crate) fn check_permission(room: &RoomState, sender: &UserId, target_sender: &UserId) -> Result<()> {
    let pl = room.power_levels();
    let allowed = if sender == target_sender {
        pl.user_can_redact_own_event(sender)
    } else {
        pl.user_can_redact_event_of_other(sender)
    };
    if allowed { Ok(()) } else { Err(Error::forbidden("You don't have permission to redact this event")) }
}

/// Strips the stored `target` as `redaction` (a row of the same transaction) prescribes.
/// Already redacted events keep their first `redacted_because`.
pub(crate) async fn apply_stored(
    tx: &deadpool_postgres::Transaction<'_>,
    room: &RoomState,
    target: &EventId,
    redaction: &Row,
) -> Result<()> {
    let room_id = room.room_id.as_str();
    let stmt = tx.prepare_cached(SELECT_STORED).await?;
    let Some(row) = tx.query_opt(&stmt, &[&target.as_str(), &room_id]).await? else { return Ok(()) };
    let (kind, state_key, content, stored_pdu, unsigned): (String, Option<String>, String, String, Option<String>) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    if row.get::<_, Option<String>>(5).is_some() {
        return Ok(());
    }
    let mut content = pdu::parse_content(&content)?;
    ruma::canonical_json::redact_content_in_place(&mut content, &room.rules.redaction, &kind);
    let content = serde_json::to_string(&content)?;
    let stored: CanonicalJsonObject = serde_json::from_str(&stored_pdu)?;
    let stripped = ruma::canonical_json::redact(stored, &room.rules.redaction, None)
        .map_err(|e| Error::internal(format!("redacting stored PDU: {e}")))?;
    let mut new_unsigned = Map::new();
    // Only what the redaction algorithm lets through: the state this replaced, and why.
    if let Some(replaces) = unsigned
        .as_deref()
        .and_then(|u| serde_json::from_str::<Value>(u).ok())
        .and_then(|u| u.get("replaces_state").cloned())
    {
        new_unsigned.insert("replaces_state".into(), replaces);
    }
    new_unsigned.insert("redacted_because".into(), client_event(redaction, room_id)?);
    let new_unsigned = Value::Object(new_unsigned).to_string();
    let redaction_id = redaction.pdu.event_id.as_str();
    let stmt = tx.prepare_cached(UPDATE_REDACTED).await?;
    tx.execute(&stmt, &[&target.as_str(), &content, &serde_json::to_string(&stripped)?, &new_unsigned, &redaction_id])
        .await?;

    crate::search::index::forget(tx, target.as_str()).await?;
    let stmt = tx.prepare_cached(DELETE_RELATION).await?;
    if let Some(rel) = tx.query_opt(&stmt, &[&target.as_str()]).await?
        && rel.get::<_, &str>(1) == "m.thread"
    {
        let root: String = rel.get(0);
        tx.execute(&tx.prepare_cached(DROP_EMPTY_THREAD).await?, &[&root]).await?;
        tx.execute(&tx.prepare_cached(REFRESH_THREAD).await?, &[&root]).await?;
    }
    if let Some(key) = state_key {
        let stmt = tx.prepare_cached(UPDATE_PREV_CONTENT).await?;
        tx.execute(&stmt, &[&room_id, &target.as_str(), &content, &kind, &key]).await?;
    }
    tracing::info!(event_id = %target, redaction = redaction_id, "event redacted");
    Ok(())
}

/// The redaction event in the client format, as `redacted_because` carries it.
fn client_event(row: &Row, room_id: &str) -> Result<Value> {
    let p = &row.pdu;
    let content: Value = serde_json::from_str(p.content_str())?;
    let mut event = json!({
        "content": content,
        "event_id": p.event_id,
        "origin_server_ts": p.origin_server_ts,
        "room_id": room_id,
        "sender": p.sender,
        "type": p.kind.to_string(),
        "unsigned": {},
    });
    if let Some(target) = &row.redacts {
        event["redacts"] = json!(target);
    }
    Ok(event)
}
