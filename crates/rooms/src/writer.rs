//! Appending events to a room: the one path every new event takes. A [`Batch`] holds the
//! room's lock and state while each event is built, signed and checked against the room
//! version's authorization rules ([`crate::authorise`]); the batch is then stored in one
//! transaction and announced. An event that fails the rules is never stored or sent to anyone.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    CanonicalJsonObject, OwnedEventId, RoomId,
    events::{StateEventType, TimelineEventType},
};
use tokio::sync::OwnedMutexGuard;
use trellis_bus::Channel;
use trellis_core::{Error, ErrorCode, Result, time::now_ms};
use trellis_storage::events::BUMP_TYPES;

use crate::{
    Rooms,
    authorise::{accept, check_rules},
    new_event::{Appended, NewEvent, Row, Txn},
    pdu::{Built, Pdu},
    state::RoomState,
};

/// A room to insert in the same transaction as its first events.
pub struct NewRoom {
    pub state: RoomState,
    /// The room's create event, from [`Rooms::build_create`] (from v12 on its ID names the room).
    pub create: Built,
    pub creator: String,
    pub is_public: bool,
    pub alias: Option<String>,
}

const SELECT_TXN: &str =
    "SELECT event_id FROM event_txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3 AND scope = $4";

/// A room's write lock, held with the room's state while events are built and checked against
/// it, until they are stored together. Dropped unstored, it leaves no cached state behind: the
/// next writer reloads the room from PostgreSQL instead of trusting half-applied state.
pub(crate) struct Batch {
    guard: OwnedMutexGuard<Option<RoomState>>,
    pub room: RoomState,
    previous_latest: Option<OwnedEventId>,
    /// For a room being created: its creator, listing and alias.
    new_room: Option<(String, bool, Option<String>)>,
    rows: Vec<Row>,
}

impl Batch {
    /// Ends an untouched batch, keeping the room's cached state (it is still exact).
    pub(crate) fn release(mut self) {
        if self.rows.is_empty() && self.new_room.is_none() {
            *self.guard = Some(self.room);
        }
    }
}

const INSERT_ROOM: &str =
    "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts) VALUES ($1, $2, $3, $4, $5)";
const INSERT_ALIAS: &str = "INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)";
/// Moves the room's latest event, and its latest bump event (`$5`, none in this batch: NULL,
/// which `GREATEST` passes over).
const ADVANCE_ROOM: &str = "UPDATE rooms SET latest_event_id = $2, depth = $3, bump_pos = GREATEST(bump_pos, $5) \
     WHERE room_id = $1 AND latest_event_id IS NOT DISTINCT FROM $4";

impl Rooms {
    /// Appends `events` to an existing room (`new_room` = None) or creates the room with them.
    /// Returns the stored PDUs in order. `M_NOT_FOUND` if the room does not exist.
    pub(crate) async fn append(
        &self,
        room_id: &RoomId,
        new_room: Option<NewRoom>,
        events: Vec<NewEvent>,
    ) -> Result<Appended> {
        let mut batch = self.open_batch(room_id, new_room).await?;
        // Under the room lock a repeated transaction cannot race its first use.
        if let Some(ev) = events.first()
            && let Some(id) = self.txn_event(&ev.sender, ev.txn.as_ref()).await?
        {
            batch.release();
            return Ok(Appended::Duplicate(id));
        }
        // Setting state again changes nothing: one state event its sender already set with
        // the same content is answered with the event in place (as Synapse does), once the
        // rules allow it.
        if let [ev] = events.as_slice()
            && batch.new_room.is_none()
            && let Some(existing) = unchanged_state(&batch.room, ev)
        {
            let allowed =
                self.build_event(&batch.room, ev).and_then(|(built, auth)| check_rules(&batch.room, &built.pdu, &auth));
            batch.release();
            allowed?;
            return Ok(Appended::Duplicate(existing));
        }
        for ev in events {
            if let Err(e) = self.add(&mut batch, ev) {
                batch.release();
                return Err(e);
            }
        }
        Ok(Appended::New(self.commit(batch).await?))
    }

    /// Takes the room's write lock with its state (loaded when not cached), or starts a new
    /// room with its create event. `M_NOT_FOUND` if the room does not exist.
    pub(crate) async fn open_batch(&self, room_id: &RoomId, new_room: Option<NewRoom>) -> Result<Batch> {
        let mut guard = self.room_lock(room_id).lock_owned().await;
        let Some(NewRoom { state, create, creator, is_public, alias }) = new_room else {
            let room = match guard.take() {
                Some(room) => room,
                None => {
                    let client = self.pool.get().await?;
                    RoomState::load(&client, room_id.as_str()).await?.ok_or_else(|| Error::not_found("unknown room"))?
                }
            };
            let previous_latest = room.latest.as_ref().map(|l| l.id.clone());
            return Ok(Batch { guard, room, previous_latest, new_room: None, rows: Vec::new() });
        };
        let mut batch = Batch {
            guard,
            room: state,
            previous_latest: None,
            new_room: Some((creator, is_public, alias)),
            rows: vec![],
        };
        let row = accept(&mut batch.room, create, &HashMap::new(), None, None)?;
        batch.rows.push(row);
        Ok(batch)
    }

    /// Builds `ev` on top of the batch's room, checks it and applies it to the batch.
    pub(crate) fn add(&self, batch: &mut Batch, ev: NewEvent) -> Result<Arc<Pdu>> {
        let (built, auth) = self.build_event(&batch.room, &ev)?;
        if let Some(target) = &ev.redacts {
            crate::redact::check_permission(&batch.room, &ev.sender, &target.sender)?;
        }
        let row = accept(&mut batch.room, built, &auth, ev.txn, ev.redacts)?;
        let pdu = row.pdu.clone();
        batch.rows.push(row);
        Ok(pdu)
    }

    /// Stores the batch's events in one transaction and announces them; returns them in order.
    pub(crate) async fn commit(&self, batch: Batch) -> Result<Vec<Arc<Pdu>>> {
        let Batch { mut guard, room, previous_latest, new_room, rows } = batch;
        let room_id = room.room_id.clone();
        let creating = new_room.is_some();
        let stored: Vec<Arc<Pdu>> = rows.iter().map(|r| r.pdu.clone()).collect();
        let channels = wake_channels(&room_id, &stored);

        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Reserved only once a connection is held: a reservation holds back every reader's
        // position until it commits, so it must not wait for the pool.
        let reservation = self.tracker.reserve(rows.len());
        if let Some((creator, is_public, alias)) = &new_room {
            tx.execute(INSERT_ROOM, &[&room_id.as_str(), &room.version.as_str(), creator, is_public, &now_ms()])
                .await?;
            if let Some(alias) = alias {
                tx.execute(INSERT_ALIAS, &[alias, &room_id.as_str(), creator, &now_ms()]).await.map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::new(ErrorCode::RoomInUse, "room alias already taken")
                    } else {
                        e.into()
                    }
                })?;
            }
        }
        crate::persist::write_rows(&tx, &room, &rows, reservation.positions()).await?;
        let latest = room.latest.as_ref().map(|e| e.id.as_str());
        let bump = rows
            .iter()
            .zip(reservation.positions())
            .filter(|(r, _)| BUMP_TYPES.contains(&r.pdu.kind.to_string().as_str()))
            .map(|(_, pos)| *pos)
            .max();
        let advanced = tx
            .execute(
                ADVANCE_ROOM,
                &[&room_id.as_str(), &latest, &room.depth, &previous_latest.as_ref().map(|e| e.as_str()), &bump],
            )
            .await?;
        if advanced != 1 && !creating {
            return Err(Error::internal("room changed under a concurrent writer"));
        }
        if let Some(jitter) = self.settings.test_commit_jitter {
            // Test-only: widen the window in which later positions commit first.
            let ms = rand::random_range(0..jitter.as_millis().max(1) as u64);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        // A writer whose lock session is gone (a PostgreSQL restart) may already have a
        // successor handing out the same positions: it must not commit another event.
        if !self.holds_writer_lock() {
            tracing::error!("refusing to commit: this process no longer holds the event-writer lock");
            return Err(
                Error::new(ErrorCode::Unknown, "The event writer is changing over; try again shortly").with_status(503)
            );
        }
        tx.commit().await.map_err(|e| {
            if is_unique_violation(&e) { Error::new(ErrorCode::RoomInUse, "already exists") } else { e.into() }
        })?;
        // The connection goes back before waiting for the announcement: the announcer
        // needs one from the same pool.
        drop(client);
        let last = self.tracker.commit(reservation, channels);
        *guard = Some(room);
        drop(guard);
        metrics::counter!("trellis_events_persisted_total").increment(stored.len() as u64);
        // Read-your-writes: once this returns, every reader's token covers these events.
        self.tracker.wait_announced(last).await;
        Ok(stored)
    }

    /// A copy of the room's current state (loaded and cached when need be), for decisions
    /// made before an append; `M_NOT_FOUND` for an unknown room.
    pub(crate) async fn snapshot(&self, room_id: &RoomId) -> Result<RoomState> {
        let lock = self.room_lock(room_id);
        let mut cached = lock.lock().await;
        if cached.is_none() {
            let client = self.pool.get().await?;
            *cached = RoomState::load(&client, room_id.as_str()).await?;
        }
        cached.clone().ok_or_else(|| Error::not_found("Room not found"))
    }

    /// The event a client transaction already created, if any.
    pub(crate) async fn txn_event(&self, sender: &ruma::UserId, txn: Option<&Txn>) -> Result<Option<OwnedEventId>> {
        let Some(txn) = txn else { return Ok(None) };
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_TXN).await?;
        let row = client.query_opt(&stmt, &[&sender.as_str(), &txn.device, &txn.id, &txn.scope]).await?;
        Ok(row.map(|r| ruma::EventId::parse(r.get::<_, String>(0))).transpose()?)
    }
}

/// Every event wakes the room's channel; member events also wake their target, who may not
/// be listening on the room yet (an invite, a join from another device).
fn wake_channels(room_id: &RoomId, pdus: &[Arc<Pdu>]) -> Vec<Channel> {
    let mut channels = vec![Channel::Room(room_id.to_string())];
    for p in pdus {
        if p.kind == TimelineEventType::RoomMember
            && let Some(target) = &p.state_key
        {
            let c = Channel::User(target.clone());
            if !channels.contains(&c) {
                channels.push(c);
            }
        }
    }
    channels
}

pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// When `ev` is a state event its sender already set with the same content, that event.
fn unchanged_state(room: &RoomState, ev: &NewEvent) -> Option<OwnedEventId> {
    if ev.redacts.is_some() {
        return None;
    }
    let existing = room.get(&StateEventType::from(ev.kind.as_str()), ev.state_key.as_deref()?)?;
    let content: CanonicalJsonObject = serde_json::from_str(existing.content_str()).ok()?;
    (existing.sender == ev.sender && content == ev.content).then(|| existing.event_id.clone())
}
