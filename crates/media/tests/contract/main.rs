//! The media service contract, written once against `Arc<dyn MediaService>` and run twice
//! (`trellis_testkit::contract!`): against the local implementation and through the gRPC
//! client/server pair. Each scenario takes the [`support::Via`] and builds its own fixture.

mod access;
mod admin;
mod async_upload;
mod basics;
mod preview;
mod ranges;
mod s3;
mod support;
mod thumbnails;
