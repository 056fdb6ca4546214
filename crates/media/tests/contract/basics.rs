//! Uploads and downloads: bytes, types and names kept, identical content stored once, the
//! size limit, broken bodies, unknown and malicious IDs.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use sha2::{Digest, Sha256};
use trellis_core::{Error, ErrorCode};
use trellis_proto::media::ByteStream;

use crate::support::{Fixture, MB, SERVER, Via, chunked, expect_err, meta, pseudo_random};

// ---- scenarios ----------------------------------------------------------------------

async fn round_trip_keeps_bytes_type_and_name(via: Via) {
    let fx = Fixture::new(via, 4 * MB).await;
    let data = pseudo_random(1_000_003, 42);
    let body = chunked(&data, &[1, 4093, 65_536, 100_000, 17, 250_000, 7]);
    let content_type = "image/x-Test; charset=\"odd\"";
    let filename = "holiday photo ü.bin";
    let id = fx.upload(meta(content_type, Some(filename), Some(data.len() as u64)), body).await.unwrap();

    let (m, chunks) = fx.download(SERVER, &id).await.unwrap();
    assert_eq!(m.content_type, content_type);
    assert_eq!(m.filename.as_deref(), Some(filename));
    assert_eq!(m.length, data.len() as u64);
    assert!(chunks.len() >= 16, "streamed in {} chunks", chunks.len());
    assert!(chunks.iter().all(|c| c.len() <= 64 * 1024), "a chunk exceeds 64 KiB");
    assert!(chunks.concat() == data, "downloaded bytes differ");

    assert_eq!(fx.blob_files(), vec![fx.blob_path(&data)]);
    assert_eq!(std::fs::read(fx.blob_path(&data)).unwrap(), data);
    assert!(fx.spool_files().is_empty());
    assert_eq!(fx.rows().await, 1);
}

async fn identical_uploads_share_one_blob(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let data = pseudo_random(100_000, 7);
    let a = fx.upload(meta("text/plain", Some("a.txt"), None), chunked(&data, &[30_000])).await.unwrap();
    let b = fx.upload(meta("application/x-b", None, None), chunked(&data, &[999])).await.unwrap();
    assert_ne!(a, b, "each upload gets its own media ID");
    assert_eq!(fx.blob_files(), vec![fx.blob_path(&data)], "identical content stored once");
    assert!(fx.spool_files().is_empty());

    let (ma, ca) = fx.download(SERVER, &a).await.unwrap();
    let (mb, cb) = fx.download(SERVER, &b).await.unwrap();
    assert_eq!((ma.content_type.as_str(), ma.filename.as_deref()), ("text/plain", Some("a.txt")));
    assert_eq!((mb.content_type.as_str(), mb.filename.as_deref()), ("application/x-b", None));
    assert!(ca.concat() == data && cb.concat() == data);

    let other = pseudo_random(100_000, 8);
    fx.upload(meta("text/plain", None, None), chunked(&other, &[50_000])).await.unwrap();
    assert_eq!(fx.blob_files().len(), 2, "different content gets its own blob");
    assert_eq!(fx.rows().await, 3);
}

async fn empty_body_and_default_content_type(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let id = fx.upload(meta("", None, Some(0)), Box::pin(stream::empty())).await.unwrap();
    let (m, chunks) = fx.download(SERVER, &id).await.unwrap();
    assert_eq!(m.content_type, "application/octet-stream");
    assert_eq!(m.filename, None);
    assert_eq!(m.length, 0);
    assert_eq!(chunks.concat(), Vec::<u8>::new());
    assert_eq!(fx.blob_files(), vec![fx.blob_path(b"")]);

    // Empty chunks are no content either.
    let body: ByteStream = Box::pin(stream::iter([Ok(Bytes::new()), Ok(Bytes::new())]));
    let id2 = fx.upload(meta("text/plain", Some("empty.txt"), None), body).await.unwrap();
    let (m2, _) = fx.download(SERVER, &id2).await.unwrap();
    assert_eq!((m2.content_type.as_str(), m2.length), ("text/plain", 0));
    assert_eq!(fx.blob_files().len(), 1);
}

async fn too_large_by_declared_length(via: Via) {
    let fx = Fixture::new(via, 1000).await;
    let data = pseudo_random(1001, 1);
    expect_err(fx.upload(meta("a/b", None, Some(1001)), chunked(&data, &[100])).await, ErrorCode::TooLarge, 413);
    // Refused on the declaration alone, even when the body would be small.
    expect_err(fx.upload(meta("a/b", None, Some(u64::MAX)), chunked(b"x", &[1])).await, ErrorCode::TooLarge, 413);
    fx.assert_nothing_stored().await;
}

async fn too_large_by_stream(via: Via) {
    let fx = Fixture::new(via, 100_000).await;
    let data = pseudo_random(300_000, 2);
    expect_err(fx.upload(meta("a/b", None, None), chunked(&data, &[10_000])).await, ErrorCode::TooLarge, 413);
    fx.assert_nothing_stored().await;
}

async fn limit_is_inclusive(via: Via) {
    let fx = Fixture::new(via, 5000).await;
    let data = pseudo_random(5001, 3);
    let id = fx.upload(meta("a/b", None, None), chunked(&data[..5000], &[999])).await.unwrap();
    expect_err(fx.upload(meta("a/b", None, None), chunked(&data, &[999])).await, ErrorCode::TooLarge, 413);
    assert_eq!(fx.download(SERVER, &id).await.unwrap().0.length, 5000);
    assert_eq!(fx.blob_files(), vec![fx.blob_path(&data[..5000])]);
    assert!(fx.spool_files().is_empty(), "the refused upload left a spool file");
    assert_eq!(fx.rows().await, 1);
}

async fn body_error_stores_nothing(via: Via) {
    let fx = Fixture::new(via, 4 * MB).await;
    let data = pseudo_random(150_000, 4);
    let good = chunked(&data, &[50_000]);
    let broken = stream::once(async {
        // Give the service time to start spooling before the body breaks.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Err(Error::new(ErrorCode::BadState, "client went away"))
    });
    let err = fx.upload(meta("a/b", None, None), Box::pin(good.chain(broken))).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadState, "{err}");
    fx.assert_nothing_stored().await;
}

async fn declared_length_must_match(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let data = pseudo_random(10, 5);
    expect_err(fx.upload(meta("a/b", None, Some(20)), chunked(&data, &[3])).await, ErrorCode::InvalidParam, 400);
    expect_err(fx.upload(meta("a/b", None, Some(5)), chunked(&data, &[3])).await, ErrorCode::InvalidParam, 400);
    fx.assert_nothing_stored().await;
}

async fn unknown_media_is_not_found(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let data = b"hello";
    let id = fx.upload(meta("text/plain", None, None), chunked(data, &[5])).await.unwrap();
    // A different last character (never the one it had) makes an unknown ID.
    let last = if id.ends_with('x') { 'y' } else { 'x' };
    let other = format!("{}{last}", &id[..id.len() - 1]);
    expect_err(fx.download(SERVER, &other).await, ErrorCode::NotFound, 404);
    expect_err(fx.download(SERVER, "neverUploaded123").await, ErrorCode::NotFound, 404);
    // Knowing the content hash is no way in either.
    let sha = hex::encode(Sha256::digest(data));
    expect_err(fx.download(SERVER, &sha).await, ErrorCode::NotFound, 404);
    assert!(fx.download(SERVER, &id).await.is_ok());
}

async fn foreign_server_is_not_found(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let id = fx.upload(meta("text/plain", None, None), chunked(b"hi", &[2])).await.unwrap();
    for server in ["other.example", "media.test:8448", "", "MEDIA.TEST"] {
        expect_err(fx.download(server, &id).await, ErrorCode::NotFound, 404);
    }
}

async fn traversal_ids_are_not_found(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let id = fx.upload(meta("text/plain", None, None), chunked(b"secret", &[6])).await.unwrap();
    let sha = hex::encode(Sha256::digest(b"secret"));
    let shard = format!("{}/{}/{sha}", &sha[..2], &sha[2..4]);
    let sneaky = [
        "../x",
        "a/b",
        "..",
        "",
        "tmp",
        "%2e%2e%2fx",
        "a\\b",
        &format!("{id}/../{id}"),
        &format!("../{id}"),
        &shard,
        &format!("../store/{shard}"),
    ];
    for media_id in sneaky {
        expect_err(fx.download(SERVER, media_id).await, ErrorCode::NotFound, 404);
    }
}

trellis_testkit::contract!(
    setup = trellis_testkit::contract::bare;
    round_trip_keeps_bytes_type_and_name,
    identical_uploads_share_one_blob,
    empty_body_and_default_content_type,
    too_large_by_declared_length,
    too_large_by_stream,
    limit_is_inclusive,
    body_error_stores_nothing,
    declared_length_must_match,
    unknown_media_is_not_found,
    foreign_server_is_not_found,
    traversal_ids_are_not_found,
);
