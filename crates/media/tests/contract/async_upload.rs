//! Asynchronous uploads: `create` reserves a URI, an upload naming it fills it once, only
//! for its creator and before it expires; downloads wait for it up to their timeout.

use std::time::Duration;

use trellis_core::ErrorCode;
use trellis_proto::media::DownloadRequest;

use crate::support::{Fixture, MB, SERVER, Via, expect_err};

const ALICE: &str = "@alice:media.test";
const BOB: &str = "@bob:media.test";

fn pending_download(media_id: &str, timeout_ms: u64) -> DownloadRequest {
    DownloadRequest {
        server_name: SERVER.into(),
        media_id: media_id.into(),
        authenticated: true,
        timeout_ms: Some(timeout_ms),
        range: None,
    }
}

async fn create_then_upload(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let id = fx.create(ALICE).await.unwrap();
    assert_ne!(id, fx.create(ALICE).await.unwrap(), "each reservation is its own ID");
    expect_err(fx.fetch(pending_download(&id, 0)).await, ErrorCode::NotYetUploaded, 504);

    expect_err(fx.put(BOB, &id, b"not yours").await, ErrorCode::Forbidden, 403);
    fx.put(ALICE, &id, b"late content").await.unwrap();
    let (meta, chunks) = fx.download(SERVER, &id).await.unwrap();
    assert_eq!(chunks.concat(), b"late content");
    assert_eq!((meta.content_type.as_str(), meta.filename.as_deref()), ("text/plain", Some("late.txt")));

    expect_err(fx.put(ALICE, &id, b"again").await, ErrorCode::CannotOverwriteMedia, 409);
    expect_err(fx.put(ALICE, "neverCreated0123456789", b"x").await, ErrorCode::NotFound, 404);
    assert_eq!(fx.count("SELECT count(*) FROM media_pending").await, 1, "the other reservation is still open");
    assert_eq!(fx.rows().await, 1);
}

async fn download_waits_for_the_content(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let id = fx.create(ALICE).await.unwrap();
    let waiting = fx.fetch(pending_download(&id, 10_000));
    let uploading = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        fx.put(ALICE, &id, b"worth the wait").await.unwrap();
    };
    let started = std::time::Instant::now();
    let (downloaded, ()) = tokio::join!(waiting, uploading);
    let (_, chunks) = downloaded.unwrap();
    assert_eq!(chunks.concat(), b"worth the wait");
    assert!(started.elapsed() < Duration::from_secs(5), "woken by the upload, not by the timeout");
}

async fn download_gives_up_after_its_timeout(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let id = fx.create(ALICE).await.unwrap();
    let started = std::time::Instant::now();
    expect_err(fx.fetch(pending_download(&id, 400)).await, ErrorCode::NotYetUploaded, 504);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(350) && waited < Duration::from_secs(5), "waited {waited:?}");
}

async fn unused_ids_expire(via: Via) {
    let fx = Fixture::with(via, MB, |s| s.unused_expiry = Duration::from_millis(50)).await;
    let id = fx.create(ALICE).await.unwrap();
    // Past the reservation's expiry (50 ms): the time passing is the test.
    tokio::time::sleep(Duration::from_millis(100)).await;
    expect_err(fx.put(ALICE, &id, b"too late").await, ErrorCode::NotFound, 404);
    expect_err(fx.fetch(pending_download(&id, 1000)).await, ErrorCode::NotFound, 404);
    assert_eq!(fx.rows().await, 0);
}

async fn pending_uploads_are_limited(via: Via) {
    let fx = Fixture::with(via, MB, |s| s.max_pending_uploads = 2).await;
    let first = fx.create(ALICE).await.unwrap();
    fx.create(ALICE).await.unwrap();
    expect_err(fx.create(ALICE).await, ErrorCode::LimitExceeded, 429);
    fx.create(BOB).await.expect("a limit per user");
    // Filling a reservation frees its place.
    fx.put(ALICE, &first, b"done").await.unwrap();
    fx.create(ALICE).await.unwrap();
}

trellis_testkit::contract!(
    setup = trellis_testkit::contract::bare;
    create_then_upload,
    download_waits_for_the_content,
    download_gives_up_after_its_timeout,
    unused_ids_expire,
    pending_uploads_are_limited,
);
