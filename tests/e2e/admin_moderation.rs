//! Synapse's shadow-ban and rate-limit override admin API
//! (`/_synapse/admin/v1/users/{userId}/shadow_ban|override_ratelimit`): a shadow-banned user
//! gets successful answers (with event IDs) for what it sends, invites and types, but nobody
//! else sees any of it until the ban is lifted; an override replaces the user's message limit
//! (0 and 0: no limit at all) at once, and its removal restores the configured one. Only
//! admins; bad input refused with Synapse's errors.

use serde_json::{Value, json};
use trellis_testkit::{Config, Rule, TestServer, enc};

use super::admin_users::admin;

both_modes!(only_admins_moderate_and_bad_input_is_refused, a_shadow_banned_user_reaches_nobody);
mod limited {
    use super::*;
    both_modes!(configured strict; overrides_replace_the_message_limit);
}

const V3: &str = "/_matrix/client/v3";

fn shadow_ban(user: &str) -> String {
    format!("/_synapse/admin/v1/users/{}/shadow_ban", enc(user))
}

fn override_path(user: &str) -> String {
    format!("/_synapse/admin/v1/users/{}/override_ratelimit", enc(user))
}

fn strict(c: &mut Config) {
    c.rate_limits.enabled = true;
    c.rate_limits.message = Rule::new(0.01, 3);
    // Set-up (registration, rooms, joins) is not what is limited here.
    c.rate_limits.register = Rule::new(100.0, 100);
    c.rate_limits.join = Rule::new(100.0, 100);
}

async fn only_admins_moderate_and_bad_input_is_refused(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let carol = "@carol:localhost";
    server.user("carol").await;

    // Anyone else is refused.
    bob.post(&shadow_ban(carol), json!({})).await.err(403, "M_FORBIDDEN");
    bob.request("DELETE", &shadow_ban(carol), None).await.err(403, "M_FORBIDDEN");
    bob.get(&override_path(carol)).await.err(403, "M_FORBIDDEN");
    bob.post(&override_path(carol), json!({"messages_per_second": 0})).await.err(403, "M_FORBIDDEN");
    bob.request("DELETE", &override_path(carol), None).await.err(403, "M_FORBIDDEN");
    server.client().post(&shadow_ban(carol), json!({})).await.err(401, "M_MISSING_TOKEN");

    // Another server's user, an unknown one.
    alice.post(&shadow_ban("@carol:elsewhere"), json!({})).await.err(400, "M_INVALID_PARAM");
    alice.post(&shadow_ban("@nobody:localhost"), json!({})).await.err(404, "M_NOT_FOUND");
    alice.get(&override_path("@carol:elsewhere")).await.err(400, "M_INVALID_PARAM");
    alice.get(&override_path("@nobody:localhost")).await.err(404, "M_NOT_FOUND");
    alice.post(&override_path("@nobody:localhost"), json!({})).await.err(404, "M_NOT_FOUND");
    // Counts must be whole numbers of at least 0; the body an object.
    for bad in [json!({"messages_per_second": -1}), json!({"burst_count": "10"}), json!({"messages_per_second": 1.5})] {
        alice.post(&override_path(carol), bad).await.err(400, "M_INVALID_PARAM");
    }
    alice.post(&override_path(carol), json!([1])).await.err(400, "M_BAD_JSON");
    alice.raw("POST", &override_path(carol), b"{not json".to_vec()).await.err(400, "M_NOT_JSON");

    // None yet: `{}`; set, read, removed.
    assert_eq!(alice.get(&override_path(carol)).await.ok(), json!({}));
    let set = alice.post(&override_path(carol), json!({"messages_per_second": 5})).await.ok();
    assert_eq!(set, json!({"messages_per_second": 5, "burst_count": 0}));
    assert_eq!(alice.get(&override_path(carol)).await.ok(), set);
    assert_eq!(alice.request("DELETE", &override_path(carol), None).await.ok(), json!({}));
    assert_eq!(alice.get(&override_path(carol)).await.ok(), json!({}));

    // The user query shows the shadow-ban.
    let details = format!("/_synapse/admin/v2/users/{}", enc(carol));
    assert_eq!(alice.get(&details).await.ok()["shadow_banned"], false);
    assert_eq!(alice.post(&shadow_ban(carol), json!({})).await.ok(), json!({}));
    assert_eq!(alice.get(&details).await.ok()["shadow_banned"], true);
    assert_eq!(alice.request("DELETE", &shadow_ban(carol), None).await.ok(), json!({}));
    assert_eq!(alice.get(&details).await.ok()["shadow_banned"], false);
}

/// The events of `room` in `sync`'s timeline sent by `sender`.
fn sent_by(sync: &Value, room: &str, sender: &str) -> Vec<Value> {
    let events = sync["rooms"]["join"][room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    events.into_iter().filter(|e| e["sender"] == sender).collect()
}

async fn a_shadow_banned_user_reaches_nobody(server: TestServer) {
    let admin = admin(&server, "admin").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let dave = server.user("dave").await;
    let room = carol.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let own = bob.send_text(&room, "t0", "before the ban").await;
    let since = carol.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let dave_since = dave.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    admin.post(&shadow_ban("@bob:localhost"), json!({})).await.ok();

    // Everything seems to work for bob, with event IDs where the spec gives one.
    let sent = bob.send_text(&room, "t1", "you will never see this").await;
    assert!(sent.starts_with('$'), "{sent}");
    let topic = bob.put(&format!("{V3}/rooms/{}/state/m.room.topic/", enc(&room)), json!({"topic": "spam"})).await.ok();
    assert!(topic["event_id"].as_str().unwrap().starts_with('$'), "{topic}");
    let redacted = bob.put(&format!("{V3}/rooms/{}/redact/{}/t2", enc(&room), enc(&own)), json!({})).await.ok();
    assert!(redacted["event_id"].as_str().unwrap().starts_with('$'), "{redacted}");
    bob.post(&format!("{V3}/rooms/{}/invite", enc(&room)), json!({"user_id": "@dave:localhost"})).await.ok();
    let typing = format!("{V3}/rooms/{}/typing/{}", enc(&room), enc("@bob:localhost"));
    bob.put(&typing, json!({"typing": true, "timeout": 30000})).await.ok();
    let dm = bob.create_room(json!({"invite": ["@dave:localhost"], "is_direct": true})).await;

    // Nobody else sees any of it: carol's next message comes right after bob's first one.
    carol.send_text(&room, "c1", "marker").await;
    let synced = carol.sync(Some(&since), None, 0).await;
    assert_eq!(trellis_testkit::timeline_bodies(&synced, &room), vec!["marker"], "{synced}");
    assert!(sent_by(&synced, &room, "@bob:localhost").is_empty(), "{synced}");
    let typing_now = &synced["rooms"]["join"][&room]["ephemeral"]["events"];
    assert!(!typing_now.to_string().contains("@bob:localhost"), "{typing_now}");
    carol.get(&format!("{V3}/rooms/{}/event/{}", enc(&room), enc(&sent))).await.err(404, "M_NOT_FOUND");
    let still = carol.get(&format!("{V3}/rooms/{}/event/{}", enc(&room), enc(&own))).await.ok();
    assert_eq!(still["content"]["body"], "before the ban", "not redacted: {still}");
    let state = carol.get(&format!("{V3}/rooms/{}/state/m.room.topic/", enc(&room))).await;
    assert_ne!(state.status, 200, "{}", state.body);
    // Dave was invited twice, and has no invite.
    let dave_synced = dave.sync(Some(&dave_since), None, 0).await;
    assert!(dave_synced["rooms"]["invite"].get(&room).is_none(), "{dave_synced}");
    assert!(dave_synced["rooms"]["invite"].get(&dm).is_none(), "{dave_synced}");

    // Lifted: bob reaches the room again.
    admin.request("DELETE", &shadow_ban("@bob:localhost"), None).await.ok();
    let after = carol.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    bob.send_text(&room, "t3", "back").await;
    let synced = carol.sync(Some(&after), None, 0).await;
    assert_eq!(trellis_testkit::timeline_bodies(&synced, &room), vec!["back"], "{synced}");
}

async fn overrides_replace_the_message_limit(server: TestServer) {
    let admin = admin(&server, "admin").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = admin.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    carol.join(&room).await;
    let send = |who: &trellis_testkit::Client, txn: String| {
        let path = format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(&room));
        let who = who.clone();
        async move { who.put(&path, json!({"msgtype": "m.text", "body": "x"})).await }
    };

    // Exempt: bob sends twice the burst; carol, without an override, is stopped after it.
    let exempt = json!({"messages_per_second": 0, "burst_count": 0});
    assert_eq!(admin.post(&override_path("@bob:localhost"), exempt.clone()).await.ok(), exempt);
    for i in 0..6 {
        send(&bob, format!("b{i}")).await.ok();
    }
    for i in 0..3 {
        send(&carol, format!("c{i}")).await.ok();
    }
    send(&carol, "c3".into()).await.err(429, "M_LIMIT_EXCEEDED");

    // An override with a rate replaces the rule at once, spent budget or not.
    admin.post(&override_path("@carol:localhost"), json!({"messages_per_second": 1, "burst_count": 5})).await.ok();
    for i in 4..9 {
        send(&carol, format!("c{i}")).await.ok();
    }

    // Removed: the configured limit applies to bob again.
    admin.request("DELETE", &override_path("@bob:localhost"), None).await.ok();
    for i in 6..9 {
        send(&bob, format!("b{i}")).await.ok();
    }
    send(&bob, "b9".into()).await.err(429, "M_LIMIT_EXCEEDED");
}
