//! The `/sync` response body. Events are already rendered JSON and are embedded verbatim.

use std::collections::BTreeMap;

use ruma::api::client::filter::Filter;
use serde::Serialize;
use serde_json::value::RawValue;
use trellis_core::StreamToken;

use crate::poll::filters;

pub type RawEvent = Box<RawValue>;

/// Embeds an event rendered by the read model.
pub fn raw(json: String) -> RawEvent {
    RawValue::from_string(json).expect("rendered events are valid JSON")
}

#[derive(Serialize, Default)]
pub struct SyncBody {
    pub next_batch: String,
    pub rooms: Rooms,
    pub presence: Events,
    pub account_data: Events,
    pub to_device: Events,
    pub device_lists: DeviceLists,
    /// Filled whenever the device holds keys (exact and fast path alike); left out for a
    /// device without any.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub device_one_time_keys_count: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_unused_fallback_key_types: Option<Vec<String>>,
}

impl SyncBody {
    /// Applies a filter's `event_fields` to every event of the body.
    pub fn keep_fields(&mut self, fields: &[String]) {
        let shape = |events: &mut Vec<RawEvent>| {
            for e in events.iter_mut() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(e.get()) {
                    *e = raw(crate::poll::fields::keep_fields(&v, fields).to_string());
                }
            }
        };
        shape(&mut self.presence.events);
        shape(&mut self.account_data.events);
        shape(&mut self.to_device.events);
        for r in self.rooms.join.values_mut() {
            for list in
                [&mut r.state.events, &mut r.timeline.events, &mut r.ephemeral.events, &mut r.account_data.events]
            {
                shape(list);
            }
        }
        for r in self.rooms.leave.values_mut() {
            for list in [&mut r.state.events, &mut r.timeline.events, &mut r.account_data.events] {
                shape(list);
            }
        }
    }

    /// The joined room `room` of the body, added (with an empty timeline whose `prev_batch` is
    /// `prev` and nothing else) if absent; whether it was there already.
    pub fn joined_room(&mut self, room: String, prev: i64) -> (&mut JoinedRoom, bool) {
        use std::collections::btree_map::Entry;
        match self.rooms.join.entry(room) {
            Entry::Occupied(e) => (e.into_mut(), true),
            Entry::Vacant(e) => {
                let timeline = Timeline { prev_batch: StreamToken::new(prev).to_string(), ..Default::default() };
                (e.insert(JoinedRoom { timeline, ..Default::default() }), false)
            }
        }
    }

    /// A joined room's unread counts (`threads`: the filter asked for per-thread counts, which
    /// are not kept apart yet: everything is in the main count).
    pub fn set_unread(&mut self, room: &str, (notes, highlights): (u64, u64), threads: bool) {
        if let Some(entry) = self.rooms.join.get_mut(room) {
            entry.unread_notifications.notification_count = notes;
            entry.unread_notifications.highlight_count = highlights;
            if threads {
                entry.unread_thread_notifications = Some(BTreeMap::new());
            }
        }
    }

    /// The presence events the filter lets through.
    pub fn set_presence(&mut self, filter: &Filter, presence: Vec<serde_json::Value>) {
        self.presence.events = filters::events(filter, presence).into_iter().map(|e| raw(e.to_string())).collect();
    }

    /// Nothing the client has not seen: a long-poll keeps waiting.
    pub fn is_empty(&self) -> bool {
        self.rooms.join.is_empty()
            && self.rooms.invite.is_empty()
            && self.rooms.leave.is_empty()
            && self.rooms.knock.is_empty()
            && self.presence.events.is_empty()
            && self.account_data.events.is_empty()
            && self.to_device.events.is_empty()
            && self.device_lists.changed.is_empty()
            && self.device_lists.left.is_empty()
    }
}

#[derive(Serialize, Default)]
pub struct Rooms {
    pub join: BTreeMap<String, JoinedRoom>,
    pub invite: BTreeMap<String, InvitedRoom>,
    pub leave: BTreeMap<String, LeftRoom>,
    pub knock: BTreeMap<String, KnockedRoom>,
}

#[derive(Serialize, Default)]
pub struct Events {
    pub events: Vec<RawEvent>,
}

#[derive(Serialize, Default)]
pub struct DeviceLists {
    pub changed: Vec<String>,
    pub left: Vec<String>,
}

#[derive(Serialize, Default)]
pub struct Timeline {
    pub events: Vec<RawEvent>,
    pub limited: bool,
    pub prev_batch: String,
}

#[derive(Serialize, Default)]
pub struct Summary {
    #[serde(rename = "m.heroes", skip_serializing_if = "Option::is_none")]
    pub heroes: Option<Vec<String>>,
    #[serde(rename = "m.joined_member_count", skip_serializing_if = "Option::is_none")]
    pub joined: Option<u64>,
    #[serde(rename = "m.invited_member_count", skip_serializing_if = "Option::is_none")]
    pub invited: Option<u64>,
}

impl Summary {
    pub fn is_empty(&self) -> bool {
        self.heroes.is_none() && self.joined.is_none() && self.invited.is_none()
    }
}

#[derive(Serialize, Default)]
pub struct UnreadNotifications {
    pub highlight_count: u64,
    pub notification_count: u64,
}

#[derive(Serialize, Default)]
pub struct JoinedRoom {
    #[serde(skip_serializing_if = "Summary::is_empty")]
    pub summary: Summary,
    pub state: Events,
    pub timeline: Timeline,
    pub ephemeral: Events,
    pub account_data: Events,
    pub unread_notifications: UnreadNotifications,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_thread_notifications: Option<BTreeMap<String, UnreadNotifications>>,
}

#[derive(Serialize, Default)]
pub struct InvitedRoom {
    pub invite_state: Events,
}

#[derive(Serialize, Default)]
pub struct LeftRoom {
    pub state: Events,
    pub timeline: Timeline,
    pub account_data: Events,
}

#[derive(Serialize, Default)]
pub struct KnockedRoom {
    pub knock_state: Events,
}
