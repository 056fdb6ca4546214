//! Bus subscriptions kept between one device's long-polls. A client polls again as soon as
//! it is answered; registering on its user and room channels again for every poll, and
//! leaving them after it, is a measurable share of a woken poll's cost when a message wakes
//! a thousand of them. A parked subscription stays registered (a wake-up while it is parked
//! is remembered by its waiter, and the next poll looks at the news first anyway) and is
//! dropped once unused for `KEEP`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use foldhash::HashMap as FastMap;
use parking_lot::Mutex;
use trellis_bus::Subscription;

use crate::{
    poll::caches::{Key, Parts},
    queries::Membership,
};

/// How long a subscription waits for its device's next poll.
pub(crate) const KEEP: Duration = Duration::from_secs(10);

/// A subscription between two polls, with the memberships whose rooms it listens to.
pub(crate) struct Parked {
    pub sub: Subscription,
    pub rooms: Arc<Vec<Membership>>,
}

/// Parked subscriptions by `(user, device)`, with when each was parked.
pub(crate) struct Parking {
    slots: Mutex<FastMap<Key<2>, (Parked, Instant)>>,
    keep: Duration,
}

impl Parking {
    pub(crate) fn new(keep: Duration) -> Parking {
        Parking { slots: Mutex::default(), keep }
    }

    /// The subscription `device` of `user` left at its last poll, if still kept.
    pub(crate) fn take(&self, user: &str, device: &str) -> Option<Parked> {
        let (parked, at) = self.slots.lock().remove(&[user, device] as &dyn Parts)?;
        (at.elapsed() < self.keep).then_some(parked)
    }

    /// Keeps `parked` for the next poll of `device` (replacing one already kept).
    pub(crate) fn park(&self, user: &str, device: &str, parked: Parked) {
        let slot = (parked, Instant::now());
        let mut slots = self.slots.lock();
        let replaced = match slots.get_mut(&[user, device] as &dyn Parts) {
            Some(kept) => Some(std::mem::replace(kept, slot)),
            None => slots.insert(Key::new([user, device]), slot),
        };
        drop(slots);
        // Dropped outside the lock: leaving the bus takes the bus's own lock.
        drop(replaced);
    }

    /// Drops the subscriptions unused for longer than the keep period.
    pub(crate) fn sweep(&self) {
        let stale: Vec<_> = self.slots.lock().extract_if(|_, (_, at)| at.elapsed() >= self.keep).collect();
        // Dropped outside the lock, as in `park`.
        drop(stale);
    }

    /// Devices with a subscription kept.
    pub(crate) fn len(&self) -> usize {
        self.slots.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use trellis_bus::{Bus, Channel, MemoryBus};

    use super::*;

    #[tokio::test]
    async fn a_device_gets_back_its_own_subscription_and_a_wake_up_while_parked() {
        let bus = MemoryBus::new();
        let parking = Parking::new(KEEP);
        let rooms = Arc::new(Vec::new());
        let sub = bus.subscribe(&[Channel::User("@u:x".into())]).await.unwrap();
        parking.park("@u:x", "A", Parked { sub, rooms: rooms.clone() });
        assert!(parking.take("@u:x", "B").is_none(), "another device has nothing parked");
        assert_eq!(parking.len(), 1);

        bus.publish(&[Channel::User("@u:x".into())], 5).await;
        let parked = parking.take("@u:x", "A").expect("kept for the same device");
        assert!(Arc::ptr_eq(&parked.rooms, &rooms));
        tokio::time::timeout(Duration::from_secs(5), parked.sub.wait()).await.expect("the wake-up was remembered");
        assert!(parking.take("@u:x", "A").is_none(), "taken once");
        assert_eq!(parking.len(), 0);
    }

    #[tokio::test]
    async fn parking_again_replaces_and_old_ones_are_swept_or_refused() {
        let bus = MemoryBus::new();
        let parking = Parking::new(Duration::from_millis(300));
        for _ in 0..2 {
            let sub = bus.subscribe(&[Channel::User("@u:x".into())]).await.unwrap();
            parking.park("@u:x", "A", Parked { sub, rooms: Arc::new(Vec::new()) });
        }
        let sub = bus.subscribe(&[Channel::User("@v:x".into())]).await.unwrap();
        parking.park("@v:x", "A", Parked { sub, rooms: Arc::new(Vec::new()) });
        assert_eq!(parking.len(), 2, "one per device");
        parking.sweep();
        assert_eq!(parking.len(), 2, "fresh subscriptions stay");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(parking.take("@v:x", "A").is_none(), "too old to hand out");
        parking.sweep();
        assert_eq!(parking.len(), 0, "old ones are dropped");
    }
}
