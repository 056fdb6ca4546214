//! One event to append (what a request asks for), the row its transaction writes (what was
//! built and judged) and what appending it gave: shared by the writer, the rules that judge
//! each event and the operations that append (sending, membership, redaction).

use std::sync::Arc;

use ruma::{CanonicalJsonObject, OwnedEventId, OwnedUserId};
use trellis_core::{Error, Result};

use crate::pdu::Pdu;

/// One event to append.
pub struct NewEvent {
    pub sender: OwnedUserId,
    pub kind: String,
    pub state_key: Option<String>,
    pub content: CanonicalJsonObject,
    /// The client transaction that sent it.
    pub txn: Option<Txn>,
    /// For redactions: the event redacted.
    pub redacts: Option<Redacts>,
    /// The timestamp an application service gave (`?ts=`); `None`: now.
    pub origin_server_ts: Option<i64>,
}

/// The outcome of an append.
pub enum Appended {
    New(Vec<Arc<Pdu>>),
    /// The client transaction was already used; this is the event it created.
    Duplicate(OwnedEventId),
}

impl Appended {
    /// The stored events (a repeated transaction yields none).
    pub fn into_new(self) -> Vec<Arc<Pdu>> {
        match self {
            Appended::New(p) => p,
            Appended::Duplicate(_) => Vec::new(),
        }
    }
}

/// A client transaction: its ID, the device that sent it and the request path it was sent
/// on. A transaction ID is scoped to one device and one endpoint (spec: "Transaction
/// identifiers"): the same ID in another room, for another event type, or on `/redact`
/// instead of `/send` is another request.
#[derive(Clone, Debug)]
pub struct Txn {
    pub device: String,
    pub id: String,
    pub scope: String,
}

impl Txn {
    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}`
    pub fn send(device: &str, id: Option<String>, room: &str, kind: &str) -> Option<Txn> {
        Some(Txn { device: device.to_owned(), id: id?, scope: format!("send/{room}/{kind}") })
    }

    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`
    pub fn redact(device: &str, id: Option<String>, room: &str, event: &str) -> Option<Txn> {
        Some(Txn { device: device.to_owned(), id: id?, scope: format!("redact/{room}/{event}") })
    }
}

/// The target of a redaction, looked up before the redaction is built.
pub struct Redacts {
    pub event_id: OwnedEventId,
    pub sender: OwnedUserId,
}

impl NewEvent {
    pub fn state(sender: &ruma::UserId, kind: &str, state_key: &str, content: serde_json::Value) -> Result<NewEvent> {
        Ok(NewEvent {
            sender: sender.to_owned(),
            kind: kind.to_owned(),
            state_key: Some(state_key.to_owned()),
            content: object(content)?,
            txn: None,
            redacts: None,
            origin_server_ts: None,
        })
    }
}

/// A JSON object as canonical JSON (fails on floats or out-of-range integers).
pub fn object(value: serde_json::Value) -> Result<CanonicalJsonObject> {
    match value {
        serde_json::Value::Object(map) => ruma::canonical_json::try_from_json_map(map)
            .map_err(|e| Error::bad_json(format!("not canonical JSON: {e}"))),
        _ => Err(Error::bad_json("content must be a JSON object")),
    }
}

/// What the transaction writes for one event.
pub(crate) struct Row {
    pub pdu: Arc<Pdu>,
    pub json: String,
    pub unsigned: Option<String>,
    pub txn: Option<Txn>,
    pub redacts: Option<OwnedEventId>,
}
