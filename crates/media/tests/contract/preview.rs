//! URL previews against a local web server: OpenGraph with the image stored as media, the
//! cache, the IP blacklist (on literal addresses, resolved names and redirects), the size
//! and time limits, and the switch that turns it all off.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde_json::Value;
use trellis_core::{ErrorCode, Result, config::MediaConfig};
use trellis_media::IpFilter;
use trellis_proto::media::PreviewUrlRequest;

use crate::support::{Fixture, MB, SERVER, Via, expect_err, media_id_of};

const PNG: &[u8] = include_bytes!("tiny.png");

/// A web server on a free loopback port; counts requests for `/page`.
async fn site() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new()
        .route(
            "/page",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    let html = r#"<html><head><title>Fallback</title>
                        <meta property="og:title" content="A page &amp; more">
                        <meta property="og:description" content="About the page">
                        <meta property="og:image" content="/img.png"></head><body></body></html>"#;
                    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html)
                }
            }),
        )
        .route("/img.png", get(|| async { ([(header::CONTENT_TYPE, "image/png")], PNG) }))
        .route("/plain", get(|| async { "just text" }))
        .route("/big.png", get(|| async { ([(header::CONTENT_TYPE, "image/png")], vec![0u8; 300_000]) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/hop", get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/page")]).into_response() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

/// Previews on, the default blacklist, with 127.0.0.1 alone let through for the test site.
async fn fixture(via: Via, allow_loopback: bool) -> Fixture {
    let deny = MediaConfig::default().url_preview_ip_blacklist;
    let allow = if allow_loopback { vec!["127.0.0.1/32".to_owned()] } else { Vec::new() };
    Fixture::with(via, MB, |s| {
        *s = s.clone().with_preview(IpFilter::new(&deny, &allow).unwrap());
        let p = s.preview.as_mut().unwrap();
        p.max_bytes = 100_000;
        p.timeout = Duration::from_millis(1500);
    })
    .await
}

async fn preview(fx: &Fixture, url: &str) -> Result<Value> {
    let req = PreviewUrlRequest { user_id: "@alice:media.test".into(), url: url.into(), ts: None };
    Ok(serde_json::from_str(&fx.svc().preview_url(req).await?.json).unwrap())
}

async fn opengraph_with_a_stored_image(via: Via) {
    let (addr, hits) = site().await;
    let fx = fixture(via, true).await;
    let og = preview(&fx, &format!("http://{addr}/page")).await.unwrap();
    assert_eq!(og["og:title"], "A page & more");
    assert_eq!(og["og:description"], "About the page");
    assert_eq!(og["og:image:type"], "image/png");
    assert_eq!(og["matrix:image:size"], PNG.len());
    assert_eq!((og["og:image:width"].as_u64(), og["og:image:height"].as_u64()), (Some(1), Some(1)));
    let image = media_id_of(og["og:image"].as_str().unwrap());
    let (meta, chunks) = fx.download(SERVER, &image).await.unwrap();
    assert_eq!((meta.content_type.as_str(), chunks.concat()), ("image/png", PNG.to_vec()));

    // Cached: the site is not asked again (the fragment is not part of the page).
    let again = preview(&fx, &format!("http://{addr}/page#section")).await.unwrap();
    assert_eq!(again, og);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // An image URL is its own preview; other types preview as nothing; redirects are followed.
    let img = preview(&fx, &format!("http://{addr}/img.png")).await.unwrap();
    assert_eq!(img["matrix:image:size"], PNG.len());
    assert_eq!(preview(&fx, &format!("http://{addr}/plain")).await.unwrap(), serde_json::json!({}));
    assert_eq!(preview(&fx, &format!("http://{addr}/hop")).await.unwrap()["og:title"], "A page & more");
    assert_eq!(fx.count("SELECT count(*) FROM media_usage").await, 0, "preview images count towards no quota");
}

async fn limits(via: Via) {
    let (addr, _) = site().await;
    let fx = fixture(via, true).await;
    expect_err(preview(&fx, &format!("http://{addr}/big.png")).await, ErrorCode::TooLarge, 502);
    let started = std::time::Instant::now();
    expect_err(preview(&fx, &format!("http://{addr}/slow")).await, ErrorCode::Unknown, 502);
    assert!(started.elapsed() < Duration::from_secs(4), "the time limit cut it short");
    expect_err(preview(&fx, "ftp://example.org/x").await, ErrorCode::InvalidParam, 400);
    expect_err(preview(&fx, "not a url").await, ErrorCode::InvalidParam, 400);
}

async fn blacklist_checks_resolved_addresses(via: Via) {
    let (addr, hits) = site().await;
    let port = addr.port();
    let fx = fixture(via, false).await;
    for url in [
        format!("http://127.0.0.1:{port}/page"),
        format!("http://localhost:{port}/page"),
        format!("http://[::1]:{port}/page"),
        format!("http://[::ffff:127.0.0.1]:{port}/page"),
        format!("http://2130706433:{port}/page"),
    ] {
        expect_err(preview(&fx, &url).await, ErrorCode::Forbidden, 403);
    }
    // Let through for 127.0.0.1 only, a redirect to elsewhere in 127/8 is still refused.
    let open = fixture(via, true).await;
    let redirect = format!("http://127.0.0.1:{port}/hop");
    assert!(preview(&open, &redirect).await.is_ok());
    let sneaky = format!("http://127.0.0.2:{port}/page");
    expect_err(preview(&open, &sneaky).await, ErrorCode::Forbidden, 403);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "no blocked address was ever contacted");
}

async fn off_by_default(via: Via) {
    let fx = Fixture::new(via, MB).await;
    expect_err(preview(&fx, "http://example.org/").await, ErrorCode::Unrecognized, 404);
}

trellis_testkit::contract!(setup = trellis_testkit::contract::bare; opengraph_with_a_stored_image, limits, blacklist_checks_resolved_addresses, off_by_default);
