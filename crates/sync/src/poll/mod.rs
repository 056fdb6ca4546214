//! `/sync` itself: the long-poll that waits for news, the exact path that computes a response
//! from PostgreSQL, the fast path that answers a woken long-poll from this worker's memory,
//! the caches and shared windows that make that possible, filters, timelines, lazy-loaded
//! members, the response body — and the pre-r0 API (`legacy/`), which is the same long-poll in
//! its old formats.

pub(crate) mod caches;
pub(crate) mod compute;
pub(crate) mod fast;
pub(crate) mod fields;
pub(crate) mod filters;
pub(crate) mod ignored;
pub(crate) mod lazy;
pub(crate) mod lazy_batch;
pub(crate) mod legacy;
pub(crate) mod longpoll;
pub(crate) mod parked;
pub(crate) mod positions;
pub(crate) mod response;
pub(crate) mod room_members;
pub(crate) mod room_slots;
pub(crate) mod rooms;
pub(crate) mod sections;
pub(crate) mod steps;
pub(crate) mod tail_cache;
pub(crate) mod timeline;
pub(crate) mod windows;
