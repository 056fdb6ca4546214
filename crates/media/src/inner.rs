//! [`Inner`]: the state every media operation shares. Each operation's module adds its
//! methods to it (`upload`, `download`, `thumbnail`, `admin`); the service in `service.rs`
//! owns one and hands each call to them.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{Notify, Semaphore};

use crate::{locks::KeyedLocks, settings::MediaSettings, store::BlobStore};

/// What every operation shares.
pub(crate) struct Inner {
    pub pool: Pool,
    pub settings: MediaSettings,
    pub store: Arc<dyn BlobStore>,
    /// Woken whenever an asynchronous upload completes, for downloads waiting on it.
    pub uploaded: Notify,
    pub thumb_locks: KeyedLocks,
    pub image_jobs: Semaphore,
}
