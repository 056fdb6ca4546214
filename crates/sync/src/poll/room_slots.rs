//! Per-room state shared by the long-polls a worker holds, behind one async lock per room:
//! the first long-poll that needs a room's state from PostgreSQL reads it while the others
//! wait for it and share what it read. Rooms nobody asked about lately are dropped.

use std::{
    ops::{Deref, DerefMut},
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Slots unused this long are dropped.
const IDLE: Duration = Duration::from_secs(600);

/// A room's state and when a long-poll last used it.
pub struct Slot<T> {
    value: T,
    last_used: Instant,
}

impl<T> Deref for Slot<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Slot<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

pub struct RoomSlots<T> {
    rooms: DashMap<String, Arc<Mutex<Slot<T>>>>,
}

impl<T> Default for RoomSlots<T> {
    fn default() -> RoomSlots<T> {
        RoomSlots { rooms: DashMap::new() }
    }
}

impl<T> RoomSlots<T> {
    /// `room`'s state, locked (made by `new` if the room has none yet).
    pub async fn lock(&self, room: &str, new: impl FnOnce() -> T) -> OwnedMutexGuard<Slot<T>> {
        let slot = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Slot { value: new(), last_used: Instant::now() })))
            .clone();
        let mut guard = slot.lock_owned().await;
        guard.last_used = Instant::now();
        guard
    }

    /// Drops the rooms nobody asked about lately; how many.
    pub fn evict_idle(&self) -> usize {
        let before = self.rooms.len();
        self.rooms.retain(|_, slot| match slot.try_lock() {
            Ok(s) => s.last_used.elapsed() < IDLE,
            Err(_) => true,
        });
        before - self.rooms.len()
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }
}
