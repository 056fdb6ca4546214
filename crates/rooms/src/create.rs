//! `createRoom`: the initial events in the order the spec prescribes (create, creator's
//! join, power levels, canonical alias, preset state, initial_state, name, topic, invites),
//! stored together with the room in one transaction.

use ruma::{OwnedUserId, RoomAliasId, RoomVersionId, UserId};
use serde_json::{Value, json};
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::rooms::{CreateRoomRequest, CreateRoomResponse};

use crate::{
    Rooms,
    new_event::{NewEvent, object},
    state::{DEFAULT_VERSION, RoomState, rules_for},
    writer::NewRoom,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Preset {
    Private,
    TrustedPrivate,
    Public,
}

impl Rooms {
    #[tracing::instrument(skip_all, fields(sender = %req.sender))]
    pub(crate) async fn create_room(&self, req: CreateRoomRequest) -> Result<CreateRoomResponse> {
        let sender = UserId::parse(&req.sender)?;
        let version = match req.room_version.as_deref() {
            None | Some("") => DEFAULT_VERSION,
            Some(v) => RoomVersionId::try_from(v)
                .map_err(|_| Error::new(ErrorCode::UnsupportedRoomVersion, format!("unknown room version {v}")))?,
        };
        let rules = rules_for(&version)?;
        let is_public = match req.visibility.as_str() {
            "" | "private" => false,
            "public" => true,
            other => return Err(Error::invalid_param(format!("unknown visibility {other:?}"))),
        };
        let preset = match req.preset.as_str() {
            "" if is_public => Preset::Public,
            "" => Preset::Private,
            "private_chat" => Preset::Private,
            "trusted_private_chat" => Preset::TrustedPrivate,
            "public_chat" => Preset::Public,
            other => return Err(Error::invalid_param(format!("unknown preset {other:?}"))),
        };
        let alias = match req.room_alias_name.as_deref() {
            None | Some("") => None,
            Some(name) => {
                // Like Synapse: no whitespace or colons in the local part.
                if name.chars().any(|c| c.is_whitespace() || c == ':') {
                    return Err(Error::invalid_param("invalid characters in room alias"));
                }
                let alias = RoomAliasId::parse(format!("#{name}:{}", self.server_name()))
                    .map_err(|_| Error::invalid_param("invalid room_alias_name"))?;
                if self.alias_room(alias.as_str()).await?.is_some() {
                    return Err(Error::new(ErrorCode::RoomInUse, "room alias already taken"));
                }
                Some(alias)
            }
        };
        let invites =
            req.invite.iter().map(|u| trellis_core::ids::parse_user_id(u)).collect::<Result<Vec<OwnedUserId>>>()?;

        let creators_privileged = rules.authorization.explicitly_privilege_room_creators;
        let mut events = Vec::new();

        let mut create = parse_object(req.creation_content_json.as_deref(), "creation_content")?;
        // The server decides the version and, before v11, the creator.
        create.remove("creator");
        if !rules.authorization.use_room_create_sender {
            create.insert("creator".into(), json!(sender.as_str()));
        }
        create.insert("room_version".into(), json!(version.as_str()));
        if creators_privileged && preset == Preset::TrustedPrivate && !invites.is_empty() {
            // Like Synapse: the invitees of a trusted private chat become creators too (v12),
            // instead of being given power 100.
            let mut creators: Vec<String> = match create.get("additional_creators") {
                Some(Value::Array(list)) => list.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect(),
                _ => Vec::new(),
            };
            creators.extend(invites.iter().map(|u| u.to_string()));
            creators.sort();
            creators.dedup();
            create.insert("additional_creators".into(), json!(creators));
        }
        let (room_id, create) = self.build_create(&version, &sender, object(Value::Object(create))?, None)?;

        let profile = self.member_profile(&sender).await?;
        events.push(NewEvent::state(
            &sender,
            "m.room.member",
            sender.as_str(),
            member_content("join", &profile, false),
        )?);

        // Creators of a v12 room have infinite power and may not be listed.
        let mut users = serde_json::Map::new();
        if !creators_privileged {
            users.insert(sender.to_string(), json!(100));
            if preset == Preset::TrustedPrivate {
                for u in &invites {
                    users.insert(u.to_string(), json!(100));
                }
            }
        }
        let mut power_levels = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50,
                "m.room.power_levels": 100,
                "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50,
                "m.room.avatar": 50,
                // Only creators may upgrade a v12 room by default (Synapse).
                "m.room.tombstone": if creators_privileged { 150 } else { 100 },
                "m.room.server_acl": 100,
                "m.room.encryption": 100,
            },
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            // Anyone may invite to a private chat; only moderators to a public one (Synapse).
            "invite": if preset == Preset::Public { 50 } else { 0 },
            "historical": 100,
            "notifications": { "room": 50 },
        });
        if let Some(over) = req.power_level_content_override_json.as_deref() {
            let over = parse_object(Some(over), "power_level_content_override")?;
            let pl = power_levels.as_object_mut().expect("object literal");
            for (k, v) in over {
                pl.insert(k, v);
            }
        }

        let mut initial: Vec<(String, String, Value)> = Vec::new();
        for raw in &req.initial_state_json {
            let ev: Value =
                serde_json::from_str(raw).map_err(|_| Error::bad_json("initial_state entry is not JSON"))?;
            let kind = ev
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::bad_json("initial_state entry needs a type"))?;
            let key = ev.get("state_key").and_then(Value::as_str).unwrap_or("");
            let content =
                ev.get("content").cloned().ok_or_else(|| Error::bad_json("initial_state entry needs content"))?;
            if matches!(kind, "m.room.create" | "m.room.member") {
                return Err(Error::invalid_param(format!("{kind} cannot be set in initial_state")));
            }
            initial.push((kind.to_owned(), key.to_owned(), content));
        }
        let overridden = |kind: &str| initial.iter().any(|(k, key, _)| k == kind && key.is_empty());

        if !overridden("m.room.power_levels") {
            events.push(NewEvent::state(&sender, "m.room.power_levels", "", power_levels)?);
        }
        if let Some(alias) = &alias
            && !overridden("m.room.canonical_alias")
        {
            events.push(NewEvent::state(&sender, "m.room.canonical_alias", "", json!({ "alias": alias }))?);
        }
        // A public room gets no `m.room.guest_access` (guests are forbidden without one).
        let (join_rule, guest_access) = match preset {
            Preset::Public => ("public", None),
            Preset::Private | Preset::TrustedPrivate => ("invite", Some("can_join")),
        };
        let guest_access = guest_access.map(|g| ("m.room.guest_access", json!({ "guest_access": g })));
        for (kind, content) in [
            ("m.room.join_rules", json!({ "join_rule": join_rule })),
            ("m.room.history_visibility", json!({ "history_visibility": "shared" })),
        ]
        .into_iter()
        .chain(guest_access)
        {
            if !overridden(kind) {
                events.push(NewEvent::state(&sender, kind, "", content)?);
            }
        }
        for (kind, key, content) in initial {
            events.push(NewEvent::state(&sender, &kind, &key, content)?);
        }
        if let Some(name) = req.name.as_deref().filter(|n| !n.is_empty()) {
            events.push(NewEvent::state(&sender, "m.room.name", "", json!({ "name": name }))?);
        }
        if let Some(topic) = req.topic.as_deref().filter(|t| !t.is_empty()) {
            events.push(NewEvent::state(&sender, "m.room.topic", "", json!({ "topic": topic }))?);
        }
        for invitee in &invites {
            let profile = self.member_profile(invitee).await?;
            events.push(NewEvent::state(
                &sender,
                "m.room.member",
                invitee.as_str(),
                member_content("invite", &profile, req.is_direct),
            )?);
        }

        let new_room = NewRoom {
            state: RoomState::new(room_id.clone(), version)?,
            create,
            creator: sender.to_string(),
            is_public,
            alias: alias.map(|a| a.to_string()),
        };
        self.append(&room_id, Some(new_room), events).await?.into_new();
        tracing::info!(room_id = %room_id, "room created");
        Ok(CreateRoomResponse { room_id: room_id.to_string() })
    }
}

fn parse_object(json: Option<&str>, what: &str) -> Result<serde_json::Map<String, Value>> {
    match json {
        None | Some("") => Ok(serde_json::Map::new()),
        Some(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => {
                object(Value::Object(m.clone()))?;
                Ok(m)
            }
            _ => Err(Error::bad_json(format!("{what} must be a JSON object"))),
        },
    }
}

/// A profile as it goes into member events.
pub(crate) struct MemberProfile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

pub(crate) fn member_content(membership: &str, profile: &MemberProfile, is_direct: bool) -> Value {
    let mut c = serde_json::Map::new();
    c.insert("membership".into(), json!(membership));
    if let Some(d) = &profile.displayname {
        c.insert("displayname".into(), json!(d));
    }
    if let Some(a) = &profile.avatar_url {
        c.insert("avatar_url".into(), json!(a));
    }
    if is_direct {
        c.insert("is_direct".into(), json!(true));
    }
    Value::Object(c)
}
