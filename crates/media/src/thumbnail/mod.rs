//! Thumbnails: which size answers a request, the cache (thumbnails are blobs with a row in
//! `media_thumbnails`), generation on the blocking pool, and the common sizes made right
//! after an upload. <https://spec.matrix.org/v1.16/client-server-api/#thumbnails>
//!
//! A request is served from the smallest common size of its method that is at least as big
//! as asked; past the largest, from a size rounded up in steps of 25 %, so a client cannot
//! make the server store a thumbnail for every pixel count. An image no bigger than the
//! request is served as it is, as the spec asks.

mod render;

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use futures_util::stream;
use trellis_core::{Error, Result, time::now_ms};
use trellis_proto::media::{Download, DownloadMeta, ThumbnailRequest};

pub(crate) use self::render::probe;
use self::render::{Rendered, cannot_thumbnail, too_big_to_thumbnail};
use crate::{
    db::{
        self,
        media::StoredMedia,
        thumbnails::{StoredThumb, ThumbKey},
    },
    inner::Inner,
    store,
};

/// The sizes the spec recommends, made for every image at upload.
pub(crate) const COMMON: [ThumbKey; 5] = [
    ThumbKey { width: 32, height: 32, crop: true, animated: false },
    ThumbKey { width: 96, height: 96, crop: true, animated: false },
    ThumbKey { width: 320, height: 240, crop: false, animated: false },
    ThumbKey { width: 640, height: 480, crop: false, animated: false },
    ThumbKey { width: 800, height: 600, crop: false, animated: false },
];

/// Content types we thumbnail.
const THUMBNAILABLE: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// What answers a thumbnail request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// The image itself: it is no bigger than asked.
    Original,
    Thumb(ThumbKey),
}

/// Rounds `n` up to 800 × 1.25ᵏ.
fn step_up(n: u32) -> u32 {
    let mut s: u32 = 800;
    while s < n {
        s = s.saturating_add(s / 4);
    }
    s
}

/// Picks the thumbnail for a `width`×`height` request on an image of `dims`.
pub(crate) fn choose(width: u32, height: u32, crop: bool, animated: bool, dims: (u32, u32)) -> Choice {
    if dims.0 <= width && dims.1 <= height {
        return Choice::Original;
    }
    let common =
        COMMON.iter().filter(|k| k.crop == crop && k.width >= width && k.height >= height).min_by_key(|k| k.width);
    let mut key = match common {
        Some(k) => *k,
        None => ThumbKey { width: step_up(width), height: step_up(height), crop, animated: false },
    };
    // Scaling into a box the image already fits in is the image itself.
    if !crop && dims.0 <= key.width && dims.1 <= key.height {
        return Choice::Original;
    }
    key.animated = animated;
    Choice::Thumb(key)
}

/// Width and height of the image spooled at `path`, from its header, off the runtime.
pub(crate) async fn probe_file(path: PathBuf) -> Option<(u32, u32)> {
    tokio::task::spawn_blocking(move || probe(image::ImageReader::open(path).ok()?)).await.ok().flatten()
}

impl Inner {
    #[tracing::instrument(skip_all, fields(media_id = %req.media_id, req.width, req.height, method = %req.method))]
    pub(crate) async fn thumbnail(self: &Arc<Self>, req: ThumbnailRequest) -> Result<Download> {
        let crop = match req.method.as_str() {
            "" | "scale" => false,
            "crop" => true,
            other => return Err(Error::invalid_param(format!("unknown thumbnail method {other:?}"))),
        };
        if req.width == 0 || req.height == 0 {
            return Err(Error::invalid_param("width and height must be positive"));
        }
        let media = self.find(&req.server_name, &req.media_id, req.authenticated, req.timeout_ms).await?;
        let essence = media.content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let Some(dims) = media.dimensions.filter(|_| THUMBNAILABLE.contains(&essence.as_str())) else {
            return Err(cannot_thumbnail());
        };
        if u64::from(dims.0) * u64::from(dims.1) > self.settings.max_image_pixels {
            return Err(too_big_to_thumbnail());
        }
        let key = match choose(req.width, req.height, crop, req.animated, dims) {
            Choice::Original => return self.serve_original(media).await,
            Choice::Thumb(key) => key,
        };
        let thumb = match db::thumbnails::get(&self.pool, &req.media_id, key).await? {
            Some(t) => t,
            None => {
                let _guard = self.thumb_locks.lock(&req.media_id).await;
                match db::thumbnails::get(&self.pool, &req.media_id, key).await? {
                    Some(t) => t,
                    None => self.generate(&req.media_id, &media.sha256, &[key]).await?.remove(0),
                }
            }
        };
        metrics::counter!("trellis_media_thumbnails_served_total").increment(1);
        self.serve_thumb(thumb).await
    }

    /// Renders `keys` of the image `sha256` and stores them.
    async fn generate(&self, media_id: &str, sha256: &str, keys: &[ThumbKey]) -> Result<Vec<StoredThumb>> {
        let _permit = self.image_jobs.acquire().await.map_err(Error::internal)?;
        let data = store::read_all(self.store.as_ref(), sha256, self.settings.max_upload_bytes).await?;
        let max_pixels = self.settings.max_image_pixels;
        let owned = keys.to_vec();
        let rendered: Vec<Rendered> =
            tokio::task::spawn_blocking(move || render::render(&data, &owned, max_pixels)).await??;
        let mut out = Vec::with_capacity(keys.len());
        for (key, r) in keys.iter().zip(rendered) {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            db::blob_lock::share(&tx, &store::blob_name(&r.data)).await?;
            let sha256 = store::put_bytes(self.store.as_ref(), &r.data).await?;
            let thumb = StoredThumb { content_type: r.content_type.to_owned(), size: r.data.len() as u64, sha256 };
            db::thumbnails::insert(&tx, media_id, *key, &thumb, now_ms()).await?;
            tx.commit().await?;
            out.push(thumb);
        }
        metrics::counter!("trellis_media_thumbnails_generated_total").increment(keys.len() as u64);
        Ok(out)
    }

    async fn serve_thumb(&self, thumb: StoredThumb) -> Result<Download> {
        let body = self
            .store
            .open(&thumb.sha256, None)
            .await?
            .ok_or_else(|| Error::internal(format!("thumbnail blob {} missing", thumb.sha256)))?;
        let ext = thumb.content_type.rsplit('/').next().unwrap_or("png").to_owned();
        let meta = DownloadMeta {
            content_type: thumb.content_type,
            filename: Some(format!("thumbnail.{ext}")),
            length: thumb.size,
            range: None,
            range_unsatisfiable: false,
            etag: thumb.sha256,
        };
        Ok(Download { meta, body })
    }

    async fn serve_original(&self, media: StoredMedia) -> Result<Download> {
        let body = self
            .store
            .open(&media.sha256, None)
            .await?
            .unwrap_or_else(|| Box::pin(stream::once(async { Ok(Bytes::new()) })));
        let meta = DownloadMeta {
            content_type: media.content_type,
            filename: media.upload_name,
            length: media.size,
            range: None,
            range_unsatisfiable: false,
            etag: media.sha256,
        };
        Ok(Download { meta, body })
    }
}

/// Makes the common sizes of a new image in the background, decoding it once. The media's
/// thumbnail lock is taken before this returns, so a request right after the upload waits
/// for these instead of decoding the image a second time.
pub(crate) async fn pregenerate(inner: Arc<Inner>, media_id: String, sha256: String, dims: (u32, u32)) {
    if u64::from(dims.0) * u64::from(dims.1) > inner.settings.max_image_pixels {
        return;
    }
    let keys: Vec<ThumbKey> = COMMON
        .iter()
        .filter(|k| choose(k.width, k.height, k.crop, false, dims) == Choice::Thumb(**k))
        .copied()
        .collect();
    if keys.is_empty() {
        return;
    }
    let guard = inner.thumb_locks.lock(&media_id).await;
    tokio::spawn(async move {
        let _guard = guard;
        if let Err(e) = inner.generate(&media_id, &sha256, &keys).await {
            tracing::warn!(%media_id, error = %e, "thumbnails not generated");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thumb(width: u32, height: u32, crop: bool) -> Choice {
        Choice::Thumb(ThumbKey { width, height, crop, animated: false })
    }

    #[test]
    fn choosing() {
        let big = (4000, 3000);
        assert_eq!(choose(32, 32, true, false, big), thumb(32, 32, true));
        assert_eq!(choose(10, 20, true, false, big), thumb(32, 32, true));
        assert_eq!(choose(50, 50, true, false, big), thumb(96, 96, true));
        assert_eq!(choose(100, 100, false, false, big), thumb(320, 240, false));
        assert_eq!(choose(320, 241, false, false, big), thumb(640, 480, false));
        assert_eq!(choose(800, 600, false, false, big), thumb(800, 600, false));
        // Past the common sizes: rounded up in 25 % steps.
        assert_eq!(choose(801, 100, false, false, big), thumb(1000, 800, false));
        assert_eq!(choose(97, 97, true, false, big), thumb(800, 800, true));
        assert_eq!(choose(1300, 1300, true, false, big), thumb(1562, 1562, true));
        // The image is no bigger than asked: the original.
        assert_eq!(choose(800, 600, false, false, (640, 480)), Choice::Original);
        assert_eq!(choose(96, 96, true, false, (96, 50)), Choice::Original);
        // Fits in the rounded box: the original too.
        assert_eq!(choose(700, 500, false, false, (700, 550)), Choice::Original);
        assert_eq!(
            choose(32, 32, true, true, big),
            Choice::Thumb(ThumbKey { width: 32, height: 32, crop: true, animated: true })
        );
    }

    #[test]
    fn common_sizes_of_a_small_image() {
        let dims = (500, 400);
        let made: Vec<_> =
            COMMON.iter().filter(|k| choose(k.width, k.height, k.crop, false, dims) == Choice::Thumb(**k)).collect();
        assert_eq!(made.len(), 3, "32 and 96 crops and the 320x240 scale; larger boxes are the image itself");
    }
}
