//! Serving media: downloads (authenticated, and the frozen legacy form) and thumbnails,
//! streamed, with byte ranges (`206`, `416`) and the headers that keep a browser from
//! treating an upload as a web page of ours: `Content-Disposition` (inline only for safe
//! types), a sandboxing `Content-Security-Policy`, `nosniff` and `Cross-Origin-Resource-Policy`.
//! <https://spec.matrix.org/v1.16/client-server-api/#serving-inline-content>

use axum::{
    body::Body,
    extract::{RawPathParams, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use serde::Deserialize;
use trellis_core::Error;
use trellis_proto::media::{ByteRange, Download, DownloadRequest, ThumbnailRequest};

use super::{param, query};
use crate::{AppState, error::ApiResult, extract::Authed};

/// Types a browser may show inline (the spec's list); everything else is a download.
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

const CSP: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
     style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// Query parameters of downloads and thumbnails. `allow_remote` and `allow_redirect` are
/// accepted (any value) and change nothing: we serve local media only, never by redirect.
#[derive(Deserialize, Default)]
struct ServeQuery {
    timeout_ms: Option<u64>,
    width: Option<u32>,
    height: Option<u32>,
    method: Option<String>,
    animated: Option<bool>,
}

/// # `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`
pub(super) async fn download_route(
    State(s): State<AppState>,
    _: Authed,
    params: RawPathParams,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Response> {
    download(&s, true, &params, &headers, &uri).await
}

/// # `GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}]`
pub(super) async fn legacy_download_route(
    State(s): State<AppState>,
    params: RawPathParams,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Response> {
    download(&s, false, &params, &headers, &uri).await
}

async fn download(
    s: &AppState,
    authenticated: bool,
    params: &RawPathParams,
    headers: &HeaderMap,
    uri: &Uri,
) -> ApiResult<Response> {
    let q: ServeQuery = query(uri)?;
    let req = DownloadRequest {
        server_name: param(params, "server_name")?,
        media_id: param(params, "media_id")?,
        authenticated,
        timeout_ms: q.timeout_ms,
        range: parse_range(headers),
    };
    let file = s.services.media.download(req).await?;
    let name = param(params, "filename").ok();
    Ok(serve(file, name))
}

/// # `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`
pub(super) async fn thumbnail_route(
    State(s): State<AppState>,
    _: Authed,
    params: RawPathParams,
    uri: Uri,
) -> ApiResult<Response> {
    thumbnail(&s, true, &params, &uri).await
}

/// # `GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}`
pub(super) async fn legacy_thumbnail_route(
    State(s): State<AppState>,
    params: RawPathParams,
    uri: Uri,
) -> ApiResult<Response> {
    thumbnail(&s, false, &params, &uri).await
}

async fn thumbnail(s: &AppState, authenticated: bool, params: &RawPathParams, uri: &Uri) -> ApiResult<Response> {
    let q: ServeQuery = query(uri)?;
    let req = ThumbnailRequest {
        server_name: param(params, "server_name")?,
        media_id: param(params, "media_id")?,
        authenticated,
        timeout_ms: q.timeout_ms,
        width: q.width.ok_or_else(|| Error::missing_param("Missing width parameter"))?,
        height: q.height.ok_or_else(|| Error::missing_param("Missing height parameter"))?,
        method: q.method.unwrap_or_default(),
        animated: q.animated.unwrap_or(false),
    };
    let file = s.services.media.thumbnail(req).await?;
    Ok(serve(file, None))
}

/// `Range: bytes=a-b`, `bytes=a-` or `bytes=-n`, with its `If-Range`. Anything else (several
/// ranges, other units, garbage) is no range: the whole file is served, as RFC 9110 allows.
fn parse_range(headers: &HeaderMap) -> Option<ByteRange> {
    let spec = headers.get(header::RANGE)?.to_str().ok()?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let num = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() { Some(None) } else { s.parse().ok().map(Some) }
    };
    let (start, end) = (num(a)?, num(b)?);
    if start.is_none() && end.is_none() {
        return None;
    }
    let if_range = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Some(ByteRange { start, end, if_range })
}

/// The file as a streamed response: `200`, `206` for a range, `416` for a range past the end.
fn serve(file: Download, name_override: Option<String>) -> Response {
    let Download { meta, body } = file;
    let stored = if meta.content_type.is_empty() { "application/octet-stream" } else { meta.content_type.as_str() };
    // A type that cannot be a header value is no type at all.
    let content_type = HeaderValue::from_str(stored).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let name = name_override.or(meta.filename);
    let mut headers = HeaderMap::new();
    let set = |h: &mut HeaderMap, k: HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    let disposition = disposition(content_type.to_str().unwrap_or(""), name.as_deref());
    headers.insert(header::CONTENT_TYPE, content_type);
    set(&mut headers, header::CONTENT_DISPOSITION, &disposition);
    set(&mut headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(&mut headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut headers, HeaderName::from_static("cross-origin-resource-policy"), "cross-origin");
    set(&mut headers, header::ACCEPT_RANGES, "bytes");
    if !meta.etag.is_empty() {
        set(&mut headers, header::ETAG, &format!("\"{}\"", meta.etag));
    }
    let status = if meta.range_unsatisfiable {
        set(&mut headers, header::CONTENT_RANGE, &format!("bytes */{}", meta.length));
        set(&mut headers, header::CONTENT_LENGTH, "0");
        StatusCode::RANGE_NOT_SATISFIABLE
    } else if let Some(r) = meta.range {
        set(&mut headers, header::CONTENT_RANGE, &format!("bytes {}-{}/{}", r.start, r.end, meta.length));
        set(&mut headers, header::CONTENT_LENGTH, &(r.end - r.start + 1).to_string());
        StatusCode::PARTIAL_CONTENT
    } else {
        set(&mut headers, header::CONTENT_LENGTH, &meta.length.to_string());
        StatusCode::OK
    };
    let body = Body::from_stream(body.map(|r| r.map_err(|e| std::io::Error::other(e.to_string()))));
    (status, headers, body).into_response()
}

/// `inline` only for types that cannot run in a browser; the file name quoted, stripped of
/// anything that could break out of the header, and given in RFC 5987 form for non-ASCII.
fn disposition(content_type: &str, name: Option<&str>) -> String {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let kind = if INLINE_TYPES.contains(&essence.as_str()) { "inline" } else { "attachment" };
    let Some(name) = name.filter(|n| !n.is_empty()) else { return kind.to_owned() };
    let clean: String = name.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').collect();
    if clean.is_ascii() {
        format!("{kind}; filename=\"{clean}\"")
    } else {
        let encoded: String = clean
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("{kind}; filename*=utf-8''{encoded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        assert_eq!(disposition("image/png", Some("cat.png")), "inline; filename=\"cat.png\"");
        assert_eq!(disposition("text/html", Some("x.html")), "attachment; filename=\"x.html\"");
        assert_eq!(disposition("image/svg+xml", None), "attachment");
        assert_eq!(disposition("TEXT/PLAIN; charset=utf-8", None), "inline");
        assert_eq!(disposition("text/css", None), "inline");
        assert_eq!(disposition("application/octet-stream", Some("a\"b\r\n.bin")), "attachment; filename=\"ab.bin\"");
        assert_eq!(disposition("image/png", Some("ü.png")), "inline; filename*=utf-8''%C3%BC.png");
    }

    fn range(value: &str) -> Option<(Option<u64>, Option<u64>)> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        parse_range(&h).map(|r| (r.start, r.end))
    }

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-99"), Some((Some(0), Some(99))));
        assert_eq!(range("bytes=100-"), Some((Some(100), None)));
        assert_eq!(range("bytes=-5"), Some((None, Some(5))));
        assert_eq!(range("bytes= 1 - 2 "), Some((Some(1), Some(2))));
        for ignored in ["bytes=0-1,4-5", "items=0-1", "bytes=-", "bytes=a-b", "bytes=5", "0-1"] {
            assert_eq!(range(ignored), None, "{ignored}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=1-"));
        h.insert(header::IF_RANGE, HeaderValue::from_static("\"abc\""));
        assert_eq!(parse_range(&h).unwrap().if_range.as_deref(), Some("\"abc\""));
    }

    #[test]
    fn unsafe_types_are_never_inline() {
        use trellis_proto::media::DownloadMeta;
        let file = |ct: &str| Download {
            meta: DownloadMeta { content_type: ct.into(), length: 0, ..Default::default() },
            body: Box::pin(futures_util::stream::empty()),
        };
        for ct in ["text/html", "text/html; charset=utf-8", "application/javascript", "image/svg+xml", "bad\u{7f}type"]
        {
            let r = serve(file(ct), Some("x".into()));
            let d = r.headers()[header::CONTENT_DISPOSITION].to_str().unwrap().to_owned();
            assert!(d.starts_with("attachment"), "{ct}: {d}");
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("sandbox;"));
        }
        let r = serve(file("bad\u{7f}type"), None);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/octet-stream");
    }
}
