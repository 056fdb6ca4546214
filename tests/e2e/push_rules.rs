//! Push rules as clients and SyTest edit them: room and sender rules named by anything (an
//! alias, a glob), the rules of one kind, placing with `before`/`after`, enabling, deleting,
//! and the answers to malformed paths and bodies.

use serde_json::{Value, json};
use trellis_testkit::{TestServer, enc};

both_modes!(rules_of_any_id_by_kind, malformed_paths_and_bodies);

const BASE: &str = "/_matrix/client/v3/pushrules/global";

fn ids(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap()).collect()
}

async fn rules_of_any_id_by_kind(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let notify = json!({"actions": ["notify"]});
    // Room rules by alias, sender rules by a user ID of another server: stored and listed.
    for (kind, id) in [("room", "#spam:example.com"), ("sender", "@bob:example.com")] {
        alice.put(&format!("{BASE}/{kind}/{}", enc(id)), notify.clone()).await.ok();
        let rule = alice.get(&format!("{BASE}/{kind}/{}", enc(id))).await.ok();
        assert_eq!(rule, json!({"rule_id": id, "actions": ["notify"], "enabled": true, "default": false}));
        assert_eq!(ids(&alice.get(&format!("{BASE}/{kind}/")).await.ok()), [id]);
        let global = alice.get(&format!("{BASE}/")).await.ok();
        assert_eq!(ids(&global[kind]), [id]);
        let all = alice.get("/_matrix/client/v3/pushrules/").await.ok();
        assert_eq!(ids(&all["global"][kind]), [id]);
    }
    // Every kind is listed, empty or not.
    assert!(alice.get(&format!("{BASE}/override/")).await.ok().as_array().unwrap().len() > 1);

    // New rules go first; `before` and `after` place them among the user's rules.
    let room = |id: &str| format!("{BASE}/room/{}", enc(id));
    alice.put(&room("#a:example.com"), notify.clone()).await.ok();
    alice.put(&room("#b:example.com"), notify.clone()).await.ok();
    alice.put(&format!("{}?after={}", room("#c:example.com"), enc("#b:example.com")), notify.clone()).await.ok();
    alice.put(&format!("{}?before={}", room("#d:example.com"), enc("#b:example.com")), notify.clone()).await.ok();
    let listed = alice.get(&format!("{BASE}/room/")).await.ok();
    assert_eq!(
        ids(&listed),
        ["#d:example.com", "#b:example.com", "#c:example.com", "#a:example.com", "#spam:example.com"]
    );
    alice
        .put(&format!("{}?before={}", room("#e:example.com"), enc("#nope:example.com")), notify.clone())
        .await
        .err(400, "M_INVALID_PARAM");

    // Disabled, given new actions, deleted.
    alice.put(&format!("{}/enabled", room("#a:example.com")), json!({"enabled": false})).await.ok();
    assert_eq!(alice.get(&format!("{}/enabled", room("#a:example.com"))).await.ok(), json!({"enabled": false}));
    alice.put(&format!("{}/actions", room("#a:example.com")), json!({"actions": ["dont_notify"]})).await.ok();
    assert_eq!(
        alice.get(&format!("{}/actions", room("#a:example.com"))).await.ok(),
        json!({"actions": ["dont_notify"]})
    );
    // Putting it again keeps it disabled.
    alice.put(&room("#a:example.com"), notify.clone()).await.ok();
    assert_eq!(alice.get(&room("#a:example.com")).await.ok()["enabled"], false);
    alice.request("DELETE", &room("#a:example.com"), None).await.ok();
    alice.get(&room("#a:example.com")).await.err(404, "M_NOT_FOUND");
    alice.request("DELETE", &room("#a:example.com"), None).await.err(404, "M_NOT_FOUND");
    alice.put(&format!("{}/enabled", room("#a:example.com")), json!({"enabled": true})).await.err(404, "M_NOT_FOUND");

    // A sync carries them in `m.push_rules`.
    let body = alice.sync(None, None, 0).await;
    let rules = body["account_data"]["events"].as_array().unwrap().iter().find(|e| e["type"] == "m.push_rules");
    let synced = &rules.expect("m.push_rules")["content"]["global"];
    assert_eq!(ids(&synced["room"]).len(), 4);
    assert_eq!(ids(&synced["sender"]), ["@bob:example.com"]);
}

async fn malformed_paths_and_bodies(server: TestServer) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let notify = json!({"actions": ["notify"]});
    let root = "/_matrix/client/v3/pushrules";
    // Paths (as Synapse answers them): a scope and a kind end with a slash when listed, a
    // rule needs a scope, a kind and an ID, and only `enabled` and `actions` are attributes.
    alice.get(root).await.err(404, "M_UNRECOGNIZED");
    for path in ["/global", "/global/room", "/not_a_scope/", "/global/override/.m.rule.master/not_an_attr"] {
        alice.get(&format!("{root}{path}")).await.err(400, "M_UNRECOGNIZED");
    }
    alice.get(&format!("{root}/global/not_a_kind/")).await.err(400, "M_INVALID_PARAM");
    alice.get(&format!("{root}/global/override/not_a_rule")).await.err(404, "M_NOT_FOUND");
    for path in
        ["/", "/not_a_scope/room/x", "/global", "/global/room", "/global/room/", "/global/override/x/not_an_attr"]
    {
        alice.put(&format!("{root}{path}"), notify.clone()).await.err(400, "M_UNRECOGNIZED");
    }
    alice.request("DELETE", &format!("{root}/global/room/"), None).await.err(400, "M_UNRECOGNIZED");
    // Rule IDs and bodies.
    alice.put(&format!("{BASE}/room/{}", enc("#fo\\o:example.com")), notify.clone()).await.err(400, "M_INVALID_PARAM");
    alice.put(&format!("{BASE}/room/{}", enc("a/b")), notify.clone()).await.err(400, "M_INVALID_PARAM");
    alice.put(&format!("{BASE}/room/.m.mine"), notify.clone()).await.err(400, "M_INVALID_PARAM");
    alice.put(&format!("{BASE}/not_a_kind/foo"), notify.clone()).await.err(400, "M_INVALID_PARAM");
    alice.put(&format!("{BASE}/room/x"), json!({})).await.err(400, "M_BAD_JSON");
    alice.put(&format!("{BASE}/room/x"), json!({"actions": ["not_an_action"]})).await.err(400, "M_BAD_JSON");
    alice.put(&format!("{BASE}/room/x"), json!({"actions": "notify"})).await.err(400, "M_BAD_JSON");
    alice.put(&format!("{BASE}/content/x"), notify.clone()).await.err(400, "M_BAD_JSON");
    alice
        .put(&format!("{BASE}/underride/x"), json!({"actions": ["notify"], "conditions": [{}]}))
        .await
        .err(400, "M_BAD_JSON");
    alice
        .put(&format!("{BASE}/override/.m.rule.master/enabled"), json!({"enabled": "no"}))
        .await
        .err(400, "M_BAD_JSON");
    // The legacy actions are accepted.
    alice.put(&format!("{BASE}/room/x"), json!({"actions": ["dont_notify", "coalesce"]})).await.ok();
}
