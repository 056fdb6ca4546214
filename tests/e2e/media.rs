//! Media through the gateway: byte-exact uploads and downloads, content type kept, safe
//! serving headers, the authenticated download path and the frozen legacy one, byte
//! ranges, oversized uploads refused, unknown and malicious IDs. Asynchronous uploads,
//! thumbnails and previews are in the `media_*` modules.

#[path = "media_async.rs"]
mod media_async;
#[path = "media_thumbnails.rs"]
pub(crate) mod media_thumbnails;

use rand::RngExt;
use trellis_testkit::TestServer;

both_modes!(
    upload_and_download_are_byte_exact,
    oversized_upload_is_refused,
    ranges_are_served,
    unknown_and_malicious_ids_are_not_found,
    config_and_preview_switch,
);

pub(crate) async fn upload(
    server: &TestServer,
    token: &str,
    bytes: Vec<u8>,
    content_type: &str,
    name: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload?filename={name}", server.url()))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap()
}

/// Registers `name` and returns its access token.
pub(crate) async fn user(server: &TestServer, name: &str) -> String {
    let mut client = server.client();
    client.register(name, "pw").await;
    client.token.clone().unwrap()
}

/// Uploads and returns the media ID.
pub(crate) async fn upload_id(server: &TestServer, token: &str, bytes: Vec<u8>, content_type: &str) -> String {
    let resp = upload(server, token, bytes, content_type, "f").await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["content_uri"].as_str().unwrap().strip_prefix("mxc://localhost/").unwrap().to_owned()
}

pub(crate) async fn get(server: &TestServer, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{path}", server.url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn upload_and_download_are_byte_exact(server: TestServer) {
    let token = user(&server, "alice").await;
    let mut bytes = vec![0u8; 300_000];
    rand::rng().fill(&mut bytes[..]);
    let resp = upload(&server, &token, bytes.clone(), "image/png", "cat.png").await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let uri = body["content_uri"].as_str().unwrap();
    let (server_name, media_id) = uri.strip_prefix("mxc://").unwrap().split_once('/').unwrap();
    assert_eq!(server_name, "localhost");

    for (path, name) in [
        (format!("/_matrix/client/v1/media/download/{server_name}/{media_id}"), "cat.png"),
        (format!("/_matrix/client/v1/media/download/{server_name}/{media_id}/other.png"), "other.png"),
        (
            format!("/_matrix/client/v1/media/download/{server_name}/{media_id}?allow_remote=false&timeout_ms=5"),
            "cat.png",
        ),
    ] {
        let resp = get(&server, &path, Some(&token)).await;
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let h = resp.headers();
        assert_eq!(h["content-type"], "image/png");
        assert_eq!(h["content-length"], "300000");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
        assert_eq!(h["accept-ranges"], "bytes");
        assert!(h["content-security-policy"].to_str().unwrap().starts_with("sandbox; default-src 'none';"));
        assert_eq!(h["content-disposition"], format!("inline; filename=\"{name}\"").as_str());
        let got = resp.bytes().await.unwrap();
        assert!(got.as_ref() == bytes.as_slice(), "byte-exact download of {path}");
    }
    // The authenticated path wants a token.
    let authed = format!("/_matrix/client/v1/media/download/{server_name}/{media_id}");
    assert_eq!(get(&server, &authed, None).await.status().as_u16(), 401);
    // The legacy path is frozen by default (authenticated media is enforced, as in Synapse).
    for legacy in ["r0", "v3", "v1"] {
        let resp = get(&server, &format!("/_matrix/media/{legacy}/download/{server_name}/{media_id}"), None).await;
        assert_eq!(resp.status().as_u16(), 404, "{legacy}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["errcode"], "M_NOT_FOUND");
    }
    // HTML is never served inline; nor is SVG.
    for (ct, body) in [("text/html", "<script>alert(1)</script>"), ("image/svg+xml", "<svg onload=alert(1)/>")] {
        let id = upload_id(&server, &token, body.as_bytes().to_vec(), ct).await;
        let resp = get(&server, &format!("/_matrix/client/v1/media/download/localhost/{id}"), Some(&token)).await;
        assert_eq!(resp.headers()["content-type"], ct);
        assert!(resp.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"), "{ct}");
    }
}

async fn oversized_upload_is_refused(server: TestServer) {
    let token = user(&server, "alice").await;
    let resp = upload(&server, &token, vec![7u8; 10 * 1024 * 1024 + 1], "application/octet-stream", "big.bin").await;
    assert_eq!(resp.status().as_u16(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["errcode"], "M_TOO_LARGE");
    let anon = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload", server.url()))
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
}

async fn ranges_are_served(server: TestServer) {
    let token = user(&server, "alice").await;
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let id = upload_id(&server, &token, bytes.clone(), "video/mp4").await;
    let path = format!("{}/_matrix/client/v1/media/download/localhost/{id}", server.url());
    let http = reqwest::Client::new();
    let range = async |value: &str| http.get(&path).bearer_auth(&token).header("Range", value).send().await.unwrap();

    for (value, start, end) in [("bytes=10-19", 10, 19), ("bytes=-5", 99_995, 99_999), ("bytes=99990-", 99_990, 99_999)]
    {
        let resp = range(value).await;
        assert_eq!(resp.status().as_u16(), 206, "{value}");
        assert_eq!(resp.headers()["content-range"], format!("bytes {start}-{end}/100000").as_str());
        assert_eq!(resp.headers()["content-length"], (end - start + 1).to_string().as_str());
        assert!(resp.bytes().await.unwrap().as_ref() == &bytes[start..=end], "{value}");
    }
    let resp = range("bytes=100000-").await;
    assert_eq!(resp.status().as_u16(), 416);
    assert_eq!(resp.headers()["content-range"], "bytes */100000");
    // Several ranges: the whole file, as RFC 9110 allows.
    let resp = range("bytes=0-1,5-6").await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), 100_000);
    // If-Range with the ETag honours the range; a stale one gets everything.
    let etag = range("bytes=0-0").await.headers()["etag"].to_str().unwrap().to_owned();
    let fresh = http.get(&path).bearer_auth(&token).header("Range", "bytes=1-2").header("If-Range", &etag);
    assert_eq!(fresh.send().await.unwrap().status().as_u16(), 206);
    let stale = http.get(&path).bearer_auth(&token).header("Range", "bytes=1-2").header("If-Range", "\"old\"");
    assert_eq!(stale.send().await.unwrap().status().as_u16(), 200);
}

async fn unknown_and_malicious_ids_are_not_found(server: TestServer) {
    let token = user(&server, "alice").await;
    let id = upload_id(&server, &token, b"secret".to_vec(), "text/plain").await;
    for path in [
        "/_matrix/client/v1/media/download/localhost/doesnotexist".to_owned(),
        "/_matrix/client/v1/media/download/localhost/..%2F..%2Fetc%2Fpasswd".to_owned(),
        format!("/_matrix/client/v1/media/download/other.example/{id}"),
        format!("/_matrix/client/v1/media/download/localhost/{id}%2F..%2F{id}"),
        "/_matrix/client/v1/media/thumbnail/localhost/doesnotexist?width=32&height=32".to_owned(),
    ] {
        let resp = get(&server, &path, Some(&token)).await;
        assert_eq!(resp.status().as_u16(), 404, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["errcode"], "M_NOT_FOUND", "{path}");
    }
    assert!(id.len() >= 24 && id.bytes().all(|b| b.is_ascii_alphanumeric()), "unguessable ID {id}");
}

async fn config_and_preview_switch(server: TestServer) {
    let token = user(&server, "alice").await;
    for path in ["/_matrix/client/v1/media/config", "/_matrix/media/v3/config"] {
        let resp = get(&server, path, Some(&token)).await;
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["m.upload.size"], 10 * 1024 * 1024);
        assert_eq!(get(&server, path, None).await.status().as_u16(), 401);
    }
    // URL previews are off unless configured.
    for path in ["/_matrix/client/v1/media/preview_url", "/_matrix/media/v3/preview_url"] {
        let resp = get(&server, &format!("{path}?url=https%3A%2F%2Fmatrix.org"), Some(&token)).await;
        assert_eq!(resp.status().as_u16(), 404, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["errcode"], "M_UNRECOGNIZED");
        let resp = get(&server, path, Some(&token)).await;
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["errcode"], "M_MISSING_PARAM");
    }
}
