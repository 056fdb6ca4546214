//! Fetching a URL for a preview, safely: every address a host resolves to is checked against
//! the [`IpFilter`] (in the resolver, so the connection goes only to checked addresses), IP
//! literals and each redirect hop are checked too, and the whole fetch is bounded in time
//! and size.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};
use trellis_core::{Error, ErrorCode, Result};

use super::IpFilter;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

/// A name that resolved to a blacklisted address.
#[derive(Debug)]
struct Blocked;

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("address blocked by the URL preview blacklist")
    }
}

impl std::error::Error for Blocked {}

/// Resolves with the system resolver and refuses a name if any of its addresses is blocked
/// (a name that also points inside is not a name to trust).
struct FilteringResolver(Arc<IpFilter>);

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let filter = self.0.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if addrs.iter().any(|a| filter.blocks(a.ip())) {
                return Err(Box::new(Blocked) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// What a fetch brought back.
pub(crate) struct Fetched {
    /// The URL the content came from, after redirects.
    pub url: Url,
    pub content_type: String,
    pub body: Bytes,
    /// The body was cut at the size limit.
    pub truncated: bool,
}

pub(crate) struct Fetcher {
    client: reqwest::Client,
    filter: Arc<IpFilter>,
}

pub(crate) fn blocked() -> Error {
    Error::forbidden("IP address blocked by the URL preview blacklist")
}

fn failed(what: impl std::fmt::Display) -> Error {
    tracing::debug!(error = %what, "url preview fetch failed");
    Error::new(ErrorCode::Unknown, "Failed to fetch the URL for a preview").with_status(502)
}

impl Fetcher {
    pub fn new(filter: IpFilter) -> Result<Fetcher> {
        let filter = Arc::new(filter);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(FilteringResolver(filter.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent("Trellis URL preview (Matrix homeserver)")
            .build()
            .map_err(Error::internal)?;
        Ok(Fetcher { client, filter })
    }

    /// Fetches `url` (following up to five redirects), keeping at most `max_bytes` of the
    /// body; with `truncate` false a longer body is refused with `M_TOO_LARGE`.
    pub async fn fetch(&self, url: Url, max_bytes: u64, truncate: bool, timeout: Duration) -> Result<Fetched> {
        tokio::time::timeout(timeout, self.fetch_inner(url, max_bytes, truncate))
            .await
            .map_err(|_| failed("timed out"))?
    }

    async fn fetch_inner(&self, mut url: Url, max_bytes: u64, truncate: bool) -> Result<Fetched> {
        for _ in 0..=MAX_REDIRECTS {
            self.check_url(&url)?;
            let mut response = self.client.get(url.clone()).send().await.map_err(|e| classify(&e))?;
            if response.status().is_redirection() {
                let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
                url = location.and_then(|l| url.join(l).ok()).ok_or_else(|| failed("redirect without a location"))?;
                continue;
            }
            if !response.status().is_success() {
                return Err(failed(format!("status {}", response.status())));
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if response.content_length().is_some_and(|n| n > max_bytes) && !truncate {
                return Err(too_large());
            }
            let mut body = BytesMut::new();
            let mut truncated = false;
            while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
                let room = usize::try_from(max_bytes).unwrap_or(usize::MAX).saturating_sub(body.len());
                if chunk.len() > room {
                    if !truncate {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Fetched { url, content_type, body: body.freeze(), truncated });
        }
        Err(failed("too many redirects"))
    }

    /// Only `http(s)` URLs, and no blacklisted IP literal (names are checked by the resolver).
    fn check_url(&self, url: &Url) -> Result<()> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::invalid_param("Only http and https URLs can be previewed"));
        }
        let host = url.host_str().ok_or_else(|| Error::invalid_param("URL has no host"))?;
        match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
            Ok(ip) if self.filter.blocks(ip) => Err(blocked()),
            _ => Ok(()),
        }
    }
}

fn too_large() -> Error {
    Error::too_large("Content is too large to preview").with_status(502)
}

/// A blocked address anywhere in the error's causes is a refusal; anything else a failure.
fn classify(e: &reqwest::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<Blocked>() {
            return blocked();
        }
        source = s.source();
    }
    failed(e)
}
