//! Appending events to a room: the one path every new event takes. Under the room's lock it
//! picks auth and prev events, builds and signs each PDU, checks it against the room
//! version's authorization rules, then stores the batch in one transaction and announces
//! it. An event that fails the rules is never stored or sent to anyone.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    CanonicalJsonObject, OwnedEventId, OwnedUserId, RoomId,
    events::{StateEventType, TimelineEventType},
};
use serde_json::value::RawValue;
use trellis_bus::Channel;
use trellis_core::{Error, ErrorCode, Result, time::now_ms};

use crate::{
    Rooms,
    pdu::{self, Draft, Pdu},
    state::RoomState,
};

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

const SELECT_TXN: &str =
    "SELECT event_id FROM event_txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3 AND scope = $4";

/// What the transaction writes for one event.
pub(crate) struct Row {
    pub pdu: Arc<Pdu>,
    pub json: String,
    pub unsigned: Option<String>,
    pub txn: Option<Txn>,
    pub redacts: Option<OwnedEventId>,
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
        let lock = self.room_lock(room_id);
        let mut cached = lock.lock().await;
        // Under the room lock a repeated transaction cannot race its first use.
        if let Some(ev) = events.first()
            && let Some(id) = self.txn_event(&ev.sender, ev.txn.as_ref()).await?
        {
            return Ok(Appended::Duplicate(id));
        }
        let creating = new_room.is_some();
        let (mut room, new_room) = match new_room {
            Some(NewRoom { state, creator, is_public, alias }) => (state, Some((creator, is_public, alias))),
            None => match cached.take() {
                Some(room) => (room, None),
                None => {
                    let client = self.pool.get().await?;
                    match RoomState::load(&client, room_id.as_str()).await? {
                        Some(room) => (room, None),
                        None => return Err(Error::not_found("unknown room")),
                    }
                }
            },
        };
        // From here `cached` stays empty until the batch is stored: on any failure the next
        // writer reloads the room from PostgreSQL instead of trusting half-applied state.
        let previous_latest = room.latest.clone();
        let mut rows = Vec::with_capacity(events.len());
        // Setting state again changes nothing: one state event its sender already set with
        // the same content is answered with the event in place (as Synapse does), once the
        // rules allow it.
        let dedupe = !creating && events.len() == 1;
        for ev in events {
            match self.authorise(&mut room, ev, dedupe) {
                Ok(Authorised::Row(row)) => rows.push(row),
                Ok(Authorised::Unchanged(existing)) => {
                    *cached = Some(room);
                    return Ok(Appended::Duplicate(existing));
                }
                Err(e) => {
                    // Nothing was applied yet: the cached state is still exact, keep it.
                    if rows.is_empty() && !creating {
                        *cached = Some(room);
                    }
                    return Err(e);
                }
            }
        }
        let stored: Vec<Arc<Pdu>> = rows.iter().map(|r| r.pdu.clone()).collect();
        let channels = wake_channels(room_id, &stored);

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
        let latest = room.latest.as_ref().map(|e| e.as_str());
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
        *cached = Some(room);
        drop(cached);
        metrics::counter!("trellis_events_persisted_total").increment(stored.len() as u64);
        // Read-your-writes: once this returns, every reader's token covers these events.
        self.tracker.wait_announced(last).await;
        Ok(Appended::New(stored))
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

    /// Builds one event on top of `room`, checks it, and applies it to `room`; with `dedupe`,
    /// a state event that would change nothing is not applied.
    fn authorise(&self, room: &mut RoomState, ev: NewEvent, dedupe: bool) -> Result<Authorised> {
        let unchanged = if dedupe { unchanged_state(room, &ev) } else { None };
        let rules = room.rules.clone();
        let kind = TimelineEventType::from(ev.kind.as_str());
        let content_json = serde_json::to_string(&ev.content)?;
        let content_raw = RawValue::from_string(content_json)?;
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
        let mut auth_events: Vec<OwnedEventId> = auth.keys().cloned().collect();
        auth_events.sort();
        let built = pdu::build(
            Draft {
                room_id: &room.room_id,
                sender: &ev.sender,
                kind: &ev.kind,
                state_key: ev.state_key.as_deref(),
                content: ev.content,
                prev_events: room.latest.iter().cloned().collect(),
                auth_events,
                depth: (room.depth + 1) as u64,
                origin_server_ts: now_ms() as u64,
                redacts: ev.redacts.as_ref().map(|r| &*r.event_id),
            },
            &rules,
            self.settings.server_name.as_str(),
            &self.key,
        )?;
        let pdu = built.pdu;
        check_rules(room, &pdu, &auth)?;
        if let Some(target) = &ev.redacts {
            crate::redact::check_permission(room, &ev.sender, &target.sender)?;
        }
        if let Some(existing) = unchanged {
            return Ok(Authorised::Unchanged(existing));
        }

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
        if let Some(target) = &ev.redacts {
            room.redact(&target.event_id)?;
        }
        room.latest = Some(pdu.event_id.clone());
        room.depth += 1;
        Ok(Authorised::Row(Row {
            pdu,
            json: built.json,
            unsigned,
            txn: ev.txn,
            redacts: ev.redacts.map(|r| r.event_id),
        }))
    }
}

/// What the rules made of one new event.
enum Authorised {
    Row(Row),
    /// A state event its sender already set with the same content: this is the event.
    Unchanged(OwnedEventId),
}

/// When `ev` is a state event its sender already set with the same content, that event.
fn unchanged_state(room: &RoomState, ev: &NewEvent) -> Option<OwnedEventId> {
    let existing = room.get(&StateEventType::from(ev.kind.as_str()), ev.state_key.as_deref()?)?;
    let content: CanonicalJsonObject = serde_json::from_str(existing.content_str()).ok()?;
    (existing.sender == ev.sender && content == ev.content && ev.redacts.is_none()).then(|| existing.event_id.clone())
}

/// The room version's authorization rules (ruma's implementation) for `pdu`, given its auth
/// events and the room's current state: `M_FORBIDDEN` naming the rule that refused it.
pub(crate) fn check_rules(room: &RoomState, pdu: &Pdu, auth: &HashMap<OwnedEventId, Arc<Pdu>>) -> Result<()> {
    let rules = &room.rules.authorization;
    ruma::state_res::check_state_independent_auth_rules(rules, pdu, |id| auth.get(id).cloned())
        .map_err(Error::forbidden)?;
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
