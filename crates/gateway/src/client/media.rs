//! Media: the routes of the content repository (the legacy `/_matrix/media/*` prefixes and
//! the authenticated `/_matrix/client/v1/media/*`), streamed uploads (`POST /upload`, the
//! asynchronous `POST /create` + `PUT /upload/{serverName}/{mediaId}`), `/config` and
//! `/preview_url`. Downloads and thumbnails are in `media_serve`.

// The unauthenticated `/_matrix/media` endpoints are deprecated, and still served.
#![allow(deprecated)]

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use axum::{
    Router,
    body::{Body, BodyDataStream},
    extract::{RawPathParams, State},
    http::{HeaderMap, Uri, header},
    response::Response,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::{authenticated_media, media},
};
use serde::Deserialize;
use trellis_core::Error;
use trellis_proto::media::{ConfigRequest, CreateRequest, PreviewUrlRequest, UploadMeta};

use super::{media_serve, param, query, uint};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, LINGER_EXTRA_BYTES, Ruma, linger},
    response::{Rendered, Reply},
    router::{RumaRoutes, also_under, paths_of},
};

pub fn routes() -> Router<AppState> {
    use ruma::api::client::{authenticated_media as authed, media};
    // Uploads and downloads stream: ruma's types hold a whole file in memory, so these are
    // axum handlers on the endpoints' paths. `/_matrix/media/v1/...` served every legacy
    // endpoint before r0, and Synapse still answers there.
    let legacy = |paths| also_under(paths, "/_matrix/media/", &["r0", "v1"]);
    Router::new()
        .json_endpoint_on::<media::create_content::v3::Request, _, _>(
            legacy(paths_of::<media::create_content::v3::Request>()),
            create_content_route,
        )
        .json_endpoint_on::<media::create_content_async::v3::Request, _, _>(
            legacy(paths_of::<media::create_content_async::v3::Request>()),
            create_content_async_route,
        )
        .ruma(create_mxc_uri_route)
        .ruma_on(legacy(paths_of::<media::get_media_config::v3::Request>()), get_media_config_legacy_route)
        .ruma(get_media_config_route)
        .ruma_on(legacy(paths_of::<media::get_media_preview::v3::Request>()), get_media_preview_legacy_route)
        .ruma(get_media_preview_route)
        .json_endpoint_on::<media::get_content::v3::Request, _, _>(
            legacy(paths_of::<media::get_content::v3::Request>()),
            media_serve::legacy_download_route,
        )
        .json_endpoint_on::<media::get_content_as_filename::v3::Request, _, _>(
            legacy(paths_of::<media::get_content_as_filename::v3::Request>()),
            media_serve::legacy_download_route,
        )
        .json_endpoint_on::<media::get_content_thumbnail::v3::Request, _, _>(
            legacy(paths_of::<media::get_content_thumbnail::v3::Request>()),
            media_serve::legacy_thumbnail_route,
        )
        .json_endpoint::<authed::get_content::v1::Request, _, _>(media_serve::download_route)
        .json_endpoint::<authed::get_content_as_filename::v1::Request, _, _>(media_serve::download_route)
        .json_endpoint::<authed::get_content_thumbnail::v1::Request, _, _>(media_serve::thumbnail_route)
}

#[derive(Deserialize, Default)]
struct UploadQuery {
    filename: Option<String>,
}

/// # `POST /_matrix/media/v3/upload`
async fn create_content_route(
    State(s): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> ApiResult<Response> {
    let uri = upload(&s, auth, &headers, &uri, None, body).await?;
    Ok(media::create_content::v3::Response::new(uri.into()).into_answer())
}

/// # `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`
async fn create_content_async_route(
    State(s): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    uri: Uri,
    params: RawPathParams,
    body: Body,
) -> ApiResult<Response> {
    let target = (param(&params, "server_name")?, param(&params, "media_id")?);
    upload(&s, auth, &headers, &uri, Some(target), body).await?;
    // ruma's type has no constructor (an oversight: it is an empty object).
    Ok(Rendered::<media::create_content_async::v3::Response>::new("{}".to_owned()).into_answer())
}

/// Streams the body to the media service; returns the `mxc://` URI.
async fn upload(
    s: &AppState,
    auth: Authed,
    headers: &HeaderMap,
    uri: &Uri,
    target: Option<(String, String)>,
    body: Body,
) -> ApiResult<String> {
    if let Err(refused) = auth.not_suspended() {
        linger(body.into_data_stream(), s.settings.max_upload_bytes.saturating_add(LINGER_EXTRA_BYTES)).await;
        return Err(refused);
    }
    let q: UploadQuery = query(uri)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let declared_length =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let shared = Arc::new(Mutex::new(Some(body.into_data_stream())));
    let body = Reclaimable(shared.clone())
        .map(|chunk| chunk.map_err(|e| Error::internal(format!("upload body interrupted: {e}"))));
    let (server_name, media_id) = target.unzip();
    let meta = UploadMeta {
        user_id: auth.user_id,
        content_type,
        filename: q.filename,
        declared_length,
        server_name,
        media_id,
    };
    match s.services.media.upload(meta, Box::pin(body)).await {
        Ok(resp) => Ok(resp.content_uri),
        Err(e) => {
            // A client still sending would see its connection reset instead of our answer:
            // read (and drop) what is left of the body first, within bounds.
            let rest = shared.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(rest) = rest {
                linger(rest, s.settings.max_upload_bytes.saturating_add(LINGER_EXTRA_BYTES)).await;
            }
            Err(e.into())
        }
    }
}

/// A request body the gateway can take back after the service is done with it.
struct Reclaimable(Arc<Mutex<Option<BodyDataStream>>>);

impl Stream for Reclaimable {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(stream) => Pin::new(stream).poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

/// # `POST /_matrix/media/v1/create`
async fn create_mxc_uri_route(
    s: AppState,
    req: Ruma<media::create_mxc_uri::v1::Request>,
) -> ApiResult<media::create_mxc_uri::v1::Response> {
    req.user.not_suspended()?;
    let resp = s.services.media.create(CreateRequest { user_id: req.user.user_id }).await?;
    let mut out = media::create_mxc_uri::v1::Response::new(resp.content_uri.into());
    out.unused_expires_at = UInt::try_from(resp.unused_expires_at).ok().map(MilliSecondsSinceUnixEpoch);
    Ok(out)
}

async fn upload_size(s: &AppState) -> ApiResult<UInt> {
    let config = s.services.media.config(ConfigRequest {}).await?;
    Ok(config.upload_size.map_or(UInt::MAX, uint))
}

/// # `GET /_matrix/client/v1/media/config`
async fn get_media_config_route(
    s: AppState,
    _: Ruma<authenticated_media::get_media_config::v1::Request>,
) -> ApiResult<authenticated_media::get_media_config::v1::Response> {
    Ok(authenticated_media::get_media_config::v1::Response::new(upload_size(&s).await?))
}

/// # `GET /_matrix/media/v3/config`
async fn get_media_config_legacy_route(
    s: AppState,
    _: Ruma<media::get_media_config::v3::Request>,
) -> ApiResult<media::get_media_config::v3::Response> {
    Ok(media::get_media_config::v3::Response::new(upload_size(&s).await?))
}

/// A preview, as the media service renders it.
async fn preview<R>(
    s: &AppState,
    user_id: String,
    url: String,
    ts: Option<MilliSecondsSinceUnixEpoch>,
) -> ApiResult<Rendered<R>> {
    let ts = ts.map(|t| i64::from(t.get()));
    Ok(Rendered::new(s.services.media.preview_url(PreviewUrlRequest { user_id, url, ts }).await?.json))
}

/// # `GET /_matrix/client/v1/media/preview_url`
async fn get_media_preview_route(
    s: AppState,
    req: Ruma<authenticated_media::get_media_preview::v1::Request>,
) -> ApiResult<Rendered<authenticated_media::get_media_preview::v1::Response>> {
    preview(&s, req.user.user_id, req.body.url, req.body.ts).await
}

/// # `GET /_matrix/media/v3/preview_url`
async fn get_media_preview_legacy_route(
    s: AppState,
    req: Ruma<media::get_media_preview::v3::Request>,
) -> ApiResult<Rendered<media::get_media_preview::v3::Response>> {
    preview(&s, req.user.user_id, req.body.url, req.body.ts).await
}
