//! The wake-up bus. When the rooms service commits events it announces, per room and per
//! affected user, the stream position up to which everything has committed. Sync workers
//! subscribe only to the channels of the users whose long-polls they hold (their rooms and
//! their user channel), so no worker consumes every event on the server.
//!
//! Messages carry positions, never events: PostgreSQL is the truth and a lost message can
//! only delay a long-poll, never lose data. A subscription is live when `subscribe` returns,
//! so a long-poll that subscribes *before* reading the current position cannot miss a wake-up.

mod barrier;
mod batches;
mod hub;
pub mod memory;
pub mod ratelimit;
pub mod redis;
pub mod server;

use std::sync::Arc;

use foldhash::HashSet as FastSet;

use trellis_core::{Result, Stream, StreamPos, StreamToken};

pub use crate::{hub::News, memory::MemoryBus, ratelimit::RedisLimiter, redis::RedisBus, server::RedisServer};
use hub::{Hub, Waiter};

/// What a wake-up is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Something happened in this room.
    Room(String),
    /// Something happened to this user (an invite, a join or leave, later to-device messages).
    User(String),
    /// Events were committed, anywhere: the appservice sender's feed, published with every
    /// events batch only while appservices are configured.
    Appservices,
}

impl Channel {
    fn key(&self, prefix: &str) -> String {
        match self {
            Channel::Room(id) => format!("{prefix}.r.{id}"),
            Channel::User(id) => format!("{prefix}.u.{id}"),
            Channel::Appservices => format!("{prefix}.as"),
        }
    }
}

/// Publishing and subscribing. Implementations: [`MemoryBus`] (monolith) and [`RedisBus`].
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Announces that everything in `stream` up to `pos` has committed. Best effort: a
    /// failure is logged, because readers fall back to PostgreSQL.
    async fn publish_at(&self, channels: &[Channel], stream: Stream, pos: StreamPos);

    /// Announces a position of the events stream.
    async fn publish(&self, channels: &[Channel], pos: StreamPos) {
        self.publish_at(channels, Stream::Events, pos).await
    }

    /// Starts listening on `channels`; live once this returns.
    async fn subscribe(&self, channels: &[Channel]) -> Result<Subscription>;

    /// Returns once this process has heard every events batch published before the call
    /// (so [`News::events_complete`] reaches the latest published watermark), or after a
    /// short while. A batch ends on its own only for the processes it concerns, so a quiet
    /// process asks here before saying it is up to date.
    async fn catch_up(&self) {}

    /// False while wake-ups may be lost (Redis unreachable): long-polls then poll PostgreSQL.
    fn is_healthy(&self) -> bool;
}

/// The backend half of a subscription: makes channel keys live.
#[async_trait::async_trait]
trait Listen: Send + Sync + 'static {
    async fn listen(&self, keys: &[String]) -> Result<()>;
}

/// A set of channels one long-poll listens on. Dropping it stops listening.
pub struct Subscription {
    hub: Arc<Hub>,
    /// `None`: keys are live the moment they are registered (the in-process bus).
    backend: Option<Arc<dyn Listen>>,
    waiter: Arc<Waiter>,
    prefix: Arc<str>,
    keys: FastSet<String>,
}

impl Subscription {
    fn new(hub: Arc<Hub>, backend: Option<Arc<dyn Listen>>, prefix: Arc<str>) -> Subscription {
        Subscription { waiter: hub.new_waiter(), hub, backend, prefix, keys: FastSet::default() }
    }

    /// Listens on more channels; live once this returns.
    pub async fn add(&mut self, channels: &[Channel]) -> Result<()> {
        let new: Vec<(String, Channel)> =
            channels.iter().map(|c| (c.key(&self.prefix), c.clone())).filter(|(k, _)| !self.keys.contains(k)).collect();
        if new.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = new.iter().map(|(k, _)| k.clone()).collect();
        let all_live = self.hub.register(new, &self.waiter, self.backend.is_none());
        match &self.backend {
            Some(backend) if !all_live => {
                self.keys.extend(keys.iter().cloned());
                backend.listen(&keys).await
            }
            _ => {
                self.keys.extend(keys);
                Ok(())
            }
        }
    }

    /// What this process knows of changes on the subscription's channels after `since`.
    pub fn news_since(&self, since: &StreamToken) -> News {
        self.hub.news(self.keys.iter(), since)
    }

    /// Records that every change after `pos` on the subscription's live channels will be
    /// seen here. Call with positions read from PostgreSQL after [`Subscription::add`].
    pub fn baseline(&self, pos: &StreamToken) {
        self.hub.baseline(self.keys.iter(), pos);
    }

    /// Waits until a wake-up arrives on any channel, or the bus's health changes (which also
    /// calls for a fresh look at PostgreSQL). Wake-ups that arrived since the last call
    /// return at once.
    pub async fn wait(&self) {
        self.waiter.wait().await;
    }

    /// Changes of `streams` on room channels no longer wake this subscription (they are
    /// still recorded, and show in [`Subscription::news_since`]); replaces the previous set.
    /// Events always wake.
    pub fn ignore_in_rooms(&self, streams: &[Stream]) {
        let streams: Vec<Stream> = streams.iter().copied().filter(|s| *s != Stream::Events).collect();
        self.waiter.set_deaf(&streams);
    }

    /// Forgets the wake-ups that arrived while nobody waited: a subscription kept between two
    /// long-polls reads the news afresh, and a stale wake-up would only look like a new one.
    pub fn clear_wakeups(&self) {
        self.waiter.clear();
    }

    /// The highest committed position announced to this subscription so far, per stream.
    pub fn announced(&self) -> StreamToken {
        self.waiter.announced()
    }

    pub fn channel_count(&self) -> usize {
        self.keys.len()
    }
}

/// The wire form of a wake-up: the stream's tag and the position, e.g. `e42`. A bare number
/// is an events position.
pub(crate) fn encode(stream: Stream, pos: StreamPos) -> String {
    format!("{}{pos}", stream.tag())
}

pub(crate) fn decode(payload: &str) -> Option<(Stream, StreamPos)> {
    let mut chars = payload.chars();
    match chars.next()? {
        c if c.is_ascii_digit() => Some((Stream::Events, payload.parse().ok()?)),
        tag => Some((Stream::from_tag(tag)?, chars.as_str().parse().ok()?)),
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(self.keys.iter(), &self.waiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        for s in Stream::ALL {
            assert_eq!(decode(&encode(s, 17)), Some((s, 17)));
        }
        assert_eq!(decode("42"), Some((Stream::Events, 42)));
        assert_eq!(decode("z1"), None);
        assert_eq!(decode("e"), None);
    }
}
