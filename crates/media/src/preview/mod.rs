//! `GET /media/preview_url`: off unless configured. A page's OpenGraph data (or, for an image
//! URL, the image itself) with the image stored as local media so clients fetch it through
//! us; results are cached per URL.
//! <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv1mediapreview_url>

mod fetch;
mod ipfilter;
mod og;

use reqwest::Url;
use serde_json::{Map, Value};
use trellis_core::{Error, Result, time::now_ms};
use trellis_proto::media::{PreviewUrlRequest, PreviewUrlResponse};

use self::fetch::{Fetched, Fetcher};
pub use self::ipfilter::{Cidr, IpFilter};
use crate::{
    db::{self, media::NewMedia},
    ids::{mxc_uri, new_media_id},
    inner::Inner,
    settings::PreviewSettings,
    store, thumbnail,
};

/// The preview machinery, present only when previews are on.
pub(crate) struct Previewer {
    fetcher: Fetcher,
    settings: PreviewSettings,
}

impl Previewer {
    pub fn new(settings: PreviewSettings) -> Result<Previewer> {
        Ok(Previewer { fetcher: Fetcher::new(settings.ip_filter.clone())?, settings })
    }
}

fn is_html(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(essence.as_str(), "text/html" | "application/xhtml+xml")
}

fn is_image(content_type: &str) -> bool {
    content_type.trim().to_ascii_lowercase().starts_with("image/")
}

impl Previewer {
    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn preview_url(&self, inner: &Inner, req: PreviewUrlRequest) -> Result<PreviewUrlResponse> {
        let url = Url::parse(&req.url).map_err(|_| Error::invalid_param("Not a valid URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::invalid_param("Only http and https URLs can be previewed"));
        }
        // The fragment never reaches the server: one cache entry per page.
        let mut key = url.clone();
        key.set_fragment(None);
        let now = now_ms();
        if let Some(og) = db::previews::get(&inner.pool, key.as_str(), now).await? {
            metrics::counter!("trellis_media_previews_total", "outcome" => "cached").increment(1);
            return Ok(PreviewUrlResponse { json: og.to_string() });
        }
        let s = &self.settings;
        let page = self.fetcher.fetch(key.clone(), s.max_bytes, true, s.timeout).await?;
        let og = if is_image(&page.content_type) {
            if page.truncated {
                return Err(Error::too_large("Content is too large to preview").with_status(502));
            }
            let mut og = Map::new();
            attach_image(inner, &mut og, page, &req.user_id).await?;
            og
        } else if is_html(&page.content_type) {
            let mut og = og::parse(&String::from_utf8_lossy(&page.body));
            if let Some(image) = og.remove("og:image").and_then(|v| v.as_str().and_then(|i| page.url.join(i).ok())) {
                match self.fetcher.fetch(image, s.max_bytes, false, s.timeout).await {
                    Ok(img) if is_image(&img.content_type) => {
                        if let Err(e) = attach_image(inner, &mut og, img, &req.user_id).await {
                            tracing::debug!(error = %e, "preview image not stored");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "preview image not fetched"),
                }
            }
            og
        } else {
            Map::new()
        };
        let og = Value::Object(og);
        let ttl = i64::try_from(s.cache_for.as_millis()).unwrap_or(i64::MAX);
        db::previews::put(&inner.pool, key.as_str(), &og, now.saturating_add(ttl)).await?;
        metrics::counter!("trellis_media_previews_total", "outcome" => "fetched").increment(1);
        Ok(PreviewUrlResponse { json: og.to_string() })
    }
}

/// Stores a fetched image as local media and points `og:image` at it.
async fn attach_image(inner: &Inner, og: &mut Map<String, Value>, img: Fetched, user_id: &str) -> Result<()> {
    let data = img.body;
    let mut client = inner.pool.get().await?;
    let tx = client.transaction().await?;
    db::blob_lock::share(&tx, &store::blob_name(&data)).await?;
    let sha256 = store::put_bytes(inner.store.as_ref(), &data).await?;
    let bytes = data.clone();
    let dims =
        tokio::task::spawn_blocking(move || thumbnail::probe(image::ImageReader::new(std::io::Cursor::new(bytes))))
            .await?;
    let media_id = new_media_id();
    let content_type = img.content_type.split(';').next().unwrap_or("").trim().to_owned();
    let row = NewMedia {
        media_id: &media_id,
        content_type: &content_type,
        upload_name: None,
        size: data.len() as u64,
        sha256: &sha256,
        user_id,
        created_ts: now_ms(),
        url_cache: Some(img.url.as_str()),
        dimensions: dims,
    };
    db::media::insert(&tx, &row).await?;
    tx.commit().await?;
    og.insert("og:image".into(), Value::String(mxc_uri(&inner.settings.server_name, &media_id)));
    og.insert("og:image:type".into(), Value::String(content_type));
    og.insert("matrix:image:size".into(), Value::from(data.len() as u64));
    if let Some((w, h)) = dims {
        og.insert("og:image:width".into(), Value::from(w));
        og.insert("og:image:height".into(), Value::from(h));
    }
    Ok(())
}
