//! Appending events to a room: the one path every new event takes. Under the room's lock it
//! picks auth and prev events, builds and signs each PDU, checks it against the room
//! version's authorization rules, then stores the batch in one transaction and announces
//! it. An event that fails the rules is never stored or sent to anyone.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    CanonicalJsonObject, EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId,
    events::{StateEventType, TimelineEventType},
};
use serde_json::value::RawValue;
use tokio::sync::OwnedMutexGuard;
use trellis_bus::Channel;
use trellis_core::{Error, ErrorCode, Result, time::now_ms};

use crate::{
    Rooms,
    pdu::{self, Built, Draft, EventRef, Pdu},
    state::RoomState,
};

/// One event to append.
pub struct NewEvent {
    pub sender: OwnedUserId,
    pub kind: String,
    pub state_key: Option<String>,
    pub content: CanonicalJsonObject,
    /// `(device_id, txn_id)` of a client transaction.
    pub txn: Option<(String, String)>,
    /// For redactions: the event redacted.
    pub redacts: Option<Redacts>,
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

/// A room to insert in the same transaction as its first events.
pub struct NewRoom {
    pub state: RoomState,
    /// The room's create event, from [`Rooms::build_create`] (from v12 on its ID names the room).
    pub create: Built,
    pub creator: String,
    pub is_public: bool,
    pub alias: Option<String>,
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

const SELECT_TXN: &str = "SELECT event_id FROM event_txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3";

/// What the transaction writes for one event.
pub(crate) struct Row {
    pub pdu: Arc<Pdu>,
    pub json: String,
    pub unsigned: Option<String>,
    pub txn: Option<(String, String)>,
    pub redacts: Option<OwnedEventId>,
}

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
const ADVANCE_ROOM: &str = "UPDATE rooms SET latest_event_id = $2, depth = $3 \
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
        let advanced = tx
            .execute(
                ADVANCE_ROOM,
                &[&room_id.as_str(), &latest, &room.depth, &previous_latest.as_ref().map(|e| e.as_str())],
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
    pub(crate) async fn txn_event(
        &self,
        sender: &ruma::UserId,
        txn: Option<&(String, String)>,
    ) -> Result<Option<OwnedEventId>> {
        let Some((device, txn_id)) = txn else { return Ok(None) };
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_TXN).await?;
        let row = client.query_opt(&stmt, &[&sender.as_str(), device, txn_id]).await?;
        Ok(row.map(|r| ruma::EventId::parse(r.get::<_, String>(0))).transpose()?)
    }

    /// Builds a new room's create event. From v12 on the room is named after the event (which
    /// then carries no room ID); before, the room gets `room_id` (a fresh `!opaque:server` ID
    /// unless one was chosen).
    pub(crate) fn build_create(
        &self,
        version: &RoomVersionId,
        sender: &UserId,
        content: CanonicalJsonObject,
        room_id: Option<OwnedRoomId>,
    ) -> Result<(OwnedRoomId, Built)> {
        let rules = crate::state::rules_for(version)?;
        let named_by_create = rules.authorization.room_create_event_id_as_room_id;
        let random_id =
            (!named_by_create).then(|| room_id.unwrap_or_else(|| RoomId::new_v1(&self.settings.server_name)));
        let draft = Draft {
            room_id: random_id.as_deref(),
            sender,
            kind: "m.room.create",
            state_key: Some(""),
            content,
            prev_events: Vec::new(),
            auth_events: Vec::new(),
            depth: 1,
            origin_server_ts: now_ms() as u64,
            redacts: None,
        };
        let built = pdu::build(draft, &rules, &self.settings.server_name, &self.key)?;
        let room_id = match random_id {
            Some(id) => id,
            None => RoomId::new_v2(built.pdu.event_id.localpart())?,
        };
        Ok((room_id, built))
    }

    /// Builds one event on top of `room`, citing the auth events the version selects.
    fn build_event(&self, room: &RoomState, ev: &NewEvent) -> Result<(Built, HashMap<OwnedEventId, Arc<Pdu>>)> {
        let rules = &room.rules;
        let kind = TimelineEventType::from(ev.kind.as_str());
        let content_raw = RawValue::from_string(serde_json::to_string(&ev.content)?)?;
        let auth_types = ruma::state_res::auth_types_for_event(
            &kind,
            &ev.sender,
            ev.state_key.as_deref(),
            &content_raw,
            &rules.authorization,
        )
        .map_err(Error::bad_json)?;
        let mut auth: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        for (t, k) in &auth_types {
            if let Some(p) = room.get(t, k) {
                auth.insert(p.event_id.clone(), p.clone());
            }
        }
        let mut auth_events: Vec<EventRef> = auth.values().map(|p| p.reference()).collect();
        auth_events.sort();
        let built = pdu::build(
            Draft {
                room_id: Some(&room.room_id),
                sender: &ev.sender,
                kind: &ev.kind,
                state_key: ev.state_key.as_deref(),
                content: ev.content.clone(),
                prev_events: room.latest.iter().cloned().collect(),
                auth_events,
                depth: (room.depth + 1) as u64,
                origin_server_ts: now_ms() as u64,
                redacts: ev.redacts.as_ref().map(|r| &*r.event_id),
            },
            rules,
            &self.settings.server_name,
            &self.key,
        )?;
        Ok((built, auth))
    }
}

/// Checks a built event against `room` and applies it: the row the transaction will write.
fn accept(
    room: &mut RoomState,
    built: Built,
    auth: &HashMap<OwnedEventId, Arc<Pdu>>,
    txn: Option<(String, String)>,
    redacts: Option<Redacts>,
) -> Result<Row> {
    let pdu = built.pdu;
    check_rules(room, &pdu, auth)?;
    let unsigned = pdu.state_key.as_ref().and_then(|key| {
        let prev = room.get(&StateEventType::from(pdu.kind.to_string()), key)?;
        let content: serde_json::Value = serde_json::from_str(prev.content_str()).ok()?;
        Some(
            serde_json::json!({
                "replaces_state": prev.event_id,
                "prev_content": content,
                "prev_sender": prev.sender,
            })
            .to_string(),
        )
    });
    room.insert(pdu.clone());
    if let Some(target) = &redacts {
        room.redact(&target.event_id)?;
    }
    room.latest = Some(pdu.reference());
    room.depth += 1;
    Ok(Row { pdu, json: built.json, unsigned, txn, redacts: redacts.map(|r| r.event_id) })
}

/// The room version's authorization rules (ruma's implementation) for `pdu`, given its auth
/// events and the room's current state: `M_FORBIDDEN` naming the rule that refused it.
pub(crate) fn check_rules(room: &RoomState, pdu: &Pdu, auth: &HashMap<OwnedEventId, Arc<Pdu>>) -> Result<()> {
    let rules = &room.rules.authorization;
    // From v12 the create event is never an auth event, yet the rules look it up by the ID
    // the room is named after.
    let create = room.get(&StateEventType::RoomCreate, "");
    let fetch = |id: &EventId| auth.get(id).or(create.filter(|c| c.event_id == id)).cloned();
    ruma::state_res::check_state_independent_auth_rules(rules, pdu, fetch).map_err(Error::forbidden)?;
    ruma::state_res::check_state_dependent_auth_rules(rules, pdu, |t, k| room.get(t, k).cloned())
        .map_err(Error::forbidden)
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

#[cfg(test)]
#[path = "auth_events_rules.rs"]
mod auth_events_rules;
