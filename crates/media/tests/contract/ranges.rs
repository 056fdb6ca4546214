//! Byte ranges of a download.

use trellis_proto::media::{ByteRange, ContentRange, DownloadRequest};

use crate::support::{Fixture, MB, SERVER, Via, chunked, meta, pseudo_random};

fn ranged(media_id: &str, start: Option<u64>, end: Option<u64>, if_range: Option<&str>) -> DownloadRequest {
    DownloadRequest {
        server_name: SERVER.into(),
        media_id: media_id.into(),
        authenticated: true,
        timeout_ms: None,
        range: Some(ByteRange { start, end, if_range: if_range.map(Into::into) }),
    }
}

async fn ranges_of_a_file(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let data = pseudo_random(200_000, 11);
    let id = fx.upload(meta("video/mp4", None, None), chunked(&data, &[65_536])).await.unwrap();
    let (whole, _) = fx.download(SERVER, &id).await.unwrap();
    assert_eq!(whole.etag.len(), 64, "the content hash is the ETag");
    assert_eq!(whole.range, None);

    for (start, end, want) in [
        (Some(0), Some(0), 0..=0usize),
        (Some(10), Some(20), 10..=20),
        (Some(70_000), Some(140_000), 70_000..=140_000),
        (Some(199_990), None, 199_990..=199_999),
        (None, Some(100), 199_900..=199_999),
        (Some(5), Some(999_999), 5..=199_999),
    ] {
        let (m, chunks) = fx.fetch(ranged(&id, start, end, None)).await.unwrap();
        assert_eq!(m.length, 200_000, "length is the whole content's");
        assert_eq!(m.range, Some(ContentRange { start: *want.start() as u64, end: *want.end() as u64 }));
        assert!(chunks.concat() == data[want.clone()], "bytes of {want:?}");
    }
    let (m, chunks) = fx.fetch(ranged(&id, Some(200_000), None, None)).await.unwrap();
    assert!(m.range_unsatisfiable && chunks.concat().is_empty());
    // A stale If-Range gets the whole file; a matching one the range.
    let (m, chunks) = fx.fetch(ranged(&id, Some(1), Some(2), Some("\"stale\""))).await.unwrap();
    assert_eq!((m.range, chunks.concat().len()), (None, 200_000));
    let (m, _) = fx.fetch(ranged(&id, Some(1), Some(2), Some(&format!("\"{}\"", whole.etag)))).await.unwrap();
    assert_eq!(m.range, Some(ContentRange { start: 1, end: 2 }));
}

trellis_testkit::contract!(setup = trellis_testkit::contract::bare; ranges_of_a_file);
