//! The extensions of a response: `to_device` (from its own `since`, acknowledging what came
//! before it), `e2ee` (device-list changes since the `pos`, one-time key counts, unused fallback
//! key types), and, for the rooms of the lists and subscriptions each one covers,
//! `account_data` (global too), `receipts` and `typing`. A room new to the connection gets its
//! whole account data, receipts and typing; a room it holds only what changed.

use std::collections::{BTreeMap, HashSet};

use ruma::{
    OneTimeKeyAlgorithm, OwnedRoomId, OwnedUserId, UInt,
    api::client::sync::sync_events::v5::response::{AccountData, E2EE, Extensions, Receipts, ToDevice, Typing},
    serde::Raw,
};
use serde_json::{Value, value::RawValue};
use trellis_core::{Result, Stream};

use super::{
    lists::Window,
    request::{Extensions as Asked, Scope},
    rooms::Bounds,
};
use crate::{SyncWorker, poll::response::SyncBody, queries::Client};

/// The rooms of a response, for scoping the extensions.
pub(crate) struct Rooms<'a> {
    pub windows: &'a BTreeMap<String, Window>,
    /// Subscribed rooms the user may see.
    pub subscribed: &'a [String],
    /// Rooms the user is joined to.
    pub joined: &'a HashSet<String>,
    /// Rooms sent whole in this response.
    pub initial: &'a HashSet<String>,
}

impl Rooms<'_> {
    /// The rooms an extension covers.
    pub(crate) fn scoped(&self, scope: &Scope) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for (name, window) in self.windows {
            if scope.lists.as_ref().is_none_or(|l| l.contains(name)) {
                out.extend(window.rooms.iter().filter(|r| seen.insert((*r).clone())).cloned());
            }
        }
        let in_response =
            |r: &String| self.subscribed.contains(r) || self.windows.values().any(|w| w.rooms.contains(r));
        match &scope.rooms {
            None => out.extend(self.subscribed.iter().filter(|r| seen.insert((*r).clone())).cloned()),
            Some(names) => {
                for name in names {
                    if name == "*" {
                        out.extend(self.subscribed.iter().filter(|r| seen.insert((*r).clone())).cloned());
                    } else if in_response(name) && seen.insert(name.clone()) {
                        out.push(name.clone());
                    }
                }
            }
        }
        out
    }
}

impl SyncWorker {
    /// The extensions of a response; the boolean says whether any of them has news (key
    /// counts alone are not news).
    pub(crate) async fn sliding_extensions(
        &self,
        client: &Client,
        (user, device): (&str, &str),
        asked: &Asked,
        rooms: &Rooms<'_>,
        bounds: &Bounds,
    ) -> Result<(Extensions, bool)> {
        let mut ext = Extensions::default();
        let mut news = false;
        let (from, upto) = (bounds.from, bounds.upto);
        let since = |s: Stream| from.map(|t| t.get(s));

        if asked.to_device {
            let top = upto.get(Stream::ToDevice);
            let since = asked.to_device_since.map(|s| s.min(top));
            let (events, truncated) =
                self.to_device_events(client, user, device, since, top, asked.to_device_limit).await?;
            news |= !events.is_empty();
            let mut td = ToDevice::default();
            td.next_batch = truncated.unwrap_or(top).max(since.unwrap_or(0)).to_string();
            td.events = events.into_iter().map(Raw::from_json).collect();
            ext.to_device = Some(td);
        }

        if asked.e2ee {
            let mut body = SyncBody::default();
            let has_keys = crate::streams::e2ee::fill(client, user, device, from, upto, &mut body).await?;
            self.caches.key_devices.insert_at([user, device], has_keys);
            let mut e2ee = E2EE::default();
            e2ee.device_lists.changed = user_ids(std::mem::take(&mut body.device_lists.changed));
            e2ee.device_lists.left = user_ids(std::mem::take(&mut body.device_lists.left));
            news |= !e2ee.device_lists.is_empty();
            put_key_counts(&mut e2ee, body);
            ext.e2ee = e2ee;
        }

        if asked.account_data.enabled {
            let scoped = rooms.scoped(&asked.account_data);
            let top = upto.get(Stream::AccountData);
            let (global, mut per_room) =
                self.account_data_events(client, user, since(Stream::AccountData), top).await?;
            let fresh: Vec<&str> = scoped.iter().filter(|r| rooms.initial.contains(*r)).map(String::as_str).collect();
            if from.is_some() && !fresh.is_empty() {
                // Rooms new to the connection get all of their account data.
                per_room.extend(self.room_account_data(client, user, &fresh, top).await?);
            }
            let mut ad = AccountData::default();
            ad.global = global.iter().map(|e| Raw::from_json(raw(e))).collect();
            for room in &scoped {
                if let (Some(events), Ok(id)) = (per_room.remove(room), OwnedRoomId::try_from(room.as_str())) {
                    ad.rooms.insert(id, events.iter().map(|e| Raw::from_json(raw(e))).collect());
                }
            }
            news |= !ad.is_empty();
            ext.account_data = ad;
        }

        if asked.receipts.enabled {
            let scoped: Vec<String> =
                rooms.scoped(&asked.receipts).into_iter().filter(|r| rooms.joined.contains(r)).collect();
            let top = upto.get(Stream::Receipts);
            let (fresh, held): (Vec<String>, Vec<String>) =
                scoped.into_iter().partition(|r| from.is_none() || rooms.initial.contains(r));
            let mut events = self.receipt_events(client, user, &held, since(Stream::Receipts), top).await?;
            events.extend(self.receipt_events(client, user, &fresh, None, top).await?);
            let mut receipts = Receipts::default();
            for (room, event) in events {
                if let Ok(id) = OwnedRoomId::try_from(room) {
                    receipts.rooms.insert(id, Raw::from_json(raw(&event)));
                }
            }
            news |= !receipts.is_empty();
            ext.receipts = receipts;
        }

        if asked.typing.enabled {
            let scoped: Vec<String> =
                rooms.scoped(&asked.typing).into_iter().filter(|r| rooms.joined.contains(r)).collect();
            let top = upto.get(Stream::Typing);
            let (fresh, held): (Vec<String>, Vec<String>) =
                scoped.into_iter().partition(|r| from.is_none() || rooms.initial.contains(r));
            let mut events = self.typing_events(client, &held, since(Stream::Typing), top).await?;
            events.extend(self.typing_events(client, &fresh, None, top).await?);
            let mut typing = Typing::default();
            for (room, event) in events {
                if let Ok(id) = OwnedRoomId::try_from(room) {
                    typing.rooms.insert(id, Raw::from_json(raw(&event)));
                }
            }
            news |= !typing.is_empty();
            ext.typing = typing;
        }
        Ok((ext, news))
    }
}

/// The device's one-time key counts and unused fallback key types, as read into `body`.
pub(crate) fn put_key_counts(e2ee: &mut E2EE, body: SyncBody) {
    e2ee.device_one_time_keys_count = body
        .device_one_time_keys_count
        .into_iter()
        .map(|(alg, n)| (OneTimeKeyAlgorithm::from(alg.as_str()), UInt::new_saturating(n)))
        .collect();
    e2ee.device_unused_fallback_key_types = body
        .device_unused_fallback_key_types
        .map(|types| types.iter().map(|t| OneTimeKeyAlgorithm::from(t.as_str())).collect());
}

fn raw(v: &Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("serialised JSON is valid")
}

fn user_ids(ids: Vec<String>) -> Vec<OwnedUserId> {
    ids.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect()
}
