//! Malformed identifiers in every path parameter that holds one, identifiers with an empty
//! localpart, and path traversal in media IDs: the spec's errcode each time, never a 500, and
//! nothing read afterwards fails.

use serde_json::json;
use trellis_testkit::{Client, TestServer, enc};

use crate::bad_input::{reads_still_answer, setup};

both_modes!(malformed_ids_in_every_path_parameter, empty_localparts_are_refused, media_ids_cannot_traverse);

/// Routes with identifier parameters: `R` a room ID, `O` a room ID or alias, `U` a user ID,
/// `E` an event ID, `A` a room alias.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/_matrix/client/v3/rooms/R/state"),
    ("GET", "/_matrix/client/v3/rooms/R/state/m.room.name/"),
    ("PUT", "/_matrix/client/v3/rooms/R/state/m.x/key"),
    ("GET", "/_matrix/client/v3/rooms/R/members"),
    ("GET", "/_matrix/client/v3/rooms/R/joined_members"),
    ("GET", "/_matrix/client/v3/rooms/R/messages?dir=b"),
    ("GET", "/_matrix/client/v3/rooms/R/initialSync"),
    ("PUT", "/_matrix/client/v3/rooms/R/send/m.x/t1"),
    ("POST", "/_matrix/client/v3/rooms/R/send/m.x"),
    ("PUT", "/_matrix/client/v3/rooms/R/redact/E/t2"),
    ("GET", "/_matrix/client/v3/rooms/R/event/E"),
    ("GET", "/_matrix/client/v3/rooms/R/context/E"),
    ("POST", "/_matrix/client/v3/rooms/R/receipt/m.read/E"),
    ("POST", "/_matrix/client/v3/rooms/R/read_markers"),
    ("POST", "/_matrix/client/v3/rooms/R/report/E"),
    ("POST", "/_matrix/client/v3/rooms/R/report"),
    ("PUT", "/_matrix/client/v3/rooms/R/typing/U"),
    ("GET", "/_matrix/client/v3/rooms/R/aliases"),
    ("POST", "/_matrix/client/v3/rooms/R/join"),
    ("POST", "/_matrix/client/v3/rooms/R/leave"),
    ("POST", "/_matrix/client/v3/rooms/R/forget"),
    ("POST", "/_matrix/client/v3/rooms/R/upgrade"),
    ("GET", "/_matrix/client/v3/directory/list/room/R"),
    ("PUT", "/_matrix/client/v3/directory/list/room/R"),
    ("GET", "/_matrix/client/v1/rooms/R/relations/E"),
    ("GET", "/_matrix/client/v1/rooms/R/relations/E/m.thread"),
    ("GET", "/_matrix/client/v1/rooms/R/relations/E/m.thread/m.room.message"),
    ("GET", "/_matrix/client/v1/rooms/R/threads"),
    ("GET", "/_matrix/client/v1/rooms/R/hierarchy"),
    ("GET", "/_matrix/client/v1/rooms/R/timestamp_to_event?ts=0&dir=f"),
    ("GET", "/_matrix/client/v1/room_summary/O"),
    ("POST", "/_matrix/client/v3/join/O"),
    ("POST", "/_matrix/client/v3/knock/O"),
    ("GET", "/_matrix/client/v3/user/U/rooms/R/account_data/m.x"),
    ("PUT", "/_matrix/client/v3/user/U/rooms/R/account_data/m.x"),
    ("GET", "/_matrix/client/v3/user/U/rooms/R/tags"),
    ("PUT", "/_matrix/client/v3/user/U/rooms/R/tags/u.x"),
    ("DELETE", "/_matrix/client/v3/user/U/rooms/R/tags/u.x"),
    ("GET", "/_matrix/client/v3/profile/U"),
    ("GET", "/_matrix/client/v3/profile/U/displayname"),
    ("PUT", "/_matrix/client/v3/profile/U/displayname"),
    ("GET", "/_matrix/client/v3/profile/U/avatar_url"),
    ("GET", "/_matrix/client/v3/profile/U/m.tz"),
    ("GET", "/_matrix/client/v3/presence/U/status"),
    ("PUT", "/_matrix/client/v3/presence/U/status"),
    ("POST", "/_matrix/client/v3/user/U/filter"),
    ("GET", "/_matrix/client/v3/user/U/filter/10"),
    ("GET", "/_matrix/client/v3/user/U/account_data/m.x"),
    ("PUT", "/_matrix/client/v3/user/U/account_data/m.x"),
    ("POST", "/_matrix/client/v3/user/U/openid/request_token"),
    ("GET", "/_matrix/client/v3/admin/whois/U"),
    ("POST", "/_matrix/client/v3/users/U/report"),
    ("GET", "/_matrix/client/v3/directory/room/A"),
    ("PUT", "/_matrix/client/v3/directory/room/A"),
    ("DELETE", "/_matrix/client/v3/directory/room/A"),
];

/// Values that break each identifier's grammar.
fn malformed(kind: char) -> Vec<String> {
    let long = |sigil: char| format!("{sigil}{}:localhost", "a".repeat(300));
    match kind {
        'R' => vec!["no-sigil".into(), "#here:localhost".into(), long('!')],
        'O' => vec!["no-sigil".into(), "@a:localhost".into(), "#no-colon".into(), "#:localhost".into(), long('#')],
        'U' => vec!["alice".into(), "@alice".into(), "@alice:bad host".into(), "@:localhost".into(), long('@')],
        'E' => vec!["no-sigil".into(), "!a:localhost".into(), long('$')],
        'A' => vec!["no-sigil".into(), "#no-colon".into(), "#:localhost".into(), "!a:localhost".into(), long('#')],
        _ => unreachable!("an identifier kind"),
    }
}

/// The body each method sends (what the endpoint would accept with valid identifiers).
fn body_for(path: &str) -> serde_json::Value {
    match path {
        p if p.ends_with("/upgrade") => json!({"new_version": "11"}),
        p if p.ends_with("/typing/U") => json!({"typing": true, "timeout": 1000}),
        p if p.ends_with("/directory/room/A") => json!({"room_id": "!x:localhost"}),
        p if p.ends_with("/directory/list/room/R") => json!({"visibility": "public"}),
        p if p.ends_with("/status") => json!({"presence": "online"}),
        p if p.ends_with("/displayname") => json!({"displayname": "x"}),
        p if p.ends_with("/report") => json!({"reason": "x"}),
        p if p.ends_with("/read_markers") => json!({}),
        _ => json!({}),
    }
}

async fn malformed_ids_in_every_path_parameter(server: TestServer) {
    let (alice, bob, room) = setup(&server).await;
    let event = alice.send_text(&room, "e", "an event").await;
    let valid = |kind: char, c: &Client| match kind {
        'R' | 'O' => room.clone(),
        'U' => c.user_id.clone(),
        'E' => event.clone(),
        'A' => "#here:localhost".to_owned(),
        _ => unreachable!(),
    };
    let mut failures = Vec::new();
    let mut tried = 0;
    for (method, template) in ROUTES {
        let (path, query) = template.split_once('?').unwrap_or((template, ""));
        let segments: Vec<&str> = path.split('/').collect();
        let kind = |s: &str| s.chars().next().filter(|k| s.len() == 1 && "ROUEA".contains(*k));
        let slots: Vec<usize> = (0..segments.len()).filter(|&i| kind(segments[i]).is_some()).collect();
        for &slot in &slots {
            for bad in malformed(kind(segments[slot]).unwrap()) {
                let filled: Vec<String> = segments
                    .iter()
                    .enumerate()
                    .map(|(i, seg)| match kind(seg) {
                        Some(_) if i == slot => enc(&bad),
                        Some(k) => enc(&valid(k, &alice)),
                        None => (*seg).to_owned(),
                    })
                    .collect();
                let url = match query {
                    "" => filled.join("/"),
                    q => format!("{}?{q}", filled.join("/")),
                };
                let reply = alice.request(method, &url, Some(body_for(path))).await;
                tried += 1;
                if (reply.status, reply.body["errcode"].as_str()) != (400, Some("M_INVALID_PARAM")) {
                    failures.push(format!("{method} {template} with {bad:.40}: {} {}", reply.status, reply.body));
                }
            }
        }
    }
    assert!(tried > 200, "{tried} requests");
    assert!(
        failures.is_empty(),
        "{} of {tried} not refused as M_INVALID_PARAM:\n{}",
        failures.len(),
        failures.join("\n")
    );
    reads_still_answer(&server, &[&alice, &bob], &room).await;
}

async fn empty_localparts_are_refused(server: TestServer) {
    let (alice, bob, room) = setup(&server).await;
    let r = enc(&room);
    alice
        .post(&format!("/_matrix/client/v3/rooms/{r}/invite"), json!({"user_id": "@:localhost"}))
        .await
        .err(400, "M_INVALID_PARAM");
    for action in ["kick", "ban", "unban"] {
        let reply =
            alice.post(&format!("/_matrix/client/v3/rooms/{r}/{action}"), json!({"user_id": "@:localhost"})).await;
        reply.err(400, "M_INVALID_PARAM");
    }
    alice.post("/_matrix/client/v3/createRoom", json!({"invite": ["@:localhost"]})).await.err(400, "M_INVALID_PARAM");
    let member = format!("/_matrix/client/v3/rooms/{r}/state/m.room.member/{}", enc("@:localhost"));
    alice.put(&member, json!({"membership": "invite"})).await.err(400, "M_BAD_JSON");
    let alias = format!("/_matrix/client/v3/directory/room/{}", enc("#:localhost"));
    alice.put(&alias, json!({"room_id": room})).await.err(400, "M_INVALID_PARAM");
    alice.get(&alias).await.err(400, "M_INVALID_PARAM");
    bob.post(&format!("/_matrix/client/v3/join/{}", enc("#:localhost")), json!({})).await.err(400, "M_INVALID_PARAM");
    let canonical = json!({"alias": "#here:localhost", "alt_aliases": ["#:localhost"]});
    alice
        .put(&format!("/_matrix/client/v3/rooms/{r}/state/m.room.canonical_alias"), canonical)
        .await
        .err(400, "M_INVALID_PARAM");
    // Nothing was made of them: no alias, no invite.
    let state = alice.get(&format!("/_matrix/client/v3/rooms/{r}/state")).await.ok();
    assert!(!state.to_string().contains("@:localhost"), "{state}");
    reads_still_answer(&server, &[&alice, &bob], &room).await;
}

async fn media_ids_cannot_traverse(server: TestServer) {
    let (alice, bob, room) = setup(&server).await;
    let uploaded = alice.raw("POST", "/_matrix/media/v3/upload?filename=a.txt", b"hello".to_vec()).await.ok();
    let id = uploaded["content_uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let ids = [
        "..%2F..%2F..%2Fetc%2Fpasswd".to_owned(),
        "..%2f..%2fetc%2fpasswd".to_owned(),
        format!("..%2F{id}"),
        format!("x%2F..%2F{id}"),
        "..".to_owned(),
        ".".to_owned(),
        "%2Fetc%2Fpasswd".to_owned(),
        "..%5C..%5Cwindows".to_owned(),
    ];
    for media in &ids {
        for path in [
            format!("/_matrix/client/v1/media/download/localhost/{media}"),
            format!("/_matrix/client/v1/media/download/localhost/{media}/name.txt"),
            format!("/_matrix/client/v1/media/thumbnail/localhost/{media}?width=32&height=32"),
            format!("/_matrix/media/v3/download/localhost/{media}"),
            format!("/_matrix/client/v1/media/download/..%2F..%2F/{media}"),
        ] {
            let reply = alice.get(&path).await;
            assert!(
                matches!(
                    (reply.status, reply.body["errcode"].as_str()),
                    (404, Some("M_NOT_FOUND" | "M_UNRECOGNIZED")) | (400, Some("M_INVALID_PARAM"))
                ),
                "GET {path}: {} {}",
                reply.status,
                reply.body
            );
        }
        let reply = alice.raw("PUT", &format!("/_matrix/media/v3/upload/localhost/{media}"), b"x".to_vec()).await;
        assert!(matches!(reply.status, 400 | 403 | 404), "PUT {media}: {} {}", reply.status, reply.body);
    }
    // The real file is still served, and only under its own ID.
    let served = alice.get(&format!("/_matrix/client/v1/media/download/localhost/{id}")).await;
    assert_eq!(served.status, 200);
    reads_still_answer(&server, &[&alice, &bob], &room).await;
}
