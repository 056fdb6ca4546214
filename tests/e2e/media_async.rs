//! Asynchronous uploads through the gateway: `POST /_matrix/media/v1/create`, then
//! `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`; downloads of a pending URI answer
//! `M_NOT_YET_UPLOADED` after their `timeout_ms`, or the content once it arrives.

use std::time::Duration;

use serde_json::Value;
use trellis_testkit::TestServer;

use super::{get, user};

both_modes!(create_then_put, download_waits_for_put);

async fn create(server: &TestServer, token: &str) -> (String, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v1/create", server.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    let id = body["content_uri"].as_str().unwrap().strip_prefix("mxc://localhost/").unwrap().to_owned();
    (id, body)
}

async fn put(server: &TestServer, token: &str, id: &str, bytes: &[u8]) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .put(format!("{}/_matrix/media/v3/upload/localhost/{id}?filename=late.txt", server.url()))
        .bearer_auth(token)
        .header("Content-Type", "text/plain")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn create_then_put(server: TestServer) {
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let (id, body) = create(&server, &alice).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let expires = body["unused_expires_at"].as_i64().unwrap();
    assert!(expires > now + 23 * 3_600_000 && expires <= now + 24 * 3_600_000 + 60_000, "{body}");

    let pending = format!("/_matrix/client/v1/media/download/localhost/{id}?timeout_ms=100");
    let resp = get(&server, &pending, Some(&alice)).await;
    assert_eq!(resp.status().as_u16(), 504);
    assert_eq!(resp.json::<Value>().await.unwrap()["errcode"], "M_NOT_YET_UPLOADED");

    let (status, body) = put(&server, &bob, &id, b"mine now").await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (status, body) = put(&server, &alice, &id, b"late content").await;
    assert_eq!((status, body), (200, serde_json::json!({})));
    let (status, body) = put(&server, &alice, &id, b"overwrite").await;
    assert_eq!((status, body["errcode"].as_str()), (409, Some("M_CANNOT_OVERWRITE_MEDIA")));
    let (status, body) = put(&server, &alice, "neverCreated0123456789abc", b"x").await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")));

    let resp = get(&server, &format!("/_matrix/client/v1/media/download/localhost/{id}"), Some(&bob)).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-disposition"], "inline; filename=\"late.txt\"");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"late content");
}

async fn download_waits_for_put(server: TestServer) {
    let alice = user(&server, "alice").await;
    let (id, _) = create(&server, &alice).await;
    let path = format!("/_matrix/client/v1/media/download/localhost/{id}?timeout_ms=15000");
    let waiting = get(&server, &path, Some(&alice));
    let uploading = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        put(&server, &alice, &id, b"here it is").await
    };
    let started = std::time::Instant::now();
    let (resp, (status, _)) = tokio::join!(waiting, uploading);
    assert_eq!(status, 200);
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"here it is");
    assert!(started.elapsed() < Duration::from_secs(10), "the upload woke the download");
}
