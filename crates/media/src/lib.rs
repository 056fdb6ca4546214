//! The media repository: uploads stream to a temp file while being hashed, land in a
//! content-addressed blob store (identical uploads share one blob; local disk or an
//! S3-compatible bucket) and get a row under an unguessable media ID; downloads stream back
//! in small chunks, whole or by range. Also: asynchronous uploads (`/create`), per-user
//! quotas, thumbnails, the legacy endpoints' freeze and URL previews.
//!
//! The service is [`Media`]; it implements [`trellis_proto::media::MediaService`], so the
//! same value serves monolith mode directly and split mode through `MediaGrpcServer`.

mod admin;
mod db;
mod download;
mod ids;
mod inner;
mod locks;
pub mod preview;
mod service;
mod settings;
mod spool;
pub mod store;
mod thumbnail;
mod upload;

pub use crate::{
    preview::IpFilter,
    service::Media,
    settings::{LegacyAccess, MediaSettings, PreviewSettings, S3Settings, StoreSettings},
    store::{BlobStore, LocalBlobStore, ObjectBlobStore},
};
