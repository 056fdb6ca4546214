//! Contract tests of a sync worker, local and over gRPC: push rules of any ID and their errors,
//! ignored users, room summaries, membership changes of a gappy lazy-loaded sync, and the
//! federation event format.

use serde_json::{Value, json};
use trellis_core::ErrorCode;
use trellis_proto::{rooms::*, sync::*};

mod common;

use common::*;

trellis_testkit::contract!(
    setup = crate::common::env;
    push_rules_of_any_id_by_kind,
    ignored_users_are_left_out,
    summaries_and_gappy_lazy_members,
    federation_format_has_event_ids,
);

const CAROL: &str = "@carol:localhost";

async fn rules(env: &Env, op: &str, kind: &str, id: &str, body: Value) -> trellis_core::Result<Value> {
    rules_at(env, op, kind, id, body, "", "").await
}

/// A push-rule request as a client makes it (`op` on rule `id` of `kind`, with `body`), made
/// through the typed operation; its answer as clients see it.
async fn rules_at(
    env: &Env,
    op: &str,
    kind: &str,
    id: &str,
    body: Value,
    before: &str,
    after: &str,
) -> trellis_core::Result<Value> {
    let (requester, user_id) = (ALICE.to_owned(), ALICE.to_owned());
    let one = || PushRuleRequest {
        requester: requester.clone(),
        user_id: user_id.clone(),
        kind: kind.into(),
        rule_id: id.into(),
    };
    match op {
        "get" if id.is_empty() => {
            let ask = GetPushRulesRequest { requester: requester.clone(), user_id: user_id.clone(), kind: kind.into() };
            let all = env.sync.get_push_rules(ask).await?;
            let list = match kind {
                "override" => all.override_rules,
                "content" => all.content,
                "room" => all.room,
                "sender" => all.sender,
                _ => all.underride,
            };
            Ok(Value::Array(list.iter().map(|r| rule_json(kind, r)).collect()))
        }
        "get" => Ok(rule_json(kind, &env.sync.get_push_rule(one()).await?)),
        "put" => {
            let field = |name: &str| body.get(name).map(Value::to_string);
            let put = SetPushRuleRequest {
                requester: requester.clone(),
                user_id: user_id.clone(),
                kind: kind.into(),
                rule_id: id.into(),
                before: before.into(),
                after: after.into(),
                actions: field("actions"),
                conditions: field("conditions"),
                pattern: body["pattern"].as_str().map(Into::into),
            };
            env.sync.set_push_rule(put).await.map(|_| json!({}))
        }
        "delete" => env.sync.delete_push_rule(one()).await.map(|_| json!({})),
        "set_enabled" => {
            let enabled = body["enabled"].as_bool().expect("a boolean");
            let set = SetPushRuleEnabledRequest { requester, user_id, kind: kind.into(), rule_id: id.into(), enabled };
            env.sync.set_push_rule_enabled(set).await.map(|_| json!({}))
        }
        other => panic!("no push-rule operation {other}"),
    }
}

/// A typed rule as clients see it.
fn rule_json(kind: &str, rule: &PushRule) -> Value {
    let each = |list: &[String]| list.iter().map(|a| serde_json::from_str(a).unwrap()).collect::<Vec<Value>>();
    let mut out = json!({"rule_id": rule.rule_id, "default": rule.default, "enabled": rule.enabled,
                         "actions": each(&rule.actions)});
    if matches!(kind, "override" | "underride") {
        out["conditions"] = json!(each(&rule.conditions));
    }
    if let Some(pattern) = &rule.pattern {
        out["pattern"] = json!(pattern);
    }
    out
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap()).collect()
}

async fn push_rules_of_any_id_by_kind(env: Env) {
    let notify = json!({"actions": ["notify"]});
    rules(&env, "put", "room", "#a:example.com", notify.clone()).await.unwrap();
    rules(&env, "put", "room", "#b:example.com", notify.clone()).await.unwrap();
    rules_at(&env, "put", "room", "#c:example.com", notify.clone(), "", "#a:example.com").await.unwrap();
    rules(&env, "put", "sender", "@*:example.com", notify.clone()).await.unwrap();
    let room = rules(&env, "get", "room", "", json!({})).await.unwrap();
    assert_eq!(ids(&room), ["#b:example.com", "#a:example.com", "#c:example.com"]);
    assert_eq!(ids(&rules(&env, "get", "sender", "", json!({})).await.unwrap()), ["@*:example.com"]);
    rules(&env, "set_enabled", "room", "#a:example.com", json!({"enabled": false})).await.unwrap();
    let a = rules(&env, "get", "room", "#a:example.com", json!({})).await.unwrap();
    assert_eq!(a, json!({"rule_id": "#a:example.com", "actions": ["notify"], "enabled": false, "default": false}));
    rules(&env, "delete", "room", "#b:example.com", json!({})).await.unwrap();
    let err = rules(&env, "get", "room", "#b:example.com", json!({})).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::NotFound, 404));

    let refused = [
        ("room", "a\\b", json!({"actions": ["notify"]}), ErrorCode::InvalidParam),
        ("room", ".m.mine", json!({"actions": ["notify"]}), ErrorCode::InvalidParam),
        ("room", "x", json!({"actions": ["not_an_action"]}), ErrorCode::BadJson),
        ("room", "x", json!({}), ErrorCode::BadJson),
        ("bogus", "x", json!({"actions": []}), ErrorCode::InvalidParam),
    ];
    for (kind, id, body, code) in refused {
        let err = rules(&env, "put", kind, id, body.clone()).await.unwrap_err();
        assert_eq!((err.code(), err.status()), (code, 400), "{kind} {id} {body}");
    }
    let err = rules_at(&env, "put", "room", "#d:example.com", notify, "#zz:example.com", "").await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::InvalidParam, 400));
}

async fn set_account_data(env: &Env, user: &str, kind: &str, content: Value) {
    env.sync
        .set_account_data(SetAccountDataRequest {
            requester: user.into(),
            user_id: user.into(),
            room_id: String::new(),
            data_type: kind.into(),
            content_json: content.to_string(),
        })
        .await
        .unwrap();
}

async fn send(env: &Env, sender: &str, room: &str, body: &str) {
    env.rooms
        .send_event(SendEventRequest {
            sender: sender.into(),
            device_id: "DEV".into(),
            room_id: room.into(),
            event_type: "m.room.message".into(),
            state_key: None,
            content_json: json!({"msgtype": "m.text", "body": body}).to_string(),
            txn_id: Some(format!("txn-{sender}-{body}")),
            origin_server_ts: None,
        })
        .await
        .unwrap();
}

async fn ignored_users_are_left_out(env: Env) {
    let room = create_room(&env, "public_chat").await;
    act(&env, BOB, &room, MembershipAction::Join, None).await;
    set_account_data(&env, ALICE, "m.ignored_user_list", json!({"ignored_users": {BOB: {}}})).await;
    send(&env, BOB, &room, "from bob").await;
    say(&env, &room, "from alice").await;
    let body = sync(&env, ALICE, None, None, 0).await;
    assert_eq!(timeline_bodies(&body, &room), ["from alice"]);
    let since = body["next_batch"].as_str().unwrap().to_owned();
    // An invite from bob is not shown.
    let bobs = env
        .rooms
        .create_room(CreateRoomRequest { sender: BOB.into(), preset: "private_chat".into(), ..Default::default() })
        .await
        .unwrap()
        .room_id;
    act(&env, BOB, &bobs, MembershipAction::Invite, Some(ALICE)).await;
    send(&env, BOB, &room, "bob again").await;
    say(&env, &room, "alice again").await;
    let body = sync(&env, ALICE, Some(&since), None, 0).await;
    assert_eq!(timeline_bodies(&body, &room), ["alice again"]);
    assert!(body["rooms"]["invite"].get(&bobs).is_none(), "{body}");
    assert!(sync(&env, ALICE, None, None, 0).await["rooms"]["invite"].get(&bobs).is_none());
}

fn members(body: &Value, room: &str) -> Vec<String> {
    let mut out: Vec<String> = body["rooms"]["join"][room]["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| format!("{} {}", e["state_key"].as_str().unwrap(), e["content"]["membership"].as_str().unwrap()))
        .collect();
    out.sort();
    out
}

async fn summaries_and_gappy_lazy_members(env: Env) {
    let named = env
        .rooms
        .create_room(CreateRoomRequest {
            sender: ALICE.into(),
            preset: "public_chat".into(),
            name: Some("Named".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .room_id;
    act(&env, BOB, &named, MembershipAction::Join, None).await;
    act(&env, CAROL, &named, MembershipAction::Join, None).await;
    let lazy = json!({"room": {"state": {"lazy_load_members": true}, "timeline": {"limit": 1}}});
    let body = sync(&env, ALICE, None, Some(lazy.clone()), 0).await;
    assert_eq!(
        body["rooms"]["join"][&named]["summary"],
        json!({"m.joined_member_count": 3, "m.invited_member_count": 0}),
        "no heroes for a named room"
    );
    let since = body["next_batch"].as_str().unwrap().to_owned();
    act(&env, CAROL, &named, MembershipAction::Leave, None).await;
    say(&env, &named, "one").await;
    say(&env, &named, "two").await;
    let body = sync(&env, ALICE, Some(&since), Some(lazy), 0).await;
    assert_eq!(body["rooms"]["join"][&named]["timeline"]["limited"], true);
    assert_eq!(members(&body, &named), [format!("{CAROL} leave")], "the gap's leave: {body}");
    assert_eq!(body["rooms"]["join"][&named]["summary"]["m.joined_member_count"], 2);
}

async fn federation_format_has_event_ids(env: Env) {
    let room = create_room(&env, "private_chat").await;
    let sent = say(&env, &room, "hello").await;
    let body = sync(&env, ALICE, None, Some(json!({"event_format": "federation"})), 0).await;
    let timeline = body["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    let pdu = timeline.iter().find(|e| e["event_id"] == sent.as_str()).unwrap_or_else(|| panic!("{body}"));
    assert!(pdu["signatures"].is_object() && pdu["hashes"].is_object(), "{pdu}");
}
