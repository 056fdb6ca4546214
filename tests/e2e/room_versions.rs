//! Every stable room version over HTTP: a room of each is created, joined, sent to, redacted
//! in and synced, with the event IDs its version prescribes; upgrades cross the formats (1 →
//! 12 → 10) and carry the members' tags, push rules and direct-chat entries along.

use serde_json::{Value, json};
use trellis_testkit::{TestServer, enc, timeline_bodies};

use crate::rooms_support::{room_path, say};

both_modes!(a_room_of_every_version, upgrades_across_event_id_formats, a_v12_creator_may_notify_the_room);

/// `$opaque:server` in v1–v2; the reference hash after (standard base64 in v3, URL-safe from v4).
fn assert_event_id_shape(version: u32, id: &str) {
    let hash = id.strip_prefix('$').unwrap();
    match version {
        1 | 2 => assert!(hash.ends_with(":localhost"), "v{version}: {id}"),
        _ => {
            assert_eq!(hash.len(), 43, "v{version}: unpadded base64 of a SHA-256: {id}");
            assert!(!hash.contains(':'), "v{version}: {id}");
            if version >= 4 {
                assert!(!hash.contains('+') && !hash.contains('/'), "v{version}: URL-safe: {id}");
            } else {
                assert!(!hash.contains('-') && !hash.contains('_'), "v{version}: standard base64: {id}");
            }
        }
    }
}

async fn a_room_of_every_version(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let since = bob.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let mut rooms = Vec::new();
    for version in 1..=12u32 {
        let room = alice.create_room(json!({"preset": "private_chat", "room_version": version.to_string()})).await;
        assert_eq!(room.ends_with(":localhost"), version < 12, "v{version}: {room}");
        alice.post(&room_path(&room, "/invite"), json!({"user_id": "@bob:localhost"})).await.ok();
        bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
        let hello = say(&alice, &room, &format!("hello v{version}")).await;
        assert_event_id_shape(version, &hello);
        let secret = say(&bob, &room, "secret").await;
        let redaction =
            alice.put(&room_path(&room, &format!("/redact/{}/r{version}", enc(&secret))), json!({})).await.ok();
        assert_event_id_shape(version, redaction["event_id"].as_str().unwrap());
        let stripped = bob.get(&room_path(&room, &format!("/event/{}", enc(&secret)))).await.ok();
        assert_eq!(stripped["content"], json!({}), "v{version}");
        let create = bob.get(&room_path(&room, "/state/m.room.create")).await.ok();
        assert_eq!(create["room_version"], version.to_string());
        if version == 12 {
            let create_ev = bob.get(&room_path(&room, "/state/m.room.create/?format=event")).await.ok();
            let id = create_ev["event_id"].as_str().map(|e| e.trim_start_matches('$').to_owned());
            assert_eq!(
                id.map(|h| format!("!{h}")).as_deref(),
                Some(room.as_str()),
                "v12 rooms are named by their create event"
            );
        }
        rooms.push((version, room));
    }
    // Bob's sync carries every room with its message.
    let mut since = since;
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..30 {
        if seen.len() == rooms.len() {
            break;
        }
        let body = bob.sync(Some(&since), None, 10_000).await;
        for (version, room) in &rooms {
            if timeline_bodies(&body, room).contains(&format!("hello v{version}")) && !seen.contains(room) {
                seen.push(room.clone());
            }
        }
        since = body["next_batch"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen.len(), rooms.len(), "every room's message reached Bob's sync");
}

async fn upgrades_across_event_id_formats(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let old = alice.create_room(json!({"preset": "public_chat", "room_alias_name": "hall", "room_version": "1"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&old)), json!({})).await.ok();
    alice.put(&room_path(&old, "/state/m.room.topic"), json!({"topic": "kept"})).await.ok();
    // Bob's own settings for the room: a tag, a push rule and a direct-chat entry.
    let bob_path = |rest: &str| format!("/_matrix/client/v3/user/{}{rest}", enc("@bob:localhost"));
    bob.put(&bob_path(&format!("/rooms/{}/tags/work", enc(&old))), json!({"order": 0.5})).await.ok();
    bob.put(&format!("/_matrix/client/v3/pushrules/global/room/{}", enc(&old)), json!({"actions": ["notify"]}))
        .await
        .ok();
    bob.put(&bob_path("/account_data/m.direct"), json!({"@alice:localhost": [old]})).await.ok();

    // 1 → 12.
    let upgrade = |room: &str, version: &str| (room_path(room, "/upgrade"), json!({"new_version": version}));
    let (path, body) = upgrade(&old, "12");
    let v12 = alice.post(&path, body).await.ok()["replacement_room"].as_str().unwrap().to_owned();
    assert!(!v12.contains(':'), "a v12 room ID is a hash: {v12}");
    let create = alice.get(&room_path(&v12, "/state/m.room.create")).await.ok();
    assert_eq!(create["predecessor"], json!({"room_id": old}));
    let pl = alice.get(&room_path(&v12, "/state/m.room.power_levels")).await.ok();
    assert!(pl["users"].get("@alice:localhost").is_none(), "the creator is not listed: {pl}");
    assert_eq!(alice.get(&room_path(&v12, "/state/m.room.topic")).await.ok()["topic"], "kept");
    let tombstone = bob.get(&room_path(&old, "/state/m.room.tombstone")).await.ok();
    assert_eq!(tombstone["replacement_room"], v12.as_str());
    let alias = bob.get(&format!("/_matrix/client/v3/directory/room/{}", enc("#hall:localhost"))).await.ok();
    assert_eq!(alias["room_id"], v12.as_str());

    // Bob's settings followed him.
    let tags = bob.get(&bob_path(&format!("/rooms/{}/tags", enc(&v12)))).await.ok();
    assert_eq!(tags["tags"], json!({"work": {"order": 0.5}}));
    let rule = bob.get(&format!("/_matrix/client/v3/pushrules/global/room/{}", enc(&v12))).await.ok();
    assert_eq!(rule["actions"], json!(["notify"]));
    let direct = bob.get(&bob_path("/account_data/m.direct")).await.ok();
    assert_eq!(direct["@alice:localhost"], json!([old, v12]));

    bob.post(&format!("/_matrix/client/v3/join/{}", enc("#hall:localhost")), json!({})).await.ok();
    say(&bob, &v12, "in twelve").await;

    // 12 → 10: back to server-named rooms; the create event cites the tombstone.
    let (path, body) = upgrade(&v12, "10");
    let v10 = alice.post(&path, body).await.ok()["replacement_room"].as_str().unwrap().to_owned();
    assert!(v10.ends_with(":localhost"));
    let tombstone = alice.get(&room_path(&v12, "/state/m.room.tombstone/?format=event")).await.ok()["event_id"].clone();
    let create = alice.get(&room_path(&v10, "/state/m.room.create")).await.ok();
    assert_eq!(create["predecessor"], json!({"room_id": v12, "event_id": tombstone}));
    assert_eq!(create["creator"], "@alice:localhost");
    alice.put(&room_path(&v10, "/state/m.room.name"), json!({"name": "ten"})).await.ok();
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&v10)), json!({})).await.ok();
    let hi = say(&bob, &v10, "in ten").await;
    let got: Value = alice.get(&room_path(&v10, &format!("/event/{}", enc(&hi)))).await.ok();
    assert_eq!(got["content"]["body"], "in ten");
}

/// The highlight count of `room` once `user`'s sync shows `want` of them (or what it showed last).
async fn highlights(client: &trellis_testkit::Client, room: &str, want: u64) -> Value {
    let mut since: Option<String> = None;
    let mut seen = Value::Null;
    for _ in 0..10 {
        let body = client.sync(since.as_deref(), None, 2_000).await;
        if let Some(count) = body["rooms"]["join"][room]["unread_notifications"].get("highlight_count") {
            seen = count.clone();
        }
        if seen == json!(want) {
            break;
        }
        since = body["next_batch"].as_str().map(str::to_owned);
    }
    seen
}

/// `@room` needs the `notifications.room` level; a v12 creator, never listed in the power
/// levels, outranks it.
async fn a_v12_creator_may_notify_the_room(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat", "room_version": "12"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    let everyone = json!({"msgtype": "m.text", "body": "@room lunch", "m.mentions": {"room": true}});
    bob.put(&room_path(&room, "/send/m.room.message/b1"), everyone.clone()).await.ok();
    alice.put(&room_path(&room, "/send/m.room.message/a1"), everyone).await.ok();
    assert_eq!(highlights(&bob, &room, 1).await, json!(1), "the creator's @room highlights");
    assert_eq!(highlights(&alice, &room, 0).await, json!(0), "Bob, at level 0, may not notify the room");
}
