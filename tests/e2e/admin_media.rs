//! Synapse's media admin API: quarantining media (one, a room's, a user's) so that
//! downloads and thumbnails answer 404, releasing it, deleting media (one, a page of a
//! user's) without touching another upload of the same bytes, listing a room's and a user's
//! media, protecting media from quarantine, and the remote-cache purge (nothing cached
//! yet). Only admins; bad input refused.

use serde_json::json;
use trellis_testkit::{Client, TestServer, enc};

use super::{
    admin_users::admin,
    media::{get, media_thumbnails::png, upload_id},
};

both_modes!(
    media_quarantined_and_released,
    a_rooms_and_a_users_media,
    media_listed_and_deleted,
    protected_media_is_never_quarantined
);

const ADMIN: &str = "/_synapse/admin/v1";

fn token(c: &Client) -> String {
    c.token.clone().unwrap()
}

async fn status(server: &TestServer, path: &str, c: &Client) -> u16 {
    get(server, path, Some(&token(c))).await.status().as_u16()
}

fn download(id: &str) -> String {
    format!("/_matrix/client/v1/media/download/localhost/{id}")
}

fn thumbnail(id: &str) -> String {
    format!("/_matrix/client/v1/media/thumbnail/localhost/{id}?width=32&height=32")
}

async fn media_quarantined_and_released(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let id = upload_id(&server, &token(&bob), png(64, 64), "image/png").await;
    assert_eq!(status(&server, &download(&id), &bob).await, 200);
    assert_eq!(status(&server, &thumbnail(&id), &bob).await, 200);

    // Only admins; another server's media, an unknown one.
    bob.post(&format!("{ADMIN}/media/quarantine/localhost/{id}"), json!({})).await.err(403, "M_FORBIDDEN");
    alice.post(&format!("{ADMIN}/media/quarantine/elsewhere/{id}"), json!({})).await.err(400, "M_INVALID_PARAM");
    alice.post(&format!("{ADMIN}/media/quarantine/localhost/nosuchmedia"), json!({})).await.err(404, "M_NOT_FOUND");

    assert_eq!(alice.post(&format!("{ADMIN}/media/quarantine/localhost/{id}"), json!({})).await.ok(), json!({}));
    let refused = get(&server, &download(&id), Some(&token(&bob))).await;
    assert_eq!(refused.status().as_u16(), 404);
    assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["errcode"], "M_NOT_FOUND");
    assert_eq!(status(&server, &thumbnail(&id), &bob).await, 404);
    let listed = alice.get(&format!("{ADMIN}/users/{}/media", enc("@bob:localhost"))).await.ok();
    assert_eq!(listed["media"][0]["quarantined_by"], "@alice:localhost", "{listed}");

    alice.post(&format!("{ADMIN}/media/unquarantine/localhost/{id}"), json!({})).await.ok();
    assert_eq!(status(&server, &download(&id), &bob).await, 200);
}

async fn a_rooms_and_a_users_media(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let room = bob.create_room(json!({"preset": "public_chat"})).await;
    let image = upload_id(&server, &token(&bob), png(8, 8), "image/png").await;
    let thumb = upload_id(&server, &token(&bob), png(4, 4), "image/png").await;
    let elsewhere = upload_id(&server, &token(&bob), b"not in a room".to_vec(), "text/plain").await;
    let send = |txn: &str| format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(&room));
    let img = json!({"msgtype": "m.image", "body": "cat", "url": format!("mxc://localhost/{image}"),
                     "info": {"thumbnail_url": format!("mxc://localhost/{thumb}")}});
    bob.put(&send("1"), img).await.ok();
    let file = json!({"msgtype": "m.file", "body": "far", "url": "mxc://remote.example/abc"});
    bob.put(&send("2"), file).await.ok();

    let path = format!("{ADMIN}/room/{}/media", enc(&room));
    bob.get(&path).await.err(403, "M_FORBIDDEN");
    let listed = alice.get(&path).await.ok();
    let mut local = vec![format!("mxc://localhost/{image}"), format!("mxc://localhost/{thumb}")];
    local.sort();
    assert_eq!(listed, json!({"local": local, "remote": ["mxc://remote.example/abc"]}));
    alice.get(&format!("{ADMIN}/room/{}/media", enc("!nope:localhost"))).await.err(404, "M_NOT_FOUND");

    // The room's media is quarantined; the upload in no room is not.
    let done = alice.post(&format!("{ADMIN}/room/{}/media/quarantine", enc(&room)), json!({})).await.ok();
    assert_eq!(done, json!({"num_quarantined": 2}));
    assert_eq!(status(&server, &download(&image), &bob).await, 404);
    assert_eq!(status(&server, &download(&thumb), &bob).await, 404);
    assert_eq!(status(&server, &download(&elsewhere), &bob).await, 200);

    // A user's: every upload of theirs.
    let user_path = format!("{ADMIN}/user/{}/media/quarantine", enc("@bob:localhost"));
    bob.post(&user_path, json!({})).await.err(403, "M_FORBIDDEN");
    assert_eq!(alice.post(&user_path, json!({})).await.ok(), json!({"num_quarantined": 3}));
    assert_eq!(status(&server, &download(&elsewhere), &bob).await, 404);
    alice
        .post(&format!("{ADMIN}/user/{}/media/quarantine", enc("@bob:elsewhere")), json!({}))
        .await
        .err(400, "M_INVALID_PARAM");
}

async fn media_listed_and_deleted(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let mut ids = Vec::new();
    for size in [10, 30, 20] {
        ids.push(upload_id(&server, &token(&bob), vec![b'x'; size], "text/plain").await);
    }
    // The same bytes as bob's first upload: one blob, two media.
    let carols = upload_id(&server, &token(&carol), vec![b'x'; 10], "text/plain").await;

    let list = format!("{ADMIN}/users/{}/media", enc("@bob:localhost"));
    bob.get(&list).await.err(403, "M_FORBIDDEN");
    let page = alice.get(&format!("{list}?limit=2")).await.ok();
    assert_eq!((page["total"].as_i64(), page["next_token"].as_i64()), (Some(3), Some(2)), "{page}");
    assert_eq!(page["media"].as_array().unwrap().len(), 2);
    for key in [
        "media_id",
        "media_type",
        "media_length",
        "upload_name",
        "created_ts",
        "last_access_ts",
        "safe_from_quarantine",
    ] {
        assert!(page["media"][0].get(key).is_some(), "{key} in {page}");
    }
    let by_size = alice.get(&format!("{list}?order_by=media_length&dir=b")).await.ok();
    let sizes: Vec<i64> =
        by_size["media"].as_array().unwrap().iter().map(|m| m["media_length"].as_i64().unwrap()).collect();
    assert_eq!(sizes, [30, 20, 10]);
    assert!(by_size.get("next_token").is_none(), "{by_size}");
    for bad in ["order_by=shoe_size", "dir=sideways", "limit=-1", "from=-3"] {
        alice.get(&format!("{list}?{bad}")).await.err(400, "M_INVALID_PARAM");
    }
    alice.get(&format!("{ADMIN}/users/{}/media", enc("@nobody:localhost"))).await.err(404, "M_NOT_FOUND");
    alice.get(&format!("{ADMIN}/users/{}/media", enc("@bob:elsewhere"))).await.err(400, "M_INVALID_PARAM");

    // One media deleted: gone, and twice is not found; carol's copy of the bytes stays.
    let one = format!("{ADMIN}/media/localhost/{}", ids[0]);
    bob.request("DELETE", &one, None).await.err(403, "M_FORBIDDEN");
    let deleted = alice.request("DELETE", &one, None).await.ok();
    assert_eq!(deleted, json!({"deleted_media": [ids[0]], "total": 1}));
    assert_eq!(status(&server, &download(&ids[0]), &bob).await, 404);
    alice.request("DELETE", &one, None).await.err(404, "M_NOT_FOUND");
    alice.request("DELETE", &format!("{ADMIN}/media/elsewhere/{}", ids[1]), None).await.err(400, "M_INVALID_PARAM");
    let kept = get(&server, &download(&carols), Some(&token(&carol))).await;
    assert_eq!(kept.status().as_u16(), 200);
    assert_eq!(kept.bytes().await.unwrap().as_ref(), vec![b'x'; 10].as_slice());

    // The rest of bob's, a page at a time.
    let first = alice.request("DELETE", &format!("{list}?limit=1&order_by=media_length"), None).await.ok();
    assert_eq!(first, json!({"deleted_media": [ids[2]], "total": 1}));
    let rest = alice.request("DELETE", &list, None).await.ok();
    assert_eq!(rest, json!({"deleted_media": [ids[1]], "total": 1}));
    assert_eq!(alice.get(&list).await.ok()["total"], 0);

    // No remote media is cached here.
    let purge = format!("{ADMIN}/purge_media_cache");
    assert_eq!(alice.post(&format!("{purge}?before_ts=1700000000000"), json!({})).await.ok(), json!({"deleted": 0}));
    bob.post(&format!("{purge}?before_ts=1"), json!({})).await.err(403, "M_FORBIDDEN");
    let missing = alice.post(&purge, json!({})).await;
    assert_eq!(missing.status, 400, "{}", missing.body);
    alice.post(&format!("{purge}?before_ts=-1"), json!({})).await.err(400, "M_INVALID_PARAM");
}

async fn protected_media_is_never_quarantined(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let room = bob.create_room(json!({"preset": "public_chat"})).await;
    let sticker = upload_id(&server, &token(&bob), png(8, 8), "image/png").await;
    let other = upload_id(&server, &token(&bob), png(4, 4), "image/png").await;
    for (txn, id) in [("1", &sticker), ("2", &other)] {
        let send = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(&room));
        bob.put(&send, json!({"msgtype": "m.image", "body": "x", "url": format!("mxc://localhost/{id}")})).await.ok();
    }

    // Only admins; an unknown media ID.
    let protect = |id: &str| format!("{ADMIN}/media/protect/{id}");
    bob.post(&protect(&sticker), json!({})).await.err(403, "M_FORBIDDEN");
    bob.post(&format!("{ADMIN}/media/unprotect/{sticker}"), json!({})).await.err(403, "M_FORBIDDEN");
    alice.post(&protect("nosuchmedia"), json!({})).await.err(404, "M_NOT_FOUND");

    assert_eq!(alice.post(&protect(&sticker), json!({})).await.ok(), json!({}));
    let list = format!("{ADMIN}/users/{}/media?order_by=safe_from_quarantine", enc("@bob:localhost"));
    let listed = alice.get(&list).await.ok();
    assert_eq!(listed["media"][1]["media_id"], sticker.as_str(), "{listed}");
    assert_eq!(listed["media"][1]["safe_from_quarantine"], true, "{listed}");
    // Every quarantine passes it by: the room's, the user's, by its ID.
    let done = alice.post(&format!("{ADMIN}/room/{}/media/quarantine", enc(&room)), json!({})).await.ok();
    assert_eq!(done, json!({"num_quarantined": 1}));
    let by_user = format!("{ADMIN}/user/{}/media/quarantine", enc("@bob:localhost"));
    // (Counted as Synapse does: the other one again, not the sticker.)
    assert_eq!(alice.post(&by_user, json!({})).await.ok(), json!({"num_quarantined": 1}));
    alice.post(&format!("{ADMIN}/media/quarantine/localhost/{sticker}"), json!({})).await.ok();
    assert_eq!(status(&server, &download(&sticker), &bob).await, 200);
    assert_eq!(status(&server, &download(&other), &bob).await, 404);

    // Unprotected, it is quarantined like any other.
    alice.post(&format!("{ADMIN}/media/unprotect/{sticker}"), json!({})).await.ok();
    alice.post(&format!("{ADMIN}/media/quarantine/localhost/{sticker}"), json!({})).await.ok();
    assert_eq!(status(&server, &download(&sticker), &bob).await, 404);
}
