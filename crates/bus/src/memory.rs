//! The in-process bus of monolith mode: publishing wakes local waiters directly.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use trellis_core::{Result, Stream, StreamPos};

use crate::{Bus, Channel, Subscription, hub::Hub};

pub struct MemoryBus {
    hub: Arc<Hub>,
    prefix: Arc<str>,
    /// How long a channel nobody waits on is kept: what this process knows of its changes
    /// lets a client's next long-poll (a moment later) skip PostgreSQL.
    linger: Duration,
    last_sweep: Mutex<Instant>,
}

impl MemoryBus {
    /// A bus keeping idle channels for the default linger (30 s, as `bus.linger_ms`).
    pub fn new() -> Arc<MemoryBus> {
        MemoryBus::with_linger(Duration::from_secs(30))
    }

    pub fn with_linger(linger: Duration) -> Arc<MemoryBus> {
        Arc::new(MemoryBus {
            hub: Arc::default(),
            prefix: PREFIX.into(),
            linger,
            last_sweep: Mutex::new(Instant::now()),
        })
    }

    /// Forgets the channels idle for longer than the linger, at most twice per linger period.
    fn sweep(&self) {
        let mut last = self.last_sweep.lock();
        if last.elapsed() >= (self.linger / 2).min(Duration::from_secs(5)) {
            *last = Instant::now();
            drop(last);
            self.hub.take_idle(self.linger);
        }
    }

    /// Channel keys currently registered (for tests and metrics).
    pub fn channel_count(&self) -> usize {
        self.hub.key_count()
    }
}

const PREFIX: &str = "mem";

#[async_trait::async_trait]
impl Bus for MemoryBus {
    async fn publish_at(&self, channels: &[Channel], stream: Stream, pos: StreamPos) {
        for c in channels {
            self.hub.dispatch(&c.key(PREFIX), stream, pos);
        }
        if stream == Stream::Events {
            self.hub.batch_end(pos);
        }
        self.sweep();
    }

    async fn subscribe(&self, channels: &[Channel]) -> Result<Subscription> {
        // In process, a channel is live the moment it is registered: no backend to ask.
        let mut sub = Subscription::new(self.hub.clone(), None, self.prefix.clone());
        sub.add(channels).await?;
        Ok(sub)
    }

    fn is_healthy(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_only_subscribers_of_the_channel() {
        let bus = MemoryBus::new();
        let a = bus.subscribe(&[Channel::Room("!a".into())]).await.unwrap();
        let b = bus.subscribe(&[Channel::User("@b".into())]).await.unwrap();
        bus.publish(&[Channel::Room("!a".into())], 7).await;
        tokio::time::timeout(Duration::from_secs(1), a.wait()).await.expect("a is woken");
        assert_eq!(a.announced().events, 7);
        assert!(tokio::time::timeout(Duration::from_millis(50), b.wait()).await.is_err(), "b is not woken");
        assert_eq!(b.announced().events, 0);
    }

    #[tokio::test]
    async fn a_wake_up_before_waiting_is_kept() {
        let bus = MemoryBus::new();
        let mut s = bus.subscribe(&[]).await.unwrap();
        s.add(&[Channel::Room("!late".into())]).await.unwrap();
        bus.publish(&[Channel::Room("!late".into())], 3).await;
        bus.publish(&[Channel::Room("!late".into())], 2).await;
        tokio::time::timeout(Duration::from_secs(1), s.wait()).await.expect("permit was stored");
        assert_eq!(s.announced().events, 3, "the highest position wins");
        bus.publish_at(&[Channel::Room("!late".into())], Stream::Receipts, 5).await;
        tokio::time::timeout(Duration::from_secs(1), s.wait()).await.expect("woken");
        assert_eq!((s.announced().events, s.announced().get(Stream::Receipts)), (3, 5), "streams kept apart");
    }

    #[tokio::test]
    async fn knowledge_of_changes_since_a_token() {
        let bus = MemoryBus::new();
        let room = Channel::Room("!k".into());
        let sub = bus.subscribe(&[room.clone(), Channel::User("@u".into())]).await.unwrap();
        let at = |e: i64| trellis_core::StreamToken::new(e);
        assert!(!sub.news_since(&at(10)).known, "no baseline yet: only PostgreSQL knows");
        sub.baseline(&at(10));
        let news = sub.news_since(&at(10));
        assert!(news.known && news.changes.is_empty(), "nothing since the baseline");
        assert!(!sub.news_since(&at(9)).known, "before the baseline is unknown");
        bus.publish(std::slice::from_ref(&room), 12).await;
        let news = sub.news_since(&at(10));
        assert_eq!(news.changes, vec![(room.clone(), Stream::Events, 12)]);
        assert_eq!(news.events_complete, 12);
        assert!(sub.news_since(&at(12)).changes.is_empty());
        bus.publish_at(&[Channel::User("@u".into())], Stream::AccountData, 3).await;
        let news = sub.news_since(&at(12));
        assert_eq!(news.changes, vec![(Channel::User("@u".into()), Stream::AccountData, 3)]);
    }

    #[tokio::test]
    async fn dropping_a_subscription_unregisters_it_after_the_linger() {
        let bus = MemoryBus::with_linger(Duration::from_millis(200));
        let s = bus.subscribe(&[Channel::Room("!x".into()), Channel::User("@u".into())]).await.unwrap();
        assert_eq!(bus.channel_count(), 2);
        s.baseline(&trellis_core::StreamToken::new(1));
        drop(s);
        bus.publish(&[], 1).await;
        assert_eq!(bus.channel_count(), 2, "kept while lingering");
        // What was learnt while nobody listened still counts for the next long-poll.
        bus.publish(&[Channel::Room("!x".into())], 4).await;
        let again = bus.subscribe(&[Channel::Room("!x".into()), Channel::User("@u".into())]).await.unwrap();
        let news = again.news_since(&trellis_core::StreamToken::new(1));
        assert!(news.known, "the baseline survived the gap between polls");
        assert_eq!(news.changes, vec![(Channel::Room("!x".into()), Stream::Events, 4)]);
        drop(again);
        tokio::time::sleep(Duration::from_millis(250)).await;
        bus.publish(&[], 5).await;
        assert_eq!(bus.channel_count(), 0, "forgotten after the linger");
    }

    #[tokio::test]
    async fn cleared_wakeups_are_forgotten_but_later_ones_wake() {
        let bus = MemoryBus::new();
        let sub = bus.subscribe(&[Channel::Room("!x".into())]).await.unwrap();
        bus.publish(&[Channel::Room("!x".into())], 2).await;
        sub.clear_wakeups();
        let quiet = tokio::time::timeout(Duration::from_millis(100), sub.wait()).await;
        assert!(quiet.is_err(), "the stored wake-up was cleared");
        sub.clear_wakeups();
        bus.publish(&[Channel::Room("!x".into())], 3).await;
        tokio::time::timeout(Duration::from_secs(5), sub.wait()).await.expect("a later wake-up is kept");
    }

    #[tokio::test]
    async fn ignored_room_streams_do_not_wake_but_are_still_news() {
        let bus = MemoryBus::new();
        let (room, user) = (Channel::Room("!r".into()), Channel::User("@u".into()));
        let sub = bus.subscribe(&[room.clone(), user.clone()]).await.unwrap();
        sub.baseline(&trellis_core::StreamToken::new(1));
        sub.ignore_in_rooms(&[Stream::Presence, Stream::Events]);
        // A stored wake-up makes `wait` ready at its first poll.
        let woken = || async { tokio::time::timeout(Duration::ZERO, sub.wait()).await.is_ok() };
        bus.publish_at(std::slice::from_ref(&room), Stream::Presence, 4).await;
        assert!(!woken().await, "a room's presence change does not wake a poll that ignores presence");
        let news = sub.news_since(&trellis_core::StreamToken::new(1));
        assert_eq!(news.changes, vec![(room.clone(), Stream::Presence, 4)], "but it is still known");
        bus.publish_at(std::slice::from_ref(&room), Stream::Receipts, 2).await;
        assert!(woken().await, "other streams still wake");
        bus.publish_at(std::slice::from_ref(&user), Stream::Presence, 5).await;
        assert!(woken().await, "the user's own channel still wakes");
        bus.publish(std::slice::from_ref(&room), 6).await;
        assert!(woken().await, "events always wake");
        sub.ignore_in_rooms(&[]);
        bus.publish_at(std::slice::from_ref(&room), Stream::Presence, 7).await;
        assert!(woken().await, "the set is replaced at each poll");
    }
}
