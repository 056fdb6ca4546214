//! Push rules matched against one event for many users at once. A new message in a room of a
//! thousand members is evaluated a thousand times (by the notifier and by every woken
//! long-poll's unread count), and most of each user's rules are the same server-default rules
//! asking the same questions of the event. So:
//!
//! - the conditions of a rule that look at the event alone (not at the user's name, the member
//!   count or power levels, and not naming the user) form the rule's *gate*, answered once per
//!   event and shared by every rule and user with the same gate; a closed gate means the rule
//!   does not apply, and a rule that is all gate is decided by it;
//! - a rule that looks for a word in the body (keyword and user-name content rules, the
//!   display-name rule) first checks that the lower-cased body contains the lower-cased word
//!   at all, which is how the word-boundary match starts anyway, before running it.
//!
//! Every answer still comes from ruma's own matching of rules and conditions; only its reuse is
//! decided here.

use std::{
    collections::HashMap,
    ops::Deref,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU8, Ordering},
    },
};

use ruma::push::{AnyPushRuleRef, FlattenedJson, PushCondition, PushConditionRoomCtx, Ruleset};

/// Distinct gates shared per event; rules whose gate would be past this are matched in full.
const MAX_GATES: usize = 128;

/// A user's rules with, for each rule in evaluation order, how it may be shortened.
#[derive(Debug)]
pub struct CompiledRules {
    rules: Ruleset,
    shortcuts: Vec<Shortcut>,
}

#[derive(Debug, Default)]
struct Shortcut {
    /// A disabled rule never applies.
    disabled: bool,
    /// The shared gate: its index, its conditions, and whether it decides the rule alone.
    gate: Option<(usize, Vec<PushCondition>, bool)>,
    /// False unless the lower-cased body contains this (lower-cased, wildcard-free) word.
    word: Option<String>,
    /// False unless the lower-cased body contains the user's lower-cased display name.
    display_name: bool,
}

impl Deref for CompiledRules {
    type Target = Ruleset;

    fn deref(&self) -> &Ruleset {
        &self.rules
    }
}

impl CompiledRules {
    /// `rules`, the rules of `user`, prepared for matching; their gates are numbered in
    /// `gates` (the worker's), as are those of every rule matched against the same events.
    pub fn new(rules: Ruleset, user: &str, gates: &Gates) -> CompiledRules {
        let shortcuts = rules.iter().map(|rule| shortcut(rule, user, gates)).collect();
        CompiledRules { rules, shortcuts }
    }

    /// The first of the rules that applies to `event` for the user of `ctx`.
    pub async fn first_match<'a>(
        &'a self,
        event: &EventFacts,
        ctx: &PushConditionRoomCtx,
    ) -> Option<AnyPushRuleRef<'a>> {
        if event.sender.as_deref() == Some(ctx.user_id.as_str()) {
            // No rule applies to the user's own events.
            return None;
        }
        for (rule, cut) in self.rules.iter().zip(&self.shortcuts) {
            if cut.disabled {
                continue;
            }
            if let Some((index, conditions, decides)) = &cut.gate {
                let open = event.gate(*index, conditions, ctx).await;
                if !open {
                    continue;
                }
                if *decides {
                    return Some(rule);
                }
            }
            if cut.word.as_deref().is_some_and(|word| !event.body_contains(word)) {
                continue;
            }
            let name = &ctx.user_display_name;
            if cut.display_name && !name.contains(['*', '?']) && !event.body_contains(&name.to_lowercase()) {
                continue;
            }
            if rule.applies(&event.flat, ctx).await {
                return Some(rule);
            }
        }
        None
    }
}

/// How `rule` (one of `user`'s) may be shortened.
fn shortcut(rule: AnyPushRuleRef<'_>, user: &str, gates: &Gates) -> Shortcut {
    match rule {
        AnyPushRuleRef::Override(r) | AnyPushRuleRef::Underride(r) => {
            if !r.enabled {
                return Shortcut { disabled: true, ..Shortcut::default() };
            }
            #[allow(deprecated)] // the legacy display-name condition is still in the defaults
            let display_name = r.conditions.iter().any(|c| matches!(c, PushCondition::ContainsDisplayName));
            let shared: Vec<PushCondition> = r.conditions.iter().filter(|c| shareable(c, user)).cloned().collect();
            // These two rules are also switched off by `m.mentions` (the event decides, but
            // ruma's rule does it): they are never decided by their gate alone.
            let special = matches!(r.rule_id.as_str(), ".m.rule.roomnotif" | ".m.rule.contains_display_name");
            let decides = shared.len() == r.conditions.len() && !special;
            let gate = if shared.is_empty() { None } else { gates.index(&shared).map(|i| (i, shared, decides)) };
            Shortcut { gate, display_name, ..Shortcut::default() }
        }
        AnyPushRuleRef::Content(r) if !r.enabled => Shortcut { disabled: true, ..Shortcut::default() },
        AnyPushRuleRef::Content(r) if !r.pattern.contains(['*', '?']) => {
            Shortcut { word: Some(r.pattern.to_lowercase()), ..Shortcut::default() }
        }
        _ => Shortcut::default(),
    }
}

/// Whether `condition` looks at the event alone and does not name `user` (a condition naming
/// the user is cheap and never shared by two users).
fn shareable(condition: &PushCondition, user: &str) -> bool {
    let event_only = matches!(
        condition,
        PushCondition::EventMatch(_) | PushCondition::EventPropertyIs(_) | PushCondition::EventPropertyContains(_)
    );
    event_only && serde_json::to_string(condition).is_ok_and(|json| !json.contains(user))
}

/// The gates of one worker's compiled rules, each numbered once: the index of a gate is its
/// slot in the [`EventFacts`] of every event those rules are matched against.
#[derive(Debug, Default)]
pub struct Gates {
    known: Mutex<HashMap<String, usize>>,
}

impl Gates {
    /// The index of a gate (its conditions), or `None` once `MAX_GATES` are taken.
    fn index(&self, conditions: &[PushCondition]) -> Option<usize> {
        let key = serde_json::to_string(conditions).ok()?;
        let mut gates = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = gates.get(&key) {
            return Some(*i);
        }
        let next = gates.len();
        (next < MAX_GATES).then(|| *gates.entry(key).or_insert(next))
    }
}

/// One event as the rules see it, with the gate answers shared between the users it is
/// matched for.
#[derive(Debug)]
pub struct EventFacts {
    flat: FlattenedJson,
    sender: Option<String>,
    /// `content.body`, lower-cased as the word match lower-cases it.
    lower_body: Option<String>,
    /// Per gate: 0 not yet answered, 1 closed, 2 open.
    gates: Box<[AtomicU8]>,
}

impl EventFacts {
    pub fn new(flat: FlattenedJson) -> EventFacts {
        let sender = flat.get_str("sender").map(str::to_owned);
        let lower_body = flat.get_str("content.body").map(str::to_lowercase);
        let gates = (0..MAX_GATES).map(|_| AtomicU8::new(0)).collect();
        EventFacts { flat, sender, lower_body, gates }
    }

    /// Whether every one of `conditions` (gate `index`) holds for this event.
    async fn gate(&self, index: usize, conditions: &[PushCondition], ctx: &PushConditionRoomCtx) -> bool {
        match self.gates[index].load(Ordering::Relaxed) {
            1 => return false,
            2 => return true,
            _ => {}
        }
        let mut open = true;
        for condition in conditions {
            if !condition.applies(&self.flat, ctx).await {
                open = false;
                break;
            }
        }
        self.gates[index].store(if open { 2 } else { 1 }, Ordering::Relaxed);
        open
    }

    /// Whether the body contains `word` (both lower-cased). The word-boundary match finds the
    /// word in the lower-cased body first, so `false` here means it cannot match; without a
    /// body, no body rule matches.
    fn body_contains(&self, word: &str) -> bool {
        self.lower_body.as_deref().is_some_and(|body| body.contains(word))
    }
}

#[cfg(test)]
mod tests {
    use ruma::{OwnedUserId, UInt, owned_room_id};
    use serde_json::{Value, json};

    use super::*;
    use crate::push::{eval, rules};

    /// The first rule ruma itself finds, asked rule by rule.
    async fn reference(rules: &Ruleset, ctx: &PushConditionRoomCtx, flat: &FlattenedJson) -> Option<String> {
        for rule in rules.iter() {
            if rule.applies(flat, ctx).await {
                return Some(rule.rule_id().to_owned());
            }
        }
        None
    }

    fn users() -> Vec<(Ruleset, PushConditionRoomCtx)> {
        let names = [
            ("@alice:x", "Alice"),
            ("@bob:x", "bob"),
            ("@carol:x", "Car*ol"),
            ("@dave:x", "ΟΔΟΣ"),
            ("@erin:x", "kelvin"),
            ("@frank:x", ""),
        ];
        let pl = eval::power_levels(&json!({"users": {"@alice:x": 100}, "notifications": {"room": 50}}));
        names
            .iter()
            .enumerate()
            .map(|(i, (id, name))| {
                let user: OwnedUserId = id.parse().unwrap();
                let mut rules = rules::defaults(&user);
                if i % 2 == 0 {
                    // Users' own rules: a keyword, a wildcard keyword, a room rule, a sender
                    // rule, an override on the room, a disabled default.
                    let extra = json!({
                        "content": [
                            {"rule_id": "lunch", "pattern": "Lunch", "enabled": true, "default": false, "actions": ["notify"]},
                            {"rule_id": "wild", "pattern": "fi*re", "enabled": true, "default": false, "actions": ["notify", {"set_tweak": "highlight"}]}
                        ],
                        "override": [
                            {"rule_id": "quiet-room", "enabled": true, "default": false, "actions": [],
                             "conditions": [{"kind": "event_match", "key": "room_id", "pattern": "!other:x"}]}
                        ],
                        "room": [{"rule_id": "!r:x", "enabled": i == 2, "default": false, "actions": []}],
                        "sender": [{"rule_id": "@bob:x", "enabled": true, "default": false, "actions": ["notify"]}]
                    });
                    let mut stored: Value = serde_json::to_value(&rules).unwrap();
                    for kind in ["content", "override", "room", "sender"] {
                        let mut list = extra[kind].as_array().unwrap().clone();
                        list.extend(stored[kind].as_array().cloned().unwrap_or_default());
                        stored[kind] = Value::Array(list);
                    }
                    rules = serde_json::from_value(stored).unwrap();
                }
                if i == 4 {
                    rules.set_enabled(ruma::push::RuleKind::Underride, ".m.rule.message", false).unwrap();
                }
                let members = UInt::from(if i == 1 { 2u32 } else { 7u32 });
                let ctx = PushConditionRoomCtx::new(owned_room_id!("!r:x"), members, user, (*name).to_owned())
                    .with_power_levels(pl.clone());
                (rules, ctx)
            })
            .collect()
    }

    fn events() -> Vec<String> {
        let msg = |sender: &str, content: Value| {
            eval::event_json("$e", "!r:x", sender, "m.room.message", None, &content.to_string())
        };
        let mut out = Vec::new();
        for sender in ["@alice:x", "@bob:x", "@zed:x"] {
            for body in [
                "hello",
                "hey ALICE, lunch?",
                "alice: hi",
                "bob",
                "car*ol and carxol",
                "Carol",
                "οδος",
                "ΟΔΟΣ",
                "\u{212A}elvin is here",
                "kelvin!",
                "@room fire drill",
                "fire fiiire fiore",
                "LUNCH",
                "",
                "dave_x",
                "erin, frank: ping",
            ] {
                out.push(msg(sender, json!({"msgtype": "m.text", "body": body})));
                out.push(msg(sender, json!({"msgtype": "m.notice", "body": body})));
                out.push(msg(
                    sender,
                    json!({"msgtype": "m.text", "body": body, "m.mentions": {"user_ids": ["@bob:x"]}}),
                ));
                out.push(msg(sender, json!({"msgtype": "m.text", "body": body, "m.mentions": {"room": true}})));
            }
            out.push(msg(sender, json!({"msgtype": "m.text"})));
            let edit = json!({"body": "* alice", "m.relates_to": {"rel_type": "m.replace", "event_id": "$p"}});
            out.push(msg(sender, edit));
            for kind in ["m.room.encrypted", "m.reaction", "m.call.invite", "m.room.server_acl"] {
                out.push(eval::event_json("$e", "!r:x", sender, kind, None, r#"{"body":"alice"}"#));
            }
            for target in ["@alice:x", "@bob:x", "@carol:x"] {
                let invite = r#"{"membership":"invite"}"#;
                out.push(eval::event_json("$e", "!r:x", sender, "m.room.member", Some(target), invite));
            }
            let tomb = r#"{"body":"moved","replacement_room":"!n:x"}"#;
            out.push(eval::event_json("$e", "!r:x", sender, "m.room.tombstone", Some(""), tomb));
        }
        out
    }

    #[tokio::test]
    async fn shared_answers_match_what_ruma_decides_alone() {
        let gates = Gates::default();
        let users: Vec<(CompiledRules, PushConditionRoomCtx, Ruleset)> = users()
            .into_iter()
            .map(|(rules, ctx)| (CompiledRules::new(rules.clone(), ctx.user_id.as_str(), &gates), ctx, rules))
            .collect();
        let mut matched = std::collections::BTreeSet::new();
        for event in events() {
            // One set of facts per event, shared by every user in turn (and twice over, so
            // later users read answers earlier ones left).
            let facts = eval::facts(&event).unwrap();
            for round in 0..2 {
                for (compiled, ctx, rules) in &users {
                    let flat = eval::facts(&event).unwrap().flat;
                    let expected = reference(rules, ctx, &flat).await;
                    let got = compiled.first_match(&facts, ctx).await.map(|r| r.rule_id().to_owned());
                    assert_eq!(got, expected, "round {round}, {} on {event}", ctx.user_id);
                    matched.extend(got);
                }
            }
        }
        // The cases reach the rules the shortcuts are about.
        for id in [
            ".m.rule.contains_display_name",
            ".m.rule.contains_user_name",
            ".m.rule.roomnotif",
            ".m.rule.is_user_mention",
            ".m.rule.suppress_notices",
            ".m.rule.invite_for_me",
            ".m.rule.message",
            ".m.rule.room_one_to_one",
            ".m.rule.encrypted",
            "lunch",
            "wild",
            "@bob:x",
        ] {
            assert!(matched.contains(id), "no case matched {id}: {matched:?}");
        }
    }
}
