//! Downloads: finding a file (waiting a while for a reserved one whose content is on its
//! way), the legacy endpoints' freeze, and byte ranges.

use std::{ops::RangeInclusive, time::Duration};

use futures_util::StreamExt;
use tokio::time::Instant;
use trellis_core::{Error, ErrorCode, Result, time::now_ms};
use trellis_proto::media::{ByteRange, ContentRange, Download, DownloadMeta, DownloadRequest};

use crate::{db, db::media::StoredMedia, ids::is_valid_media_id, inner::Inner};

/// How long a download waits for a pending upload when the client does not say.
const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// The most a client may ask to wait.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Between looks at the database while waiting (another replica may store the content).
const POLL_EVERY: Duration = Duration::from_millis(250);

/// A range resolved against the content's length.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ranged {
    Whole,
    Part(RangeInclusive<u64>),
    Unsatisfiable,
}

/// Resolves a `Range: bytes=` request against `len` bytes of content whose ETag is `etag`
/// (RFC 9110 §14): a range that does not parse, or whose `If-Range` does not match, is
/// ignored; one that starts past the end cannot be satisfied.
pub(crate) fn resolve_range(range: Option<&ByteRange>, len: u64, etag: &str) -> Ranged {
    let Some(r) = range else { return Ranged::Whole };
    if let Some(v) = &r.if_range
        && v.trim().trim_matches('"') != etag
    {
        return Ranged::Whole;
    }
    match (r.start, r.end) {
        (Some(start), end) => {
            if end.is_some_and(|end| end < start) {
                Ranged::Whole
            } else if start >= len {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part(start..=end.unwrap_or(u64::MAX).min(len - 1))
            }
        }
        (None, Some(suffix)) if suffix > 0 && len > 0 => Ranged::Part(len - suffix.min(len)..=len - 1),
        (None, Some(_)) => Ranged::Unsatisfiable,
        (None, None) => Ranged::Whole,
    }
}

impl Inner {
    #[tracing::instrument(skip_all, fields(server_name = %req.server_name, media_id = %req.media_id))]
    pub(crate) async fn download(&self, req: DownloadRequest) -> Result<Download> {
        let media = self.find(&req.server_name, &req.media_id, req.authenticated, req.timeout_ms).await?;
        let ranged = resolve_range(req.range.as_ref(), media.size, &media.sha256);
        let mut meta = DownloadMeta {
            content_type: media.content_type,
            filename: media.upload_name,
            length: media.size,
            range: None,
            range_unsatisfiable: false,
            etag: media.sha256.clone(),
        };
        let range = match ranged {
            Ranged::Whole => None,
            Ranged::Part(r) => {
                meta.range = Some(ContentRange { start: *r.start(), end: *r.end() });
                Some(r)
            }
            Ranged::Unsatisfiable => {
                meta.range_unsatisfiable = true;
                return Ok(Download { meta, body: Box::pin(futures_util::stream::empty()) });
            }
        };
        let Some(body) = self.store.open(&media.sha256, range).await? else {
            tracing::error!(sha256 = %media.sha256, "media blob missing from the store");
            return Err(Error::internal(format!("blob {} missing", media.sha256)));
        };
        let body = body.inspect(|chunk| {
            if let Ok(data) = chunk {
                metrics::counter!("trellis_media_downloaded_bytes_total").increment(data.len() as u64);
            }
        });
        Ok(Download { meta, body: Box::pin(body) })
    }

    /// The `media` row of `server_name/media_id`, as the caller may see it. A reserved ID
    /// whose content has not arrived is waited for, up to `timeout_ms`.
    pub(crate) async fn find(
        &self,
        server_name: &str,
        media_id: &str,
        authenticated: bool,
        timeout_ms: Option<u64>,
    ) -> Result<StoredMedia> {
        if server_name != self.settings.server_name || !is_valid_media_id(media_id) {
            return Err(Error::not_found("Unknown media ID"));
        }
        let wait = timeout_ms.map_or(DEFAULT_WAIT, Duration::from_millis).min(MAX_WAIT);
        let deadline = Instant::now() + wait;
        let media = loop {
            if let Some(media) = db::media::get(&self.pool, media_id).await? {
                break media;
            }
            match db::pending::get(&self.pool, media_id).await? {
                Some(p) if p.expires_ts > now_ms() => {}
                _ => return Err(Error::not_found("Unknown media ID")),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new(ErrorCode::NotYetUploaded, "Content has not yet been uploaded"));
            }
            let _ = tokio::time::timeout(left.min(POLL_EVERY), self.uploaded.notified()).await;
        };
        if media.quarantined {
            return Err(Error::not_found("Unknown media ID"));
        }
        // The spec's freeze of the deprecated endpoints answers as if the file did not exist.
        if !authenticated && !self.settings.legacy.allows(media.created_ts) {
            return Err(Error::not_found("Unknown media ID (this media needs an authenticated download)"));
        }
        Ok(media)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: Option<u64>, end: Option<u64>) -> ByteRange {
        ByteRange { start, end, if_range: None }
    }

    #[test]
    fn ranges() {
        use Ranged::*;
        assert_eq!(resolve_range(None, 10, "e"), Whole);
        assert_eq!(resolve_range(Some(&r(Some(0), Some(0))), 10, "e"), Part(0..=0));
        assert_eq!(resolve_range(Some(&r(Some(2), Some(5))), 10, "e"), Part(2..=5));
        assert_eq!(resolve_range(Some(&r(Some(2), Some(500))), 10, "e"), Part(2..=9));
        assert_eq!(resolve_range(Some(&r(Some(7), None)), 10, "e"), Part(7..=9));
        assert_eq!(resolve_range(Some(&r(None, Some(3))), 10, "e"), Part(7..=9));
        assert_eq!(resolve_range(Some(&r(None, Some(30))), 10, "e"), Part(0..=9));
        assert_eq!(resolve_range(Some(&r(Some(10), None)), 10, "e"), Unsatisfiable);
        assert_eq!(resolve_range(Some(&r(Some(10), Some(20))), 10, "e"), Unsatisfiable);
        assert_eq!(resolve_range(Some(&r(None, Some(0))), 10, "e"), Unsatisfiable);
        assert_eq!(resolve_range(Some(&r(None, Some(5))), 0, "e"), Unsatisfiable);
        assert_eq!(resolve_range(Some(&r(Some(0), None)), 0, "e"), Unsatisfiable);
        assert_eq!(resolve_range(Some(&r(Some(5), Some(2))), 10, "e"), Whole, "invalid ranges are ignored");
        let stale = ByteRange { start: Some(1), end: None, if_range: Some("\"old\"".into()) };
        assert_eq!(resolve_range(Some(&stale), 10, "e"), Whole);
        let fresh = ByteRange { start: Some(1), end: None, if_range: Some("\"e\"".into()) };
        assert_eq!(resolve_range(Some(&fresh), 10, "e"), Part(1..=9));
    }
}
