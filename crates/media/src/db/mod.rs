//! The media service's tables (written by no one else): `media`, `media_pending`,
//! `media_usage`, `media_thumbnails` and `media_url_previews`.

pub(crate) mod admin;
pub(crate) mod blob_lock;
pub(crate) mod media;
pub(crate) mod pending;
pub(crate) mod previews;
pub(crate) mod thumbnails;

use deadpool_postgres::tokio_postgres::error::SqlState;

/// Whether a database error is a unique-key violation (someone else inserted first).
pub(crate) fn is_unique_violation(e: &deadpool_postgres::tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}
