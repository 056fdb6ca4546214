//! Application-service registrations: the YAML files `appservices.registration_files` lists,
//! read with ruma's `Registration` type and checked when a process starts (every process
//! reads the same files), with their namespaces compiled for the questions the services ask:
//! whose token is this, may it act as this user, who may register or take this alias, and
//! which events concern which appservice.

use std::{collections::HashSet, path::Path, sync::Arc};

use regex::Regex;
use ruma::api::appservice::{Namespace, Registration};

/// One namespace regex, anchored as Synapse anchors it (a full match of the ID).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub regex: Regex,
    pub exclusive: bool,
}

/// A registered appservice with its namespaces compiled.
#[derive(Debug, Clone)]
pub struct Appservice {
    pub registration: Registration,
    /// `@sender_localpart:server_name`.
    pub sender: String,
    pub users: Vec<Pattern>,
    pub aliases: Vec<Pattern>,
    pub rooms: Vec<Pattern>,
    /// Typing, receipts and presence go into its transactions: `receive_ephemeral` (or
    /// MSC2409's `de.sorunome.msc2409.push_ephemeral`).
    pub ephemeral: bool,
    /// To-device messages for its users' devices go into its transactions (MSC4203, asked
    /// for with MSC3202's `org.matrix.msc3202: true`, as bridges with appservice-side
    /// encryption write it).
    pub to_device: bool,
    /// Its requests, and those of the users it masquerades as, are rate limited (the
    /// default; `rate_limited: false` exempts them).
    pub rate_limited: bool,
}

impl Appservice {
    pub fn id(&self) -> &str {
        &self.registration.id
    }

    /// The user is the appservice's sender or in one of its user namespaces.
    pub fn is_interested_in_user(&self, user_id: &str) -> bool {
        user_id == self.sender || matches(&self.users, user_id, false)
    }

    /// The user is in one of its exclusive user namespaces.
    pub fn claims_user(&self, user_id: &str) -> bool {
        matches(&self.users, user_id, true)
    }

    pub fn is_interested_in_alias(&self, alias: &str) -> bool {
        matches(&self.aliases, alias, false)
    }

    pub fn claims_alias(&self, alias: &str) -> bool {
        matches(&self.aliases, alias, true)
    }

    pub fn is_interested_in_room(&self, room_id: &str) -> bool {
        matches(&self.rooms, room_id, false)
    }

    /// Whether the appservice declares this third-party protocol.
    pub fn has_protocol(&self, protocol: &str) -> bool {
        self.registration.protocols.as_ref().is_some_and(|p| p.iter().any(|p| p == protocol))
    }
}

fn matches(patterns: &[Pattern], id: &str, exclusive_only: bool) -> bool {
    patterns.iter().any(|p| (!exclusive_only || p.exclusive) && p.regex.is_match(id))
}

/// Every configured appservice (empty when none is).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    list: Arc<Vec<Appservice>>,
}

impl Registry {
    /// Reads and checks `files`; the error names the file and what is wrong with it.
    pub fn load(files: &[impl AsRef<Path>], server_name: &str) -> Result<Registry, String> {
        let mut list = Vec::new();
        for file in files {
            let file = file.as_ref();
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("appservice registration {}: cannot read it: {e}", file.display()))?;
            let parsed = parse(&text).map_err(|e| format!("appservice registration {}: {e}", file.display()))?;
            list.push(parsed);
        }
        let (registrations, extras): (Vec<_>, Vec<_>) = list.into_iter().unzip();
        let mut registry = Registry::from_registrations(registrations, server_name)?;
        let appservices = Arc::make_mut(&mut registry.list);
        for (appservice, (push_ephemeral, to_device)) in appservices.iter_mut().zip(extras) {
            appservice.ephemeral |= push_ephemeral;
            appservice.to_device = to_device;
        }
        Ok(registry)
    }

    /// Checks registrations already parsed (tests build them in code).
    pub fn from_registrations(registrations: Vec<Registration>, server_name: &str) -> Result<Registry, String> {
        let (mut ids, mut tokens) = (HashSet::new(), HashSet::new());
        let mut list = Vec::new();
        for r in registrations {
            let name = format!("appservice {:?}", r.id);
            if r.id.is_empty() {
                return Err("an appservice registration has an empty id".into());
            }
            if !ids.insert(r.id.clone()) {
                return Err(format!("{name}: another registration has the same id"));
            }
            for (what, token) in [("as_token", &r.as_token), ("hs_token", &r.hs_token)] {
                if token.is_empty() {
                    return Err(format!("{name}: {what} is empty"));
                }
                if !tokens.insert(token.clone()) {
                    return Err(format!("{name}: its {what} is used by another registration (or as its other token)"));
                }
            }
            if let Some(url) = &r.url {
                let ok = url.starts_with("http://") || url.starts_with("https://");
                if !ok {
                    return Err(format!("{name}: url {url:?} is not an http:// or https:// URL"));
                }
            }
            let sender = format!("@{}:{server_name}", r.sender_localpart);
            if ruma::UserId::parse(&sender).is_err() || r.sender_localpart.is_empty() {
                return Err(format!("{name}: sender_localpart {:?} makes no valid user ID", r.sender_localpart));
            }
            let compile = |kind: &str, ns: &[Namespace]| -> Result<Vec<Pattern>, String> {
                ns.iter()
                    .map(|n| {
                        Regex::new(&format!("^(?:{})$", n.regex))
                            .map(|regex| Pattern { regex, exclusive: n.exclusive })
                            .map_err(|e| format!("{name}: {kind} namespace regex {:?} is invalid: {e}", n.regex))
                    })
                    .collect()
            };
            let users = compile("users", &r.namespaces.users)?;
            let aliases = compile("aliases", &r.namespaces.aliases)?;
            let rooms = compile("rooms", &r.namespaces.rooms)?;
            list.push(Appservice {
                sender,
                users,
                aliases,
                rooms,
                ephemeral: r.receive_ephemeral,
                to_device: false,
                rate_limited: r.rate_limited.unwrap_or(true),
                registration: r,
            });
        }
        Ok(Registry { list: Arc::new(list) })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn all(&self) -> &[Appservice] {
        &self.list
    }

    pub fn by_id(&self, id: &str) -> Option<&Appservice> {
        self.list.iter().find(|a| a.id() == id)
    }

    /// The appservice whose `as_token` this is.
    pub fn by_as_token(&self, token: &str) -> Option<&Appservice> {
        self.list.iter().find(|a| a.registration.as_token == token)
    }

    /// The appservices holding `user_id` in an exclusive namespace.
    pub fn user_claimed_by(&self, user_id: &str) -> Vec<&Appservice> {
        self.list.iter().filter(|a| a.claims_user(user_id)).collect()
    }

    /// The appservices holding `alias` in an exclusive namespace.
    pub fn alias_claimed_by(&self, alias: &str) -> Vec<&Appservice> {
        self.list.iter().filter(|a| a.claims_alias(alias)).collect()
    }
}

/// One registration file's YAML, every required field present, with the unstable keys ruma's
/// type does not keep: MSC2409's `de.sorunome.msc2409.push_ephemeral` and MSC3202's
/// `org.matrix.msc3202` (to-device messages).
fn parse(text: &str) -> Result<(Registration, (bool, bool)), String> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let map = value.as_mapping().ok_or("not a YAML mapping")?;
    for key in ["id", "as_token", "hs_token", "sender_localpart", "namespaces"] {
        if !map.contains_key(key) {
            return Err(format!("the required field {key:?} is missing"));
        }
    }
    // `url` may be null (an appservice that receives nothing) but must be there.
    if !map.contains_key("url") {
        return Err("the required field \"url\" is missing (null for an appservice that receives no events)".into());
    }
    let flag = |key: &str| map.get(key).and_then(serde_yaml::Value::as_bool).unwrap_or(false);
    let extras = (flag("de.sorunome.msc2409.push_ephemeral"), flag("org.matrix.msc3202"));
    let registration = serde_yaml::from_value(value).map_err(|e| format!("invalid registration: {e}"))?;
    Ok((registration, extras))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "id: bridge\nurl: http://127.0.0.1:9\nas_token: a1\nhs_token: h1\nsender_localpart: bot\n\
namespaces:\n  users:\n    - exclusive: true\n      regex: '@br_.*:hs'\n  aliases: []\n  rooms: []\n";

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("trellis-as-{}-{name}.yaml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_good_file_loads_and_answers_namespace_questions() {
        let reg = Registry::load(&[write("good", GOOD)], "hs").unwrap();
        let a = reg.by_as_token("a1").unwrap();
        assert_eq!(a.sender, "@bot:hs");
        assert!(a.claims_user("@br_x:hs"));
        assert!(!a.claims_user("@xbr_x:hs"), "anchored at the start");
        assert!(!a.claims_user("@br_x:hsx"), "anchored at the end");
        assert!(a.is_interested_in_user("@bot:hs"));
        assert!(reg.by_as_token("h1").is_none());
        assert!(a.rate_limited && !a.ephemeral && !a.to_device, "the defaults");
    }

    #[test]
    fn ephemeral_to_device_and_rate_limits_are_read() {
        let stable = GOOD.replace("id: bridge", "receive_ephemeral: true\nrate_limited: false\nid: bridge");
        let a = Registry::load(&[write("stable", &stable)], "hs").unwrap().all()[0].clone();
        assert!(a.ephemeral && !a.rate_limited && !a.to_device);
        let unstable = GOOD
            .replace("id: bridge", "de.sorunome.msc2409.push_ephemeral: true\norg.matrix.msc3202: true\nid: bridge");
        let a = Registry::load(&[write("unstable", &unstable)], "hs").unwrap().all()[0].clone();
        assert!(a.ephemeral && a.to_device && a.rate_limited);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let err = |files: &[std::path::PathBuf]| Registry::load(files, "hs").unwrap_err();
        let good = write("good2", GOOD);
        assert!(err(&[good.clone(), good.clone()]).contains("same id"));
        let other_id = write("dup-token", &GOOD.replace("id: bridge", "id: other"));
        assert!(err(&[good, other_id]).contains("as_token is used by another"));
        let bad_regex = write("regex", &GOOD.replace("'@br_.*:hs'", "'@br_(:hs'"));
        assert!(err(&[bad_regex]).contains("regex"));
        let missing = write("missing", &GOOD.replace("hs_token: h1\n", ""));
        assert!(err(&[missing]).contains("\"hs_token\" is missing"));
        assert!(err(&[std::path::PathBuf::from("/nonexistent/as.yaml")]).contains("cannot read"));
    }
}
