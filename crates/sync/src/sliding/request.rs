//! A sliding sync request as the worker uses it: the lists, room subscriptions and extensions
//! of the wire request, checked (a bad one is a 400 with the spec's errcode, never a 500) and
//! turned into room configurations whose `required_state` can be matched and compared.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use trellis_core::{Error, Result};
use trellis_proto::sync::{SlidingRoomConfig, SlidingScoped, SlidingSyncRequest};

/// Longest `conn_id`, in bytes.
const MAX_CONN_ID: usize = 255;
/// Most lists, room subscriptions and ranges per list a request may carry.
const MAX_LISTS: usize = 100;
const MAX_SUBSCRIPTIONS: usize = 1000;
const MAX_RANGES: usize = 100;
/// Most `required_state` entries per list or subscription.
const MAX_REQUIRED_STATE: usize = 1000;
/// A larger `timeline_limit` is served as this one.
const MAX_TIMELINE: u32 = 1000;

pub(crate) const WILDCARD: &str = "*";
pub(crate) const LAZY: &str = "$LAZY";
const ME: &str = "$ME";
pub(crate) const MEMBER: &str = "m.room.member";

/// `required_state` with `$ME` replaced by the user: `(type, state_key)` pairs, `*` for any.
pub(crate) type Required = BTreeSet<(String, String)>;

/// What a room of a list or a subscription is sent with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RoomConfig {
    pub required: Required,
    pub timeline_limit: u32,
}

impl RoomConfig {
    /// The union of two configurations (a room in several lists or also subscribed).
    pub(crate) fn merge(&mut self, other: &RoomConfig) {
        self.required.extend(other.required.iter().cloned());
        self.timeline_limit = self.timeline_limit.max(other.timeline_limit);
    }

    pub(crate) fn lazy_members(&self) -> bool {
        self.required.contains(&(MEMBER.to_owned(), LAZY.to_owned()))
    }
}

/// Whether `required` asks for the state event `(kind, key)`.
pub(crate) fn wants(required: &Required, kind: &str, key: &str) -> bool {
    let has = |t: &str, k: &str| required.contains(&(t.to_owned(), k.to_owned()));
    has(kind, key) || has(kind, WILDCARD) || has(WILDCARD, key) || has(WILDCARD, WILDCARD)
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Filters {
    pub is_dm: Option<bool>,
    pub is_encrypted: Option<bool>,
    pub is_invite: Option<bool>,
    /// Room types (`None` for rooms without one); empty for any.
    pub room_types: Vec<Option<String>>,
    pub not_room_types: Vec<Option<String>>,
    /// Only children of these spaces; empty for any room.
    pub spaces: Vec<String>,
}

pub(crate) struct List {
    pub ranges: Vec<(u64, u64)>,
    pub config: RoomConfig,
    pub filters: Filters,
}

/// Which lists and subscribed rooms an extension covers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scope {
    pub enabled: bool,
    /// `None`: every list.
    pub lists: Option<Vec<String>>,
    /// `None`: every subscribed room; `*` among them too.
    pub rooms: Option<Vec<String>>,
}

impl Scope {
    fn from(s: &SlidingScoped) -> Scope {
        Scope {
            enabled: s.enabled.unwrap_or(false),
            lists: s.lists.as_ref().map(|l| l.names.clone()),
            rooms: s.rooms.as_ref().map(|r| r.names.clone()),
        }
    }
}

pub(crate) struct Extensions {
    pub to_device: bool,
    pub to_device_since: Option<i64>,
    /// Most to-device messages an answer carries: the client's `limit`, within 1 and
    /// [`crate::streams::to_device::PER_SYNC`].
    pub to_device_limit: i64,
    pub e2ee: bool,
    pub account_data: Scope,
    pub receipts: Scope,
    pub typing: Scope,
}

pub(crate) struct Request {
    pub conn_id: String,
    pub lists: BTreeMap<String, List>,
    pub subscriptions: BTreeMap<String, RoomConfig>,
    pub extensions: Extensions,
}

/// Checks the wire request and builds the worker's view of it.
pub(crate) fn parse(req: &SlidingSyncRequest) -> Result<Request> {
    if req.conn_id.len() > MAX_CONN_ID {
        return Err(Error::invalid_param("conn_id is longer than 255 bytes"));
    }
    if req.lists.len() > MAX_LISTS {
        return Err(Error::invalid_param("too many lists"));
    }
    if req.room_subscriptions.len() > MAX_SUBSCRIPTIONS {
        return Err(Error::invalid_param("too many room subscriptions"));
    }
    let mut lists = BTreeMap::new();
    for (name, list) in &req.lists {
        if name.is_empty() || name.len() > 64 {
            return Err(Error::invalid_param("list names must be 1 to 64 bytes"));
        }
        if list.ranges.len() > MAX_RANGES {
            return Err(Error::invalid_param("too many ranges"));
        }
        let mut ranges = Vec::new();
        for r in &list.ranges {
            if r.start > r.end {
                return Err(Error::invalid_param(format!("list {name}: range [{}, {}] is reversed", r.start, r.end)));
            }
            ranges.push((r.start, r.end));
        }
        let config = room_config(&req.user_id, list.config.as_ref())?;
        let filters = match &list.filters {
            Some(f) => Filters {
                is_dm: f.is_dm,
                is_encrypted: f.is_encrypted,
                is_invite: f.is_invite,
                room_types: f.room_types.iter().map(|t| (!t.is_empty()).then(|| t.clone())).collect(),
                not_room_types: f.not_room_types.iter().map(|t| (!t.is_empty()).then(|| t.clone())).collect(),
                spaces: f.spaces.clone(),
            },
            None => Filters::default(),
        };
        lists.insert(name.clone(), List { ranges, config, filters });
    }
    let mut subscriptions = BTreeMap::new();
    for (room, config) in &req.room_subscriptions {
        if ruma::RoomId::parse(room).is_err() {
            return Err(Error::invalid_param(format!("{room} is not a room ID")));
        }
        subscriptions.insert(room.clone(), room_config(&req.user_id, Some(config))?);
    }
    let ext = &req.extensions;
    let td = ext.as_ref().and_then(|e| e.to_device.as_ref());
    let to_device_since = match td.and_then(|t| t.since.as_deref()).filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| Error::invalid_param("extensions.to_device.since is not a token this server gave"))?,
        ),
        None => None,
    };
    let scope = |pick: fn(&trellis_proto::sync::SlidingExtensions) -> Option<&SlidingScoped>| {
        ext.as_ref().and_then(pick).map(Scope::from).unwrap_or_default()
    };
    let extensions = Extensions {
        to_device: td.and_then(|t| t.enabled).unwrap_or(false),
        to_device_since,
        to_device_limit: td.and_then(|t| t.limit).map_or(crate::streams::to_device::PER_SYNC, |n| {
            i64::from(n.max(1)).min(crate::streams::to_device::PER_SYNC)
        }),
        e2ee: ext.as_ref().and_then(|e| e.e2ee).unwrap_or(false),
        account_data: scope(|e| e.account_data.as_ref()),
        receipts: scope(|e| e.receipts.as_ref()),
        typing: scope(|e| e.typing.as_ref()),
    };
    Ok(Request { conn_id: req.conn_id.clone(), lists, subscriptions, extensions })
}

fn room_config(user: &str, config: Option<&SlidingRoomConfig>) -> Result<RoomConfig> {
    let Some(config) = config else { return Ok(RoomConfig::default()) };
    if config.required_state.len() > MAX_REQUIRED_STATE {
        return Err(Error::invalid_param(format!(
            "required_state has {} entries; at most {MAX_REQUIRED_STATE} are allowed",
            config.required_state.len()
        )));
    }
    let mut required = Required::new();
    for entry in &config.required_state {
        if entry.event_type.is_empty() {
            return Err(Error::invalid_param("required_state entries need an event type"));
        }
        if entry.state_key == LAZY && entry.event_type != MEMBER {
            return Err(Error::invalid_param("$LAZY only applies to m.room.member"));
        }
        let key = if entry.state_key == ME { user.to_owned() } else { entry.state_key.clone() };
        required.insert((entry.event_type.clone(), key));
    }
    let timeline_limit = u32::try_from(config.timeline_limit).unwrap_or(u32::MAX).min(MAX_TIMELINE);
    Ok(RoomConfig { required, timeline_limit })
}

#[cfg(test)]
mod tests {
    use trellis_proto::sync::{SlidingList, SlidingRange, SlidingStateKey};

    use super::*;

    fn entry(t: &str, k: &str) -> SlidingStateKey {
        SlidingStateKey { event_type: t.into(), state_key: k.into() }
    }

    fn request(list: SlidingList) -> SlidingSyncRequest {
        SlidingSyncRequest {
            user_id: "@me:x".into(),
            lists: [("all".to_owned(), list)].into_iter().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn required_state_matching_and_me() {
        let config = SlidingRoomConfig {
            required_state: vec![entry("m.room.name", ""), entry(MEMBER, ME), entry("m.space.child", "*")],
            timeline_limit: 5000,
        };
        let c = room_config("@me:x", Some(&config)).unwrap();
        assert_eq!(c.timeline_limit, MAX_TIMELINE);
        assert!(wants(&c.required, "m.room.name", ""));
        assert!(!wants(&c.required, "m.room.name", "x"));
        assert!(wants(&c.required, MEMBER, "@me:x"));
        assert!(!wants(&c.required, MEMBER, "@other:x"));
        assert!(wants(&c.required, "m.space.child", "!any:x"));
        let all =
            room_config("@me:x", Some(&SlidingRoomConfig { required_state: vec![entry("*", "*")], ..config })).unwrap();
        assert!(wants(&all.required, "anything", "at all"));
    }

    #[test]
    fn bad_input_is_refused() {
        let reversed = SlidingList { ranges: vec![SlidingRange { start: 5, end: 1 }], ..Default::default() };
        assert!(parse(&request(reversed)).is_err());
        let huge = SlidingList {
            config: Some(SlidingRoomConfig { required_state: vec![entry("a", "b"); 10_000], timeline_limit: 1 }),
            ..Default::default()
        };
        assert!(parse(&request(huge)).is_err());
        let lazy = SlidingList {
            config: Some(SlidingRoomConfig { required_state: vec![entry("m.room.name", LAZY)], timeline_limit: 1 }),
            ..Default::default()
        };
        assert!(parse(&request(lazy)).is_err());
        let mut long = request(SlidingList::default());
        long.conn_id = "x".repeat(256);
        assert!(parse(&long).is_err());
        assert!(parse(&request(SlidingList::default())).is_ok());
    }
}
