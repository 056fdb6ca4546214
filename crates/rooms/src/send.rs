//! Sending events: messages and state, idempotent per device and transaction ID. Member
//! events and redactions sent this way take the same paths as their dedicated endpoints;
//! canonical aliases and relations are checked before the event is built.

use ruma::{RoomId, UserId};
use serde_json::Value;
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::rooms::{RedactRequest, SendEventRequest, SendEventResponse};

use crate::{
    Rooms,
    new_event::{Appended, NewEvent, Txn},
    pdu,
};

/// Longest event type and state key, in bytes (spec: size limits).
const MAX_ID_BYTES: usize = 255;

impl Rooms {
    #[tracing::instrument(skip_all, fields(sender = %req.sender, room_id = %req.room_id, kind = %req.event_type))]
    pub(crate) async fn send_event(&self, req: SendEventRequest) -> Result<SendEventResponse> {
        let sender = UserId::parse(&req.sender)?;
        let room_id = RoomId::parse(&req.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        if req.event_type.is_empty() || req.event_type.len() > MAX_ID_BYTES {
            return Err(Error::invalid_param("event type must be 1 to 255 bytes"));
        }
        if req.state_key.as_ref().is_some_and(|k| k.len() > MAX_ID_BYTES) {
            return Err(Error::invalid_param("state key must be at most 255 bytes"));
        }
        let txn = Txn::send(&req.device_id, req.txn_id.clone(), room_id.as_str(), &req.event_type);
        // Fast path for retries: no lock, no parsing.
        if let Some(id) = self.txn_event(&sender, txn.as_ref()).await? {
            return Ok(SendEventResponse { event_id: id.to_string() });
        }
        let content = pdu::parse_content(&req.content_json)?;
        let guest_access = req.event_type == "m.room.guest_access" && req.state_key.as_deref() == Some("");
        let appended = match (req.event_type.as_str(), req.state_key.as_deref()) {
            ("m.room.redaction", None) => return self.redact_from_content(req, &content, txn).await,
            ("m.room.member", Some(key)) => {
                let target = trellis_core::ids::parse_user_id(key)
                    .map_err(|_| Error::bad_json("member state key must be a user ID"))?;
                let Value::Object(content) = serde_json::to_value(&content)? else { unreachable!("an object") };
                self.send_membership(&sender, &room_id, &target, content, txn).await
            }
            (kind, key) => {
                // Like Synapse: a room cannot be replaced by itself.
                if kind == "m.room.tombstone"
                    && content.get("replacement_room") == Some(&ruma::CanonicalJsonValue::String(room_id.to_string()))
                {
                    return Err(Error::bad_json("a tombstone cannot name the room it is sent in"));
                }
                if kind == "m.room.canonical_alias" && key == Some("") {
                    self.check_canonical_alias(&room_id, &serde_json::to_value(&content)?).await?;
                }
                if key.is_none() {
                    self.check_relation(room_id.as_str(), pdu::relation_of(&req.content_json)).await?;
                }
                let event = NewEvent {
                    sender,
                    kind: req.event_type,
                    state_key: req.state_key,
                    content,
                    txn,
                    redacts: None,
                    origin_server_ts: req.origin_server_ts,
                };
                self.append(&room_id, None, vec![event]).await
            }
        };
        match appended {
            Ok(Appended::New(pdus)) => {
                if guest_access {
                    self.guest_access_changed(&room_id).await;
                }
                Ok(SendEventResponse { event_id: pdus[0].event_id.to_string() })
            }
            Ok(Appended::Duplicate(id)) => Ok(SendEventResponse { event_id: id.to_string() }),
            Err(e) if e.code() == ErrorCode::NotFound => Err(Error::forbidden("You are not in this room")),
            Err(e) => Err(e),
        }
    }

    /// A redaction sent as an ordinary event names its target in `content.redacts`.
    async fn redact_from_content(
        &self,
        req: SendEventRequest,
        content: &ruma::CanonicalJsonObject,
        txn: Option<Txn>,
    ) -> Result<SendEventResponse> {
        let Some(ruma::CanonicalJsonValue::String(target)) = content.get("redacts") else {
            return Err(Error::bad_json("a redaction needs content.redacts"));
        };
        let reason = match content.get("reason") {
            Some(ruma::CanonicalJsonValue::String(r)) => Some(r.clone()),
            _ => None,
        };
        let redaction = RedactRequest {
            sender: req.sender,
            device_id: req.device_id,
            room_id: req.room_id,
            event_id: target.clone(),
            txn_id: None,
            reason,
            only_own: false,
        };
        self.redact_in(redaction, txn).await
    }
}
