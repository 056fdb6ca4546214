//! Stored filters (`POST`/`GET /user/{userId}/filter`) and resolving the `filter` parameter
//! of `/sync` (inline JSON or a stored filter's ID).

use std::sync::Arc;

use ruma::api::client::filter::{Filter, FilterDefinition, RoomEventFilter, UrlFilter};
use serde_json::Value;
use trellis_core::{Error, Result, Stream};
use trellis_proto::sync::{CreateFilterRequest, CreateFilterResponse, GetFilterRequest, GetFilterResponse};
use trellis_storage::filter::glob_match;

use crate::SyncWorker;

const INSERT_FILTER: &str = "INSERT INTO filters (user_id, filter_id, filter_json) VALUES ($1, nextval('filters_id_seq'), $2) RETURNING filter_id";
const SELECT_FILTER: &str = "SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2";

/// Parses a filter, refusing what the spec's filter language does not allow.
pub fn parse(json: &str) -> Result<FilterDefinition> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|_| Error::new(trellis_core::ErrorCode::NotJson, "filter is not JSON"))?;
    if !value.is_object() {
        return Err(Error::bad_json("filter must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| Error::bad_json(format!("invalid filter: {e}")))
}

impl SyncWorker {
    pub(crate) async fn create_filter(&self, req: CreateFilterRequest) -> Result<CreateFilterResponse> {
        if req.requester != req.user_id {
            return Err(Error::forbidden("cannot create filters for other users"));
        }
        parse(&req.filter_json)?;
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(INSERT_FILTER).await?;
        let id: i64 = client.query_one(&stmt, &[&req.user_id, &req.filter_json]).await?.get(0);
        Ok(CreateFilterResponse { filter_id: id.to_string() })
    }

    pub(crate) async fn get_filter(&self, req: GetFilterRequest) -> Result<GetFilterResponse> {
        if req.requester != req.user_id {
            return Err(Error::forbidden("cannot read filters of other users"));
        }
        let json =
            self.stored(&req.user_id, &req.filter_id).await?.ok_or_else(|| Error::not_found("No such filter"))?;
        Ok(GetFilterResponse { filter_json: json })
    }

    async fn stored(&self, user_id: &str, filter_id: &str) -> Result<Option<String>> {
        let Ok(id) = filter_id.parse::<i64>() else { return Ok(None) };
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_FILTER).await?;
        Ok(client.query_opt(&stmt, &[&user_id, &id]).await?.map(|r| r.get(0)))
    }

    /// The filter a `/sync` call asked for: inline JSON (`{...}`) or a stored filter's ID.
    pub(crate) async fn resolve_filter(&self, user_id: &str, filter: Option<&str>) -> Result<Arc<FilterDefinition>> {
        match filter.map(str::trim) {
            None | Some("") => Ok(Arc::new(FilterDefinition::default())),
            Some(inline) if inline.starts_with('{') => {
                // Clients send the same inline filter with every poll: parse it once.
                if let Some(f) = self.caches.filters.get_at(["", inline]) {
                    return Ok(f);
                }
                let f = Arc::new(parse(inline)?);
                self.caches.filters.insert_at(["", inline], f.clone());
                Ok(f)
            }
            Some(id) => {
                if let Some(f) = self.caches.filters.get_at([user_id, id]) {
                    return Ok(f);
                }
                let json = self.stored(user_id, id).await?.ok_or_else(|| Error::invalid_param("unknown filter ID"))?;
                let f = Arc::new(parse(&json)?);
                // Stored filters never change: keep them.
                self.caches.filters.insert_at([user_id, id], f.clone());
                Ok(f)
            }
        }
    }
}

/// Whether an event's type and sender pass the given lists.
fn passes(
    event: &Value,
    types: Option<&[String]>,
    not_types: &[String],
    senders: Option<&[ruma::OwnedUserId]>,
    not_senders: &[ruma::OwnedUserId],
) -> bool {
    let kind = event["type"].as_str().unwrap_or_default();
    let sender = event["sender"].as_str();
    if not_types.iter().any(|g| glob_match(g, kind)) {
        return false;
    }
    if types.is_some_and(|t| !t.iter().any(|g| glob_match(g, kind))) {
        return false;
    }
    if let Some(sender) = sender {
        if not_senders.iter().any(|s| s.as_str() == sender) {
            return false;
        }
        if senders.is_some_and(|list| !list.iter().any(|s| s.as_str() == sender)) {
            return false;
        }
    }
    true
}

/// Whether a room event passes a timeline filter (in memory, as the SQL of
/// `trellis_storage::filter` does in PostgreSQL).
pub fn timeline_event_passes(
    filter: &RoomEventFilter,
    event: &trellis_storage::events::EventRow,
    has_url: bool,
) -> bool {
    if filter.not_types.iter().any(|g| glob_match(g, &event.kind)) {
        return false;
    }
    if filter.types.as_ref().is_some_and(|t| !t.iter().any(|g| glob_match(g, &event.kind))) {
        return false;
    }
    if filter.not_senders.iter().any(|s| s.as_str() == event.sender) {
        return false;
    }
    if filter.senders.as_ref().is_some_and(|list| !list.iter().any(|s| s.as_str() == event.sender)) {
        return false;
    }
    match filter.url_filter {
        Some(UrlFilter::EventsWithUrl) => has_url,
        Some(UrlFilter::EventsWithoutUrl) => !has_url,
        _ => true,
    }
}

/// Top-level presence or account-data events through a filter.
pub fn events(filter: &Filter, events: Vec<Value>) -> Vec<Value> {
    let f = filter;
    through(events, (f.types.as_deref(), &f.not_types), (f.senders.as_deref(), &f.not_senders), f.limit)
}

/// Per-room ephemeral or account-data events through a filter.
pub fn room_events(filter: &RoomEventFilter, events: Vec<Value>) -> Vec<Value> {
    let f = filter;
    through(events, (f.types.as_deref(), &f.not_types), (f.senders.as_deref(), &f.not_senders), f.limit)
}

/// The first `limit` of `events` whose type and sender the lists let through.
fn through(
    events: Vec<Value>,
    (types, not_types): (Option<&[String]>, &[String]),
    (senders, not_senders): (Option<&[ruma::OwnedUserId]>, &[ruma::OwnedUserId]),
    limit: Option<ruma::UInt>,
) -> Vec<Value> {
    let limit = limit.map_or(usize::MAX, |l| u64::from(l) as usize);
    events.into_iter().filter(|e| passes(e, types, not_types, senders, not_senders)).take(limit).collect()
}

/// Whether a type list lets nothing through (`types: []`, a `*` in `not_types`, or `limit: 0`),
/// or at least nothing of type `kind` when one is given.
fn drops(types: Option<&[String]>, not_types: &[String], limit: Option<ruma::UInt>, kind: Option<&str>) -> bool {
    let refused = |k: &str| {
        not_types.iter().any(|g| glob_match(g, k)) || types.is_some_and(|t| !t.iter().any(|g| glob_match(g, k)))
    };
    limit.is_some_and(|l| l == ruma::UInt::MIN)
        || types.is_some_and(<[String]>::is_empty)
        || not_types.iter().any(|g| g == "*")
        || kind.is_some_and(refused)
}

/// The streams whose room-channel changes cannot put anything into a response through
/// `filter`: a long-poll need not wake for them. (The user's own channel always counts.)
pub fn ignored_streams(filter: &FilterDefinition) -> Vec<Stream> {
    let rooms_none = filter.room.rooms.as_ref().is_some_and(Vec::is_empty);
    let eph = &filter.room.ephemeral;
    let eph_drops = |kind| {
        rooms_none
            || eph.rooms.as_ref().is_some_and(Vec::is_empty)
            || drops(eph.types.as_deref(), &eph.not_types, eph.limit, Some(kind))
    };
    let p = &filter.presence;
    let mut ignored = Vec::new();
    if eph_drops("m.typing") {
        ignored.push(Stream::Typing);
    }
    if eph_drops("m.receipt") {
        ignored.push(Stream::Receipts);
    }
    if drops(p.types.as_deref(), &p.not_types, p.limit, Some("m.presence")) {
        ignored.push(Stream::Presence);
    }
    ignored
}

#[cfg(test)]
mod tests {
    use trellis_core::ErrorCode;

    use super::*;

    #[test]
    fn in_memory_filters() {
        let evs = vec![
            serde_json::json!({"type": "m.presence", "sender": "@a:x"}),
            serde_json::json!({"type": "m.presence", "sender": "@b:x"}),
            serde_json::json!({"type": "m.tag"}),
        ];
        let f: Filter =
            serde_json::from_value(serde_json::json!({"not_senders": ["@b:x"], "types": ["m.pres*"]})).unwrap();
        assert_eq!(events(&f, evs.clone()), vec![evs[0].clone()]);
        let f: Filter = serde_json::from_value(serde_json::json!({"limit": 1})).unwrap();
        assert_eq!(events(&f, evs).len(), 1);
    }

    #[test]
    fn streams_a_filter_shuts_out() {
        let ignored = |f: serde_json::Value| ignored_streams(&parse(&f.to_string()).unwrap());
        assert_eq!(ignored(serde_json::json!({})), vec![]);
        assert_eq!(
            ignored(serde_json::json!({"presence": {"not_types": ["*"]}, "room": {"ephemeral": {"types": []}}})),
            vec![Stream::Typing, Stream::Receipts, Stream::Presence]
        );
        assert_eq!(
            ignored(serde_json::json!({"room": {"ephemeral": {"not_types": ["m.typ*"]}}, "presence": {"limit": 0}})),
            vec![Stream::Typing, Stream::Presence]
        );
        assert_eq!(ignored(serde_json::json!({"room": {"ephemeral": {"types": ["m.receipt"]}}})), vec![Stream::Typing]);
        // A sender list still lets some presence through.
        assert_eq!(ignored(serde_json::json!({"presence": {"senders": ["@a:x"]}})), vec![]);
        assert_eq!(ignored(serde_json::json!({"room": {"rooms": []}})), vec![Stream::Typing, Stream::Receipts]);
    }

    #[test]
    fn filter_validation() {
        assert!(parse(r#"{"room":{"timeline":{"limit":1}}}"#).is_ok());
        assert_eq!(parse("{").unwrap_err().code(), ErrorCode::NotJson);
        assert_eq!(parse("[]").unwrap_err().code(), ErrorCode::BadJson);
        assert_eq!(parse(r#"{"room":{"timeline":{"limit":"x"}}}"#).unwrap_err().code(), ErrorCode::BadJson);
    }
}
