//! Media: the routes of the content repository (the legacy `/_matrix/media/*` prefixes and
//! the authenticated `/_matrix/client/v1/media/*`), streamed uploads (`POST /upload`, the
//! asynchronous `POST /create` + `PUT /upload/{serverName}/{mediaId}`), `/config` and
//! `/preview_url`. Downloads and thumbnails are in `media_serve`.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use axum::{
    Json, Router,
    body::{Body, BodyDataStream},
    extract::{RawPathParams, State},
    http::{HeaderMap, Uri, header},
    routing::{get, post, put},
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_core::Error;
use trellis_proto::media::{ConfigRequest, CreateRequest, PreviewUrlRequest, UploadMeta};

use super::{RawJson, media_serve, param, query};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, LINGER_EXTRA_BYTES, linger},
};

/// The deprecated prefixes; `v1` is where `/create` lives.
const LEGACY_PREFIXES: &[&str] = &["/_matrix/media/r0", "/_matrix/media/v3", "/_matrix/media/v1"];
const AUTHED_PREFIX: &str = "/_matrix/client/v1/media";

pub fn routes() -> Router<AppState> {
    let mut router = Router::new().route("/_matrix/media/v1/create", post(create_route));
    for prefix in LEGACY_PREFIXES {
        router = router
            .route(&format!("{prefix}/upload"), post(upload_route))
            .route(&format!("{prefix}/upload/{{server_name}}/{{media_id}}"), put(upload_to_route))
            .route(&format!("{prefix}/config"), get(config_route))
            .route(&format!("{prefix}/preview_url"), get(preview_url_route))
            .route(&format!("{prefix}/download/{{server_name}}/{{media_id}}"), get(media_serve::legacy_download_route))
            .route(
                &format!("{prefix}/download/{{server_name}}/{{media_id}}/{{file_name}}"),
                get(media_serve::legacy_download_route),
            )
            .route(
                &format!("{prefix}/thumbnail/{{server_name}}/{{media_id}}"),
                get(media_serve::legacy_thumbnail_route),
            );
    }
    router
        .route(&format!("{AUTHED_PREFIX}/config"), get(config_route))
        .route(&format!("{AUTHED_PREFIX}/preview_url"), get(preview_url_route))
        .route(&format!("{AUTHED_PREFIX}/download/{{server_name}}/{{media_id}}"), get(media_serve::download_route))
        .route(
            &format!("{AUTHED_PREFIX}/download/{{server_name}}/{{media_id}}/{{file_name}}"),
            get(media_serve::download_route),
        )
        .route(&format!("{AUTHED_PREFIX}/thumbnail/{{server_name}}/{{media_id}}"), get(media_serve::thumbnail_route))
}

#[derive(Deserialize, Default)]
struct UploadQuery {
    filename: Option<String>,
}

/// # `POST /_matrix/media/v3/upload`
async fn upload_route(
    State(s): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> ApiResult<Json<Value>> {
    let uri = upload(&s, auth, &headers, &uri, None, body).await?;
    Ok(Json(json!({ "content_uri": uri })))
}

/// # `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`
async fn upload_to_route(
    State(s): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    uri: Uri,
    params: RawPathParams,
    body: Body,
) -> ApiResult<Json<Value>> {
    let target = (param(&params, "server_name")?, param(&params, "media_id")?);
    upload(&s, auth, &headers, &uri, Some(target), body).await?;
    Ok(Json(json!({})))
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
async fn create_route(State(s): State<AppState>, auth: Authed) -> ApiResult<Json<Value>> {
    let resp = s.services.media.create(CreateRequest { user_id: auth.user_id }).await?;
    Ok(Json(json!({ "content_uri": resp.content_uri, "unused_expires_at": resp.unused_expires_at })))
}

/// # `GET /_matrix/client/v1/media/config`
async fn config_route(State(s): State<AppState>, _: Authed) -> ApiResult<Json<Value>> {
    let config = s.services.media.config(ConfigRequest {}).await?;
    Ok(Json(json!({ "m.upload.size": config.upload_size })))
}

#[derive(Deserialize)]
struct PreviewQuery {
    url: Option<String>,
    ts: Option<i64>,
}

/// # `GET /_matrix/client/v1/media/preview_url`
async fn preview_url_route(State(s): State<AppState>, auth: Authed, uri: Uri) -> ApiResult<RawJson> {
    let q: PreviewQuery = query(&uri)?;
    let url = q.url.ok_or_else(|| Error::missing_param("Missing url parameter"))?;
    let resp = s.services.media.preview_url(PreviewUrlRequest { user_id: auth.user_id, url, ts: q.ts }).await?;
    Ok(RawJson(resp.json))
}
