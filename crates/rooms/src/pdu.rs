//! The persistent data unit: an event in the federation format, hashed, signed and given
//! the event ID its room version prescribes (v1–v2: a server-generated `$opaque:server` carried
//! in the event, which cites its auth and previous events with their reference hashes; v3+:
//! the reference hash itself). Implements ruma's `Event` so ruma's authorization rules can
//! judge it.

use std::sync::Arc;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, ServerName, UInt, UserId,
    events::TimelineEventType,
    room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RedactionRules, RoomVersionRules},
    signatures::Ed25519KeyPair,
};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use trellis_core::{Error, ErrorCode, Result};

/// Largest PDU in canonical JSON, signatures included (spec: size limits).
pub const MAX_PDU_BYTES: usize = 65_536;

/// A stored or freshly built event.
#[derive(Debug, Deserialize)]
pub struct Pdu {
    #[serde(skip_deserializing, default = "placeholder_event_id")]
    pub event_id: OwnedEventId,
    /// Absent only from a v12 create event, whose own ID names the room.
    #[serde(default)]
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    #[serde(default)]
    pub state_key: Option<String>,
    #[serde(deserialize_with = "references")]
    pub prev_events: Vec<OwnedEventId>,
    #[serde(deserialize_with = "references")]
    pub auth_events: Vec<OwnedEventId>,
    pub depth: UInt,
    #[serde(default)]
    pub redacts: Option<OwnedEventId>,
    /// The reference hash: what v1–v2 events cite beside this event's ID (known for events
    /// built here and for the state and latest event of a loaded v1–v2 room; empty otherwise).
    #[serde(skip)]
    pub reference_hash: String,
}

/// Event references in either format: `"$id"` (v3+) or `["$id", {"sha256": ...}]` (v1–v2).
fn references<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<OwnedEventId>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Reference {
        Id(OwnedEventId),
        WithHashes(OwnedEventId, serde::de::IgnoredAny),
    }
    let refs = Vec::<Reference>::deserialize(d)?;
    Ok(refs
        .into_iter()
        .map(|r| match r {
            Reference::Id(id) | Reference::WithHashes(id, _) => id,
        })
        .collect())
}

fn placeholder_event_id() -> OwnedEventId {
    EventId::parse("$placeholder").expect("valid event ID")
}

impl Pdu {
    /// Parses a stored PDU (`events.pdu`) whose ID is `event_id`; its reference hash is
    /// computed when the room version cites one (v1–v2).
    pub fn from_stored(event_id: &str, json: &str, rules: &RoomVersionRules) -> Result<Pdu> {
        let mut pdu: Pdu = serde_json::from_str(json)?;
        pdu.event_id = EventId::parse(event_id)?;
        if rules.event_id_format == EventIdFormatVersion::V1 {
            let obj: CanonicalJsonObject = serde_json::from_str(json)?;
            pdu.reference_hash = ruma::signatures::reference_hash(&obj, rules)
                .map_err(|e| Error::internal(format!("reference hash of a stored event: {e}")))?;
        }
        Ok(pdu)
    }

    /// How a later event of the room cites this one.
    pub fn reference(&self) -> EventRef {
        EventRef { id: self.event_id.clone(), hash: self.reference_hash.clone() }
    }

    pub fn content_str(&self) -> &str {
        self.content.get()
    }

    /// This event with its content stripped by the room version's redaction algorithm.
    pub fn redacted(&self, rules: &RedactionRules) -> Result<Pdu> {
        let mut content = parse_content(self.content_str())?;
        ruma::canonical_json::redact_content_in_place(&mut content, rules, self.kind.to_string());
        Ok(Pdu {
            event_id: self.event_id.clone(),
            room_id: self.room_id.clone(),
            sender: self.sender.clone(),
            origin_server_ts: self.origin_server_ts,
            kind: self.kind.clone(),
            content: RawValue::from_string(serde_json::to_string(&content)?)?,
            state_key: self.state_key.clone(),
            prev_events: self.prev_events.clone(),
            auth_events: self.auth_events.clone(),
            depth: self.depth,
            redacts: self.redacts.clone(),
            reference_hash: self.reference_hash.clone(),
        })
    }

    /// The `m.relates_to` of the content as `(rel_type, parent event ID)`, if it has both.
    pub fn relation(&self) -> Option<(String, String)> {
        relation_of(self.content_str())
    }
}

/// `(rel_type, event_id)` of a content's `m.relates_to`, if it has both.
pub fn relation_of(content: &str) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Content {
        #[serde(rename = "m.relates_to")]
        relates_to: Option<RelatesTo>,
    }
    #[derive(Deserialize)]
    struct RelatesTo {
        rel_type: Option<String>,
        event_id: Option<String>,
    }
    let r = serde_json::from_str::<Content>(content).ok()?.relates_to?;
    Some((r.rel_type?, r.event_id?))
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &OwnedEventId {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&OwnedEventId> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        // Rejected events are never stored.
        false
    }
}

/// An event cited by another: its ID and reference hash (v1–v2 cite both).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventRef {
    pub id: OwnedEventId,
    pub hash: String,
}

/// Everything needed to build a PDU except what the room's position supplies.
pub struct Draft<'a> {
    /// `None` only for a v12 create event (the room is named after it).
    pub room_id: Option<&'a RoomId>,
    pub sender: &'a UserId,
    pub kind: &'a str,
    pub state_key: Option<&'a str>,
    pub content: CanonicalJsonObject,
    pub prev_events: Vec<EventRef>,
    pub auth_events: Vec<EventRef>,
    pub depth: u64,
    pub origin_server_ts: u64,
    /// For redactions: the event redacted (top level before room v11, in content since).
    pub redacts: Option<&'a EventId>,
}

/// A hashed, signed PDU and its canonical JSON, ready to check and store.
pub struct Built {
    pub pdu: Arc<Pdu>,
    pub json: String,
}

/// Hashes, signs and names a draft as its room version prescribes.
pub fn build(
    draft: Draft<'_>,
    rules: &RoomVersionRules,
    server_name: &ServerName,
    key: &Ed25519KeyPair,
) -> Result<Built> {
    let mut obj = CanonicalJsonObject::new();
    let mut content = draft.content;
    if let Some(redacts) = draft.redacts {
        let target = CanonicalJsonValue::String(redacts.to_string());
        if rules.redaction.content_field_redacts {
            content.insert("redacts".into(), target);
        } else {
            obj.insert("redacts".into(), target);
        }
    }
    let with_hashes = rules.events_reference_format == EventsReferenceFormatVersion::V1;
    let refs = |v: &[EventRef]| {
        let cite = |r: &EventRef| {
            let id = CanonicalJsonValue::String(r.id.to_string());
            if !with_hashes {
                return id;
            }
            let hashes = CanonicalJsonObject::from([("sha256".to_owned(), CanonicalJsonValue::String(r.hash.clone()))]);
            CanonicalJsonValue::Array(vec![id, CanonicalJsonValue::Object(hashes)])
        };
        CanonicalJsonValue::Array(v.iter().map(cite).collect())
    };
    // v1–v2: the server names the event, and the name is part of what is hashed and signed.
    let opaque_id = (rules.event_id_format == EventIdFormatVersion::V1).then(|| EventId::new_v1(server_name));
    if let Some(id) = &opaque_id {
        obj.insert("event_id".into(), CanonicalJsonValue::String(id.to_string()));
    }
    obj.insert("auth_events".into(), refs(&draft.auth_events));
    obj.insert("prev_events".into(), refs(&draft.prev_events));
    obj.insert("content".into(), CanonicalJsonValue::Object(content));
    obj.insert("depth".into(), CanonicalJsonValue::Integer(int(draft.depth)?));
    obj.insert("origin_server_ts".into(), CanonicalJsonValue::Integer(int(draft.origin_server_ts)?));
    if let Some(room_id) = draft.room_id {
        obj.insert("room_id".into(), CanonicalJsonValue::String(room_id.to_string()));
    }
    obj.insert("sender".into(), CanonicalJsonValue::String(draft.sender.to_string()));
    obj.insert("type".into(), CanonicalJsonValue::String(draft.kind.to_owned()));
    if let Some(key) = draft.state_key {
        obj.insert("state_key".into(), CanonicalJsonValue::String(key.to_owned()));
    }

    // Refuse oversized events before spending a signature on them; the check on the signed
    // PDU below is the authoritative one.
    if serde_json::to_string(&obj)?.len() > MAX_PDU_BYTES {
        return Err(Error::new(ErrorCode::TooLarge, "event is too large"));
    }
    ruma::signatures::hash_and_sign_event(server_name.as_str(), key, &mut obj, &rules.redaction).map_err(
        |e| match e {
            ruma::signatures::JsonError::PduTooLarge => Error::new(ErrorCode::TooLarge, "event is too large"),
            e => Error::internal(format!("signing event: {e}")),
        },
    )?;
    // Size and field-length limits of the spec apply to the signed PDU.
    ruma::state_res::check_pdu_format(&obj, &rules.event_format)
        .map_err(|e| Error::new(ErrorCode::TooLarge, format!("event is too large: {e}")))?;
    let hash = ruma::signatures::reference_hash(&obj, rules)
        .map_err(|e| Error::new(ErrorCode::TooLarge, format!("event is too large: {e}")))?;
    let event_id = match opaque_id {
        Some(id) => id,
        None => EventId::new_v2_or_v3(&hash)?,
    };
    let json = serde_json::to_string(&obj)?;
    let mut pdu: Pdu = serde_json::from_str(&json)?;
    pdu.event_id = event_id;
    pdu.reference_hash = hash;
    Ok(Built { pdu: Arc::new(pdu), json })
}

fn int(v: u64) -> Result<ruma::Int> {
    ruma::Int::try_from(v).map_err(|_| Error::internal("integer out of canonical JSON range"))
}

/// Parses client-supplied content: a JSON object that is valid canonical JSON (no floats,
/// integers within ±2^53).
pub fn parse_content(json: &str) -> Result<CanonicalJsonObject> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|_| Error::new(ErrorCode::NotJson, "content is not valid JSON"))?;
    if !value.is_object() {
        return Err(Error::bad_json("content must be a JSON object"));
    }
    match ruma::canonical_json::try_from_json_map(match value {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("checked above"),
    }) {
        Ok(obj) => Ok(obj),
        Err(e) => Err(Error::bad_json(format!("content is not canonical JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use ruma::{RoomVersionId, room_id, server_name, signatures::Ed25519KeyPair, user_id};

    use super::*;

    fn key() -> Ed25519KeyPair {
        let der = Ed25519KeyPair::generate();
        Ed25519KeyPair::from_der(&der, "k1".into()).unwrap()
    }

    fn draft(content: CanonicalJsonObject) -> Draft<'static> {
        Draft {
            room_id: Some(room_id!("!r:localhost")),
            sender: user_id!("@a:localhost"),
            kind: "m.room.message",
            state_key: None,
            content,
            prev_events: vec![],
            auth_events: vec![],
            depth: 1,
            origin_server_ts: 1_700_000_000_000,
            redacts: None,
        }
    }

    #[test]
    fn event_id_is_the_reference_hash() {
        let rules = RoomVersionId::V11.rules().unwrap();
        let k = key();
        let content = parse_content(r#"{"body":"hi","msgtype":"m.text"}"#).unwrap();
        let built = build(draft(content.clone()), &rules, server_name!("localhost"), &k).unwrap();
        assert!(built.pdu.event_id.as_str().starts_with('$'));
        let obj: CanonicalJsonObject = serde_json::from_str(&built.json).unwrap();
        let again = ruma::signatures::reference_hash(&obj, &rules).unwrap();
        assert_eq!(built.pdu.event_id.as_str(), format!("${again}"));
        assert!(obj.contains_key("hashes") && obj.contains_key("signatures"));
        // Same draft, other content: other ID.
        let other =
            build(draft(parse_content(r#"{"body":"ho"}"#).unwrap()), &rules, server_name!("localhost"), &k).unwrap();
        assert_ne!(other.pdu.event_id, built.pdu.event_id);
    }

    #[test]
    fn event_ids_and_citations_take_the_format_of_the_version() {
        let k = key();
        let prev = EventRef { id: EventId::parse("$prev:localhost").unwrap(), hash: "cHJldg".into() };
        for version in [RoomVersionId::V1, RoomVersionId::V2, RoomVersionId::V3, RoomVersionId::V4, RoomVersionId::V12]
        {
            let rules = version.rules().unwrap();
            let mut d = draft(parse_content(r#"{"body":"hi"}"#).unwrap());
            d.prev_events = vec![prev.clone()];
            let built = build(d, &rules, server_name!("localhost"), &k).unwrap();
            let obj: CanonicalJsonObject = serde_json::from_str(&built.json).unwrap();
            let json: serde_json::Value = serde_json::from_str(&built.json).unwrap();
            let id = built.pdu.event_id.as_str();
            let hash = ruma::signatures::reference_hash(&obj, &rules).unwrap();
            assert_eq!(built.pdu.reference_hash, hash, "{version}");
            assert_eq!(built.pdu.prev_events, vec![prev.id.clone()], "{version}: citations parse back");
            if matches!(version, RoomVersionId::V1 | RoomVersionId::V2) {
                assert!(id.ends_with(":localhost") && id != format!("${hash}"), "{version}: {id}");
                assert_eq!(json["event_id"], id, "{version}: the ID is carried in the event");
                assert_eq!(json["prev_events"], serde_json::json!([["$prev:localhost", {"sha256": "cHJldg"}]]));
            } else {
                assert_eq!(id, format!("${hash}"), "{version}");
                assert!(json.get("event_id").is_none(), "{version}");
                assert_eq!(json["prev_events"], serde_json::json!(["$prev:localhost"]), "{version}");
            }
        }
    }

    #[test]
    fn v12_create_events_have_no_room_id() {
        let rules = RoomVersionId::V12.rules().unwrap();
        let mut d = draft(parse_content(r#"{"room_version":"12"}"#).unwrap());
        d.room_id = None;
        d.kind = "m.room.create";
        d.state_key = Some("");
        let built = build(d, &rules, server_name!("localhost"), &key()).unwrap();
        assert!(built.pdu.room_id.is_none());
        assert!(!built.json.contains("room_id"));
        assert!(!built.pdu.event_id.as_str().contains(':'));
    }

    #[test]
    fn oversized_events_are_refused() {
        let rules = RoomVersionId::V10.rules().unwrap();
        let body = "x".repeat(70_000);
        let content = parse_content(&format!(r#"{{"body":"{body}"}}"#)).unwrap();
        let err = build(draft(content), &rules, server_name!("localhost"), &key()).err().unwrap();
        assert_eq!(err.code(), ErrorCode::TooLarge);
    }

    #[test]
    fn redacts_moved_into_content_in_v11() {
        let target = EventId::parse("$target").unwrap();
        for (version, in_content) in [(RoomVersionId::V10, false), (RoomVersionId::V11, true)] {
            let rules = version.rules().unwrap();
            let mut d = draft(CanonicalJsonObject::new());
            d.kind = "m.room.redaction";
            d.redacts = Some(&target);
            let built = build(d, &rules, server_name!("localhost"), &key()).unwrap();
            let obj: serde_json::Value = serde_json::from_str(&built.json).unwrap();
            assert_eq!(obj["content"].get("redacts").is_some(), in_content, "{version}");
            assert_eq!(obj.get("redacts").is_some(), !in_content, "{version}");
        }
    }

    #[test]
    fn redaction_keeps_only_the_keys_of_the_version() {
        let rules = RoomVersionId::V11.rules().unwrap();
        let content = parse_content(r#"{"body":"secret","msgtype":"m.text"}"#).unwrap();
        let built = build(draft(content), &rules, server_name!("localhost"), &key()).unwrap();
        assert_eq!(built.pdu.redacted(&rules.redaction).unwrap().content_str(), "{}");
        let mut d = draft(parse_content(r#"{"membership":"join","displayname":"A"}"#).unwrap());
        d.kind = "m.room.member";
        d.state_key = Some("@a:localhost");
        let built = build(d, &rules, server_name!("localhost"), &key()).unwrap();
        assert_eq!(built.pdu.redacted(&rules.redaction).unwrap().content_str(), r#"{"membership":"join"}"#);
    }

    #[test]
    fn relations_are_read_from_content() {
        assert_eq!(
            relation_of(r#"{"m.relates_to":{"rel_type":"m.thread","event_id":"$root"}}"#),
            Some(("m.thread".into(), "$root".into()))
        );
        assert_eq!(relation_of(r#"{"m.relates_to":{"m.in_reply_to":{"event_id":"$x"}}}"#), None);
        assert_eq!(relation_of(r#"{"body":"x"}"#), None);
    }

    #[test]
    fn content_must_be_a_canonical_object() {
        assert_eq!(parse_content("[1]").unwrap_err().code(), ErrorCode::BadJson);
        assert_eq!(parse_content("{").unwrap_err().code(), ErrorCode::NotJson);
        assert_eq!(parse_content(r#"{"a":1.5}"#).unwrap_err().code(), ErrorCode::BadJson);
        assert!(parse_content(r#"{"a":{"b":[1,"x",null,true]}}"#).is_ok());
    }
}
