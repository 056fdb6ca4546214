//! The parts of a `/sync` (or sliding sync) response the load's receivers read: each room's
//! timeline, its events parsed as the caller's `E`.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(bound = "E: Deserialize<'de>")]
pub struct SyncBody<E> {
    pub next_batch: String,
    #[serde(default = "Rooms::empty")]
    pub rooms: Rooms<E>,
}

#[derive(Deserialize)]
#[serde(bound = "E: Deserialize<'de>")]
pub struct Rooms<E> {
    #[serde(default = "HashMap::new")]
    pub join: HashMap<String, Joined<E>>,
}

impl<E> Rooms<E> {
    fn empty() -> Rooms<E> {
        Rooms { join: HashMap::new() }
    }
}

#[derive(Deserialize)]
#[serde(bound = "E: Deserialize<'de>")]
pub struct Joined<E> {
    #[serde(default = "Timeline::empty")]
    pub timeline: Timeline<E>,
}

#[derive(Deserialize)]
#[serde(bound = "E: Deserialize<'de>")]
pub struct Timeline<E> {
    #[serde(default = "Vec::new")]
    pub events: Vec<E>,
    #[serde(default)]
    pub limited: bool,
}

impl<E> Timeline<E> {
    fn empty() -> Timeline<E> {
        Timeline { events: Vec::new(), limited: false }
    }
}

/// The parts of a Simplified Sliding Sync response a receiver reads: the position and each
/// room's timeline.
#[derive(Deserialize)]
#[serde(bound = "E: Deserialize<'de>")]
pub struct SlidingBody<E> {
    pub pos: String,
    #[serde(default = "HashMap::new")]
    pub rooms: HashMap<String, SlidingRoom<E>>,
}

#[derive(Deserialize)]
#[serde(bound = "E: Deserialize<'de>")]
pub struct SlidingRoom<E> {
    #[serde(default = "Vec::new")]
    pub timeline: Vec<E>,
    #[serde(default)]
    pub limited: bool,
}
