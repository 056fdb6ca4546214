//! The S3 backend against a real S3-compatible server (moto, started per test): uploads
//! (including multipart-sized ones), shared content, ranges, thumbnails and asynchronous
//! uploads all work the same on a bucket.

use sha2::{Digest, Sha256};
use trellis_proto::media::{ByteRange, DownloadRequest};

use crate::support::{Fixture, MB, SERVER, Via, chunked, meta, pseudo_random};

async fn s3_round_trip(via: Via) {
    let Some(fx) = Fixture::s3(via, 32 * MB).await else { return };
    // Bigger than one multipart part (5 MiB).
    let big = pseudo_random(12 * MB as usize + 17, 21);
    let a = fx.upload(meta("application/x-big", Some("big.bin"), None), chunked(&big, &[1 << 20])).await.unwrap();
    let b = fx.upload(meta("application/x-big", None, None), chunked(&big, &[300_000])).await.unwrap();
    let small = fx.upload(meta("text/plain", None, None), chunked(b"small", &[5])).await.unwrap();
    let sha = hex::encode(Sha256::digest(&big));
    let mut keys = fx.bucket_keys().await;
    keys.sort();
    let mut want = vec![format!("media/{}/{}/{sha}", &sha[..2], &sha[2..4]), {
        let s = hex::encode(Sha256::digest(b"small"));
        format!("media/{}/{}/{s}", &s[..2], &s[2..4])
    }];
    want.sort();
    assert_eq!(keys, want, "identical content stored once, under the prefix");
    assert!(fx.spool_files().is_empty());
    assert!(fx.blob_files().is_empty(), "nothing stored on local disk");

    for id in [&a, &b] {
        let (m, chunks) = fx.download(SERVER, id).await.unwrap();
        assert_eq!(m.length, big.len() as u64);
        assert!(chunks.iter().all(|c| c.len() <= 64 * 1024), "streamed in small chunks");
        assert!(chunks.concat() == big);
    }
    let req = DownloadRequest {
        server_name: SERVER.into(),
        media_id: a.clone(),
        authenticated: true,
        timeout_ms: None,
        range: Some(ByteRange { start: Some(6 * MB - 10), end: Some(6 * MB + 9), if_range: None }),
    };
    let (_, chunks) = fx.fetch(req).await.unwrap();
    assert!(chunks.concat() == big[(6 * MB - 10) as usize..(6 * MB + 10) as usize]);
    assert_eq!(fx.download(SERVER, &small).await.unwrap().1.concat(), b"small");
}

async fn s3_thumbnails_and_async_upload(via: Via) {
    let Some(fx) = Fixture::s3(via, 4 * MB).await else { return };
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::new_rgb8(400, 300).write_to(&mut png, image::ImageFormat::Png).unwrap();
    let id = fx.upload(meta("image/png", None, None), chunked(png.get_ref(), &[10_000])).await.unwrap();
    fx.media.thumbnails_settled(&id).await;
    assert_eq!(fx.media.thumbnail_count(&id).await.unwrap(), 3);
    let (m, data) = fx.thumbnail(&id, 96, 96, "crop", false).await.unwrap();
    assert_eq!(m.content_type, "image/png");
    assert_eq!(image::load_from_memory(&data).unwrap().width(), 96);

    let reserved = fx.create("@alice:media.test").await.unwrap();
    fx.put("@alice:media.test", &reserved, b"later").await.unwrap();
    assert_eq!(fx.download(SERVER, &reserved).await.unwrap().1.concat(), b"later");
}

trellis_testkit::contract!(setup = trellis_testkit::contract::bare; s3_round_trip, s3_thumbnails_and_async_upload);
