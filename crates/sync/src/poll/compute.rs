//! The exact path: a sync response for the window `(since, upto]` of every stream, read from
//! PostgreSQL — which rooms changed for the user, their timelines (limited, with `prev_batch`)
//! and the state the client needs (lazy-loaded if asked), ephemeral events, account data,
//! presence, to-device messages, end-to-end keys and unread counts. `compute` runs the named
//! steps in order; the rooms' steps are in `rooms.rs`, the ones shared with the fast path in
//! `steps.rs`.
//!
//! Only positions at or below `upto` are read, and `upto` only holds announced positions, so a
//! response and its `next_batch` never skip anything.

use std::collections::HashMap;

use serde_json::Value;
use trellis_core::{Result, Stream, StreamToken};

use crate::{
    SyncWorker,
    poll::{
        filters,
        ignored::Ignored,
        response::{SyncBody, raw},
        rooms,
        steps::{self, Request},
    },
    queries::{Client, Membership},
    streams::{e2ee, to_device},
};

/// Account data of the window: global events, and events per room.
type AccountData = (Vec<Value>, HashMap<String, Vec<Value>>);

impl SyncWorker {
    pub(crate) async fn compute(
        &self,
        client: &Client,
        req: &Request<'_>,
        upto: StreamToken,
        memberships: &[Membership],
    ) -> Result<SyncBody> {
        // Account data first: the ignored users shape the timelines and invites.
        let since_ad = req.since.map(|t| t.get(Stream::AccountData));
        let account_data =
            self.account_data_events(client, req.user_id, since_ad, upto.get(Stream::AccountData)).await?;
        let ignored = self.ignored_users(client, req.user_id, since_ad, upto, &account_data.0).await?;
        let sections = self.sections(client, req, upto.events, memberships).await?;
        let limit = steps::timeline_limit(&req.filter.room, self.settings.default_timeline_limit) as i64;

        let timelines = self.read_timelines(client, req, upto, &sections, &ignored, limit).await?;
        let states = self.read_state(client, req, upto, &timelines).await?;
        let summaries = rooms::summaries(client, req, &timelines.built, &states).await?;
        let presence_of = rooms::presence_of(client, req, &timelines.built, &states).await?;
        let mut body =
            SyncBody { next_batch: upto.max(req.since.unwrap_or_default()).to_string(), ..Default::default() };
        rooms::render_rooms(client, req, upto, timelines, states, summaries, &mut body).await?;
        rooms::stripped_rooms(client, req, &sections, &ignored, &mut body).await?;

        self.other_streams(client, req, upto, memberships, account_data, &mut body).await?;
        self.add_unread(client, req, upto, &ignored, &mut body).await?;
        if !presence_of.is_empty() {
            self.add_presence(client, &req.filter.presence, &presence_of, &mut body).await?;
        }
        self.add_to_device(client, req, upto, &mut body).await?;
        let has_keys = e2ee::fill(client, req.user_id, req.device_id, req.since, upto, &mut body).await?;
        self.caches.key_devices.insert_at([req.user_id, req.device_id], has_keys);
        steps::finish(&mut body, req);
        Ok(body)
    }

    /// Ephemeral events, account data and presence.
    async fn other_streams(
        &self,
        client: &Client,
        req: &Request<'_>,
        upto: StreamToken,
        memberships: &[Membership],
        (global, per_room): AccountData,
        body: &mut SyncBody,
    ) -> Result<()> {
        let since = |s: Stream| req.since.map(|t| t.get(s));
        let rf = &req.filter.room;
        let joined = steps::selected_joined(memberships, rf);

        let mut ephemeral: HashMap<String, Vec<Value>> = HashMap::new();
        for (room, ev) in self.typing_events(client, &joined, since(Stream::Typing), upto.get(Stream::Typing)).await? {
            ephemeral.entry(room).or_default().push(ev);
        }
        let receipts = self
            .receipt_events(client, req.user_id, &joined, since(Stream::Receipts), upto.get(Stream::Receipts))
            .await?;
        for (room, ev) in receipts {
            ephemeral.entry(room).or_default().push(ev);
        }
        for (room, events) in steps::ephemeral_filtered(&rf.ephemeral, ephemeral) {
            let (entry, _) = body.joined_room(room, upto.events);
            entry.ephemeral.events.extend(events.into_iter().map(|e| raw(e.to_string())));
        }

        body.account_data.events =
            filters::events(&req.filter.account_data, global).into_iter().map(|e| raw(e.to_string())).collect();
        for (room, events) in per_room {
            if !joined.contains(&room) {
                continue;
            }
            let events = filters::room_events(&rf.account_data, events);
            if events.is_empty() {
                continue;
            }
            let (entry, _) = body.joined_room(room, upto.events);
            entry.account_data.events.extend(events.into_iter().map(|e| raw(e.to_string())));
        }

        let presence =
            self.presence_events(client, req.user_id, since(Stream::Presence), upto.get(Stream::Presence)).await?;
        body.set_presence(&req.filter.presence, presence);
        Ok(())
    }

    /// The unread counts of every joined room in the body.
    async fn add_unread(
        &self,
        client: &Client,
        req: &Request<'_>,
        upto: StreamToken,
        ignored: &Ignored,
        body: &mut SyncBody,
    ) -> Result<()> {
        let rooms: Vec<String> = body.rooms.join.keys().cloned().collect();
        let threads = req.filter.room.timeline.unread_thread_notifications;
        for (room, counts) in self.unread_counts(client, req.user_id, &rooms, upto.events, ignored).await? {
            body.set_unread(&room, counts, threads);
        }
        Ok(())
    }

    /// The device's to-device messages of the window, at most `PER_SYNC`; when more are
    /// waiting, the next sync starts after the last one delivered.
    async fn add_to_device(
        &self,
        client: &Client,
        req: &Request<'_>,
        upto: StreamToken,
        body: &mut SyncBody,
    ) -> Result<()> {
        let since_td = req.since.map(|t| t.get(Stream::ToDevice));
        let (to_device, truncated) = self
            .to_device_events(
                client,
                req.user_id,
                req.device_id,
                since_td,
                upto.get(Stream::ToDevice),
                to_device::PER_SYNC,
            )
            .await?;
        body.to_device.events = to_device;
        if let Some(last) = truncated {
            let next: StreamToken = body.next_batch.parse()?;
            body.next_batch = next.with(Stream::ToDevice, last).to_string();
        }
        Ok(())
    }
}
