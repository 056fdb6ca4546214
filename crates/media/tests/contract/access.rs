//! Who may store and fetch what: per-user quotas, the legacy endpoints' freeze, the
//! advertised configuration.

use trellis_core::{ErrorCode, time::now_ms};
use trellis_media::LegacyAccess;
use trellis_proto::media::{ConfigRequest, DownloadRequest};

use crate::support::{Fixture, MB, SERVER, Via, chunked, expect_err, meta, pseudo_random};

async fn quota_per_user(via: Via) {
    let fx = Fixture::with(via, MB, |s| s.max_user_bytes = Some(1000)).await;
    let data = pseudo_random(1000, 9);
    fx.upload(meta("a/b", None, None), chunked(&data[..600], &[100])).await.unwrap();
    // Refused from the declaration, and from the body when there is none.
    expect_err(fx.upload(meta("a/b", None, Some(401)), chunked(&data[..401], &[100])).await, ErrorCode::Forbidden, 403);
    expect_err(fx.upload(meta("a/b", None, None), chunked(&data[..401], &[100])).await, ErrorCode::Forbidden, 403);
    // Exactly up to the quota is fine, even for content stored already.
    fx.upload(meta("a/b", None, None), chunked(&data[..400], &[100])).await.unwrap();
    expect_err(fx.upload(meta("a/b", None, None), chunked(&data[..1], &[1])).await, ErrorCode::Forbidden, 403);
    let mut bob = meta("a/b", None, None);
    bob.user_id = "@bob:media.test".into();
    fx.upload(bob, chunked(&data[..900], &[100])).await.expect("quotas are per user");
    assert_eq!(fx.rows().await, 3);
    assert_eq!(fx.count("SELECT bytes FROM media_usage WHERE user_id = '@alice:media.test'").await, 1000);
    assert!(fx.spool_files().is_empty(), "refused uploads left spool files");
}

fn legacy(media_id: &str) -> DownloadRequest {
    DownloadRequest {
        server_name: SERVER.into(),
        media_id: media_id.into(),
        authenticated: false,
        ..Default::default()
    }
}

async fn legacy_endpoints_are_frozen(via: Via) {
    // The default: nothing through the unauthenticated endpoints.
    let fx = Fixture::new(via, MB).await;
    assert_eq!(fx.media.settings().legacy, LegacyAccess::Nothing);
    let id = fx.upload(meta("image/png", None, None), chunked(b"png?", &[4])).await.unwrap();
    expect_err(fx.fetch(legacy(&id)).await, ErrorCode::NotFound, 404);
    assert!(fx.download(SERVER, &id).await.is_ok());

    // Frozen at a date: older media still served, newer not.
    let later = Fixture::with(via, MB, |s| s.legacy = LegacyAccess::Before(now_ms() + 3_600_000)).await;
    let id = later.upload(meta("text/plain", None, None), chunked(b"old", &[3])).await.unwrap();
    assert_eq!(later.fetch(legacy(&id)).await.unwrap().1.concat(), b"old");
    let past = Fixture::with(via, MB, |s| s.legacy = LegacyAccess::Before(now_ms() - 1)).await;
    let id = past.upload(meta("text/plain", None, None), chunked(b"new", &[3])).await.unwrap();
    expect_err(past.fetch(legacy(&id)).await, ErrorCode::NotFound, 404);

    // Not enforced: everything.
    let open = Fixture::with(via, MB, |s| s.legacy = LegacyAccess::All).await;
    let id = open.upload(meta("text/plain", None, None), chunked(b"any", &[3])).await.unwrap();
    assert_eq!(open.fetch(legacy(&id)).await.unwrap().1.concat(), b"any");
}

async fn config_advertises_the_limit(via: Via) {
    let fx = Fixture::new(via, 123_456).await;
    assert_eq!(fx.svc().config(ConfigRequest {}).await.unwrap().upload_size, Some(123_456));
}

trellis_testkit::contract!(setup = trellis_testkit::contract::bare; quota_per_user, legacy_endpoints_are_frozen, config_advertises_the_limit);
