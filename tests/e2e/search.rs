//! `POST /search`: full-text search of room events by rank or recency, pages, highlights,
//! context, state and groupings — and never an event the searcher may not see.

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

use crate::rooms_support::{room_path, say};

both_modes!(
    search_finds_messages_names_and_topics,
    search_pages_through_every_result_once,
    search_returns_context_state_and_groups,
    search_never_returns_what_the_searcher_may_not_see,
    search_refuses_bad_input,
    search_hides_erased_users_from_later_joiners,
);

const SEARCH: &str = "/_matrix/client/v3/search";

async fn search(client: &Client, criteria: Value) -> Value {
    let reply = client.post(SEARCH, json!({"search_categories": {"room_events": criteria}})).await.ok();
    reply["search_categories"]["room_events"].clone()
}

fn result_bodies(found: &Value) -> Vec<String> {
    found["results"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["result"]["content"]["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

async fn search_finds_messages_names_and_topics(server: TestServer) {
    let alice = server.user("alice").await;
    let room = alice.create_room(json!({"name": "Gardening club", "topic": "Tomatoes and roses"})).await;
    say(&alice, &room, "the tomatoes are ripening").await;
    say(&alice, &room, "nothing to see").await;
    say(&alice, &room, "Tomato soup tonight").await;

    let found = search(&alice, json!({"search_term": "tomato", "order_by": "recent"})).await;
    assert_eq!(result_bodies(&found), ["Tomato soup tonight", "the tomatoes are ripening"], "{found}");
    assert_eq!(found["count"], 3, "the two messages and the topic: {found}");
    let highlights: Vec<&str> = found["highlights"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(highlights.contains(&"tomatoes") && highlights.contains(&"Tomato"), "{highlights:?}");
    let first = &found["results"][0];
    assert!(first["rank"].is_number() && first["result"]["room_id"] == room.as_str(), "{first}");

    let topics = search(&alice, json!({"search_term": "roses", "keys": ["content.topic"]})).await;
    assert_eq!(topics["results"][0]["result"]["type"], "m.room.topic", "{topics}");
    let names = search(&alice, json!({"search_term": "gardening", "keys": ["content.name"]})).await;
    assert_eq!(names["results"][0]["result"]["content"]["name"], "Gardening club", "{names}");
    let bodies_only = search(&alice, json!({"search_term": "gardening", "keys": ["content.body"]})).await;
    assert_eq!(bodies_only["count"], 0, "{bodies_only}");
    // Every word must match, each as a prefix.
    let both = search(&alice, json!({"search_term": "soup TOMA"})).await;
    assert_eq!(result_bodies(&both), ["Tomato soup tonight"]);
    // A redacted message is no longer found.
    let soup = found["results"][0]["result"]["event_id"].as_str().unwrap().to_owned();
    alice.put(&room_path(&room, &format!("/redact/{}/r1", enc(&soup))), json!({})).await.ok();
    let after = search(&alice, json!({"search_term": "soup"})).await;
    assert_eq!(after["count"], 0, "{after}");
}

async fn search_pages_through_every_result_once(server: TestServer) {
    let alice = server.user("alice").await;
    let room = alice.create_room(json!({})).await;
    for i in 0..7 {
        say(&alice, &room, &format!("lemon number {i}")).await;
    }
    for order in ["recent", "rank"] {
        let mut seen = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let path = match &next {
                Some(n) => format!("{SEARCH}?next_batch={}", enc(n)),
                None => SEARCH.to_owned(),
            };
            let criteria = json!({"search_term": "lemon", "order_by": order, "filter": {"limit": 3}});
            let reply = alice.post(&path, json!({"search_categories": {"room_events": criteria}})).await.ok();
            let found = &reply["search_categories"]["room_events"];
            assert!(found["results"].as_array().unwrap().len() <= 3, "{found}");
            seen.extend(result_bodies(found));
            match found["next_batch"].as_str() {
                Some(n) => next = Some(n.to_owned()),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..7).rev().map(|i| format!("lemon number {i}")).collect();
        if order == "rank" {
            seen.sort();
            expected.sort();
        }
        assert_eq!(seen, expected, "{order}: every result once");
    }
}

async fn search_returns_context_state_and_groups(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let one = alice.create_room(json!({"preset": "public_chat", "name": "One"})).await;
    let two = alice.create_room(json!({"preset": "public_chat"})).await;
    for room in [&one, &two] {
        bob.post(&format!("/_matrix/client/v3/join/{}", enc(room)), json!({})).await.ok();
    }
    say(&bob, &one, "before").await;
    say(&alice, &one, "apple in one").await;
    say(&bob, &one, "after").await;
    say(&bob, &two, "apple in two?").await;

    let found = search(
        &alice,
        json!({
            "search_term": "apple", "order_by": "recent", "include_state": true,
            "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": true},
            "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]},
        }),
    )
    .await;
    let hit = found["results"].as_array().unwrap().iter().find(|r| r["result"]["room_id"] == one.as_str()).unwrap();
    let context = &hit["context"];
    assert_eq!(context["events_before"][0]["content"]["body"], "before", "{context}");
    assert_eq!(context["events_after"][0]["content"]["body"], "after");
    assert!(context["start"].is_string() && context["end"].is_string());
    assert_eq!(context["profile_info"][&bob.user_id]["displayname"], "bob", "{context}");
    assert_eq!(context["profile_info"][&alice.user_id]["displayname"], "alice");
    let state = found["state"][&one].as_array().expect("state of the rooms with results");
    assert!(state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "One"));
    let by_room = &found["groups"]["room_id"];
    assert_eq!(by_room[&one]["results"].as_array().unwrap().len(), 1, "{by_room}");
    assert_eq!(by_room[&two]["order"], 0, "the most recent result's group comes first");
    assert_eq!(found["groups"]["sender"][&bob.user_id]["results"].as_array().unwrap().len(), 1);
    // Without `event_context`, no context.
    let plain = search(&alice, json!({"search_term": "apple"})).await;
    assert!(plain["results"][0].get("context").is_none(), "{plain}");
}

async fn search_never_returns_what_the_searcher_may_not_see(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let private = alice.create_room(json!({})).await;
    say(&alice, &private, "secret banana").await;
    assert_eq!(search(&bob, json!({"search_term": "banana"})).await["count"], 0, "not a member");

    // History visibility `joined`: what came before Bob's join stays hidden from him.
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    alice
        .put(&room_path(&room, "/state/m.room.history_visibility/"), json!({"history_visibility": "joined"}))
        .await
        .ok();
    say(&alice, &room, "early banana").await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    say(&alice, &room, "joined banana").await;
    let found = search(&bob, json!({"search_term": "banana"})).await;
    assert_eq!(result_bodies(&found), ["joined banana"], "{found}");
    // Nor after he leaves.
    bob.post(&room_path(&room, "/leave"), json!({})).await.ok();
    say(&alice, &room, "late banana").await;
    let found = search(&bob, json!({"search_term": "banana", "order_by": "recent"})).await;
    assert_eq!(result_bodies(&found), ["joined banana"], "{found}");
    let found = search(&alice, json!({"search_term": "banana", "filter": {"rooms": [private]}})).await;
    assert_eq!(result_bodies(&found), ["secret banana"], "the filter's rooms narrow the search");

    // A self-destructed message is found by no one, its sender included.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let gone = json!({"msgtype": "m.text", "body": "fleeting kiwi", "org.matrix.self_destruct_after": now - 1});
    alice.put(&room_path(&room, "/send/m.room.message/sd1"), gone).await.ok();
    assert_eq!(search(&alice, json!({"search_term": "kiwi"})).await["results"], Value::Null);
}

async fn search_hides_erased_users_from_later_joiners(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    say(&alice, &room, "mango secrets").await;
    carol.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    assert_eq!(result_bodies(&search(&carol, json!({"search_term": "mango"})).await), ["mango secrets"]);

    let path = "/_matrix/client/v3/account/deactivate";
    let challenge = alice.post(path, json!({"erase": true})).await;
    let auth = json!({"type": "m.login.password", "session": challenge.body["session"],
                      "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": "pw"});
    alice.post(path, json!({"erase": true, "auth": auth})).await.ok();
    // Bob was there and still finds it; Carol joined later and no longer does.
    assert_eq!(result_bodies(&search(&bob, json!({"search_term": "mango"})).await), ["mango secrets"]);
    assert_eq!(search(&carol, json!({"search_term": "mango"})).await["results"], Value::Null);
}

async fn search_refuses_bad_input(server: TestServer) {
    let alice = server.user("alice").await;
    let criteria = |c: Value| json!({"search_categories": {"room_events": c}});
    alice.post(SEARCH, criteria(json!({"search_term": "x", "order_by": "sideways"}))).await.err(400, "M_INVALID_PARAM");
    alice
        .post(SEARCH, criteria(json!({"search_term": "x", "keys": ["content.nope"]})))
        .await
        .err(400, "M_INVALID_PARAM");
    alice
        .post(SEARCH, criteria(json!({"search_term": "x", "groupings": {"group_by": [{"key": "type"}]}})))
        .await
        .err(400, "M_INVALID_PARAM");
    alice.post(SEARCH, criteria(json!({"keys": ["content.body"]}))).await.err(400, "M_BAD_JSON");
    alice
        .post(&format!("{SEARCH}?next_batch=garbage"), criteria(json!({"search_term": "x"})))
        .await
        .err(400, "M_INVALID_PARAM");
    alice.post(SEARCH, json!({"search_categories": {"room_events": {"search_term": 5}}})).await.err(400, "M_BAD_JSON");
    server.client().post(SEARCH, criteria(json!({"search_term": "x"}))).await.err(401, "M_MISSING_TOKEN");
    // A term without words finds nothing (and is no error).
    let empty = alice.post(SEARCH, criteria(json!({"search_term": "!!!"}))).await.ok();
    assert!(empty["search_categories"].is_object(), "{empty}");
}
