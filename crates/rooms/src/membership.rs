//! Membership changes: join (by room ID or alias, restricted rooms included), knock, invite,
//! leave (and rejecting an invite or rescinding a knock), kick, ban, unban, forget. The
//! authorization rules decide what is allowed; this module picks the event, fills in what the
//! server decides, and turns repeats into no-ops.

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId, events::StateEventType};
use serde_json::{Map, Value, json};
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::rooms::{Empty, ForgetRequest, MembershipAction, MembershipRequest, MembershipResponse};

use crate::{
    Rooms,
    create::{MemberProfile, member_content},
    new_event::{Appended, NewEvent, Txn, object},
    state::RoomState,
};

const SELECT_MEMBERSHIP: &str = "SELECT membership FROM memberships WHERE user_id = $1 AND room_id = $2";
const SELECT_PROFILE: &str = "SELECT displayname, avatar_url FROM profiles WHERE user_id = $1";
const FORGET: &str = "UPDATE memberships SET forgotten = TRUE WHERE user_id = $1 AND room_id = $2 \
     AND membership IN ('leave', 'ban')";

impl Rooms {
    #[tracing::instrument(skip_all, fields(sender = %req.sender, room = %req.room, action = req.action))]
    pub(crate) async fn change_membership(&self, req: MembershipRequest) -> Result<MembershipResponse> {
        let sender = UserId::parse(&req.sender)?;
        let action = MembershipAction::try_from(req.action).unwrap_or(MembershipAction::Unspecified);
        let room_id = match action {
            MembershipAction::Join | MembershipAction::Knock => self.resolve_room(&req.room).await?,
            _ => RoomId::parse(&req.room).map_err(|_| Error::invalid_param("invalid room ID"))?,
        };
        let target = match action {
            MembershipAction::Join | MembershipAction::Leave | MembershipAction::Knock => sender.clone(),
            _ => {
                let t = req.target.as_deref().ok_or_else(|| Error::missing_param("user_id is required"))?;
                trellis_core::ids::parse_user_id(t)?
            }
        };
        if action == MembershipAction::Invite {
            self.ask_appservices_about_user(target.as_str()).await?;
        }
        let current = self.membership_of(&room_id, &target).await?;
        let current = current.as_deref();
        let membership = match action {
            MembershipAction::Unspecified => return Err(Error::invalid_param("unknown membership action")),
            MembershipAction::Join if current == Some("join") => return Ok(done(&room_id)),
            MembershipAction::Join => "join",
            MembershipAction::Knock => match current {
                Some("knock") => return Ok(done(&room_id)),
                Some("join") => return Err(bad_state("You are already in the room")),
                Some("invite") => return Err(bad_state("You are already invited to the room")),
                _ => "knock",
            },
            MembershipAction::Leave => match current {
                Some("leave") => return Ok(done(&room_id)),
                None => return Err(Error::forbidden("You are not in this room")),
                _ => "leave",
            },
            MembershipAction::Invite => match current {
                Some("join") => return Err(Error::forbidden(format!("{target} is already in the room"))),
                Some("ban") => return Err(Error::forbidden(format!("{target} is banned from the room"))),
                Some("invite") => return Ok(done(&room_id)),
                _ => "invite",
            },
            MembershipAction::Kick => match current {
                Some("join" | "invite" | "knock") => "leave",
                _ => return Err(bad_state(format!("{target} is not in the room"))),
            },
            MembershipAction::Ban if current == Some("ban") => return Ok(done(&room_id)),
            MembershipAction::Ban => "ban",
            MembershipAction::Unban => match current {
                Some("ban") => "leave",
                _ => return Err(bad_state(format!("{target} is not banned"))),
            },
        };
        let content = match membership {
            "join" | "invite" | "knock" => member_content(membership, &self.member_profile(&target).await?, false),
            _ => json!({ "membership": membership }),
        };
        let Value::Object(mut content) = content else { unreachable!("member content is an object") };
        if membership == "join"
            && let Some(extra) = req.content_json.as_deref()
        {
            custom_content(&mut content, extra)?;
        }
        if let Some(reason) = req.reason.as_deref().filter(|r| !r.is_empty()) {
            content.insert("reason".into(), json!(reason));
        }
        self.send_membership(&sender, &room_id, &target, content, None).await?;
        Ok(done(&room_id))
    }

    /// Appends a member event whose content the caller chose, adding what only the server
    /// may decide: the user authorising a join to a restricted room, a guest's `kind`.
    pub(crate) async fn send_membership(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        mut content: Map<String, Value>,
        txn: Option<Txn>,
    ) -> Result<Appended> {
        // Clients never choose who authorised their join.
        content.remove("join_authorised_via_users_server");
        if let Some("join" | "invite" | "knock") = content.get("membership").and_then(Value::as_str) {
            self.ensure_not_blocked(room_id).await?;
        }
        if content.get("membership").and_then(Value::as_str) == Some("join") && sender == target {
            let state = self.snapshot(room_id).await?;
            self.admit_guest(&state, sender, &mut content).await?;
            if let Some(authoriser) = self.restricted_join_authoriser(&state, sender).await? {
                content.insert("join_authorised_via_users_server".into(), json!(authoriser));
            }
        }
        let event = NewEvent {
            sender: sender.to_owned(),
            kind: "m.room.member".into(),
            state_key: Some(target.to_string()),
            content: object(Value::Object(content))?,
            txn,
            redacts: None,
            origin_server_ts: None,
        };
        match self.append(room_id, None, vec![event]).await {
            Err(e) if e.code() == ErrorCode::NotFound => Err(Error::not_found("No known room with this ID")),
            other => other,
        }
    }

    /// For a join to a restricted room by someone not invited: a joined member who may invite,
    /// once the user is shown to be in one of the rooms the join rules allow; `None` when the
    /// room is not restricted or no authorisation is needed.
    async fn restricted_join_authoriser(&self, state: &RoomState, user: &UserId) -> Result<Option<OwnedUserId>> {
        let rule = state.join_rule();
        if !matches!(rule.as_str(), "restricted" | "knock_restricted")
            || matches!(state.membership(user.as_str()).as_deref(), Some("join" | "invite"))
        {
            return Ok(None);
        }
        let allowed_rooms: Vec<String> = state
            .content(&StateEventType::RoomJoinRules, "")
            .and_then(|c| c.get("allow").cloned())
            .and_then(|a| serde_json::from_value::<Vec<Value>>(a).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["type"] == "m.room_membership")
            .filter_map(|a| a["room_id"].as_str().map(str::to_owned))
            .collect();
        let mut member_of_allowed = false;
        for room in allowed_rooms.iter().filter_map(|r| RoomId::parse(r).ok()) {
            if self.membership_of(&room, user).await?.as_deref() == Some("join") {
                member_of_allowed = true;
                break;
            }
        }
        if !member_of_allowed {
            // A knock_restricted room still takes knocks; the auth rules refuse the join.
            return Ok(None);
        }
        let pl = state.power_levels();
        let authoriser = state
            .state
            .iter()
            .filter(|((kind, _), pdu)| {
                *kind == StateEventType::RoomMember
                    && crate::state::membership_of(pdu).as_deref() == Some("join")
                    && pdu.sender.server_name() == self.settings.server_name
            })
            .filter_map(|((_, key), _)| UserId::parse(key).ok())
            .filter(|u| pl.user_can_invite(u))
            .max_by(|a, b| pl.for_user(a).cmp(&pl.for_user(b)).then_with(|| b.cmp(a)));
        match authoriser {
            Some(u) => Ok(Some(u)),
            None => Err(Error::forbidden("No member of the room can authorise your join")),
        }
    }

    /// Hides a room the user left from their history (spec: forget).
    pub(crate) async fn forget(&self, req: ForgetRequest) -> Result<Empty> {
        let user = UserId::parse(&req.user_id)?;
        let room_id = RoomId::parse(&req.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        if let Some("join" | "invite" | "knock") = self.membership_of(&room_id, &user).await?.as_deref() {
            return Err(Error::new(ErrorCode::Unknown, "User is in the room; leave it first").with_status(400));
        }
        let client = self.pool.get().await?;
        client.execute(&client.prepare_cached(FORGET).await?, &[&user.as_str(), &room_id.as_str()]).await?;
        Ok(Empty {})
    }

    /// A room ID, or the room an alias points at.
    pub(crate) async fn resolve_room(&self, room: &str) -> Result<OwnedRoomId> {
        if room.starts_with('#') {
            trellis_core::ids::parse_room_alias(room)?;
            let id = self.resolve_local_alias(room).await?.ok_or_else(|| Error::not_found("Room alias not found"))?;
            Ok(RoomId::parse(id)?)
        } else {
            RoomId::parse(room).map_err(|_| Error::invalid_param("invalid room ID or alias"))
        }
    }

    pub(crate) async fn membership_of(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<String>> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_MEMBERSHIP).await?;
        Ok(client.query_opt(&stmt, &[&user_id.as_str(), &room_id.as_str()]).await?.map(|r| r.get(0)))
    }

    /// The user's profile for member events (read from the auth service's table).
    pub(crate) async fn member_profile(&self, user_id: &UserId) -> Result<MemberProfile> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_PROFILE).await?;
        Ok(match client.query_opt(&stmt, &[&user_id.as_str()]).await? {
            Some(row) => MemberProfile { displayname: row.get(0), avatar_url: row.get(1) },
            None => MemberProfile { displayname: None, avatar_url: None },
        })
    }
}

/// Keys of a join request's body that are the request's, not the member event's.
const NOT_CONTENT: &[&str] = &["membership", "reason", "third_party_signed", "join_authorised_via_users_server"];

/// Adds the other keys of a join request's body to the member content, as Synapse does (a
/// client may set its own `displayname` or `avatar_url` for the room this way).
fn custom_content(content: &mut Map<String, Value>, body: &str) -> Result<()> {
    let Value::Object(extra) =
        serde_json::from_str(body).map_err(|_| Error::new(ErrorCode::NotJson, "Content not JSON."))?
    else {
        return Err(Error::bad_json("the body must be a JSON object"));
    };
    for (key, value) in extra {
        if !NOT_CONTENT.contains(&key.as_str()) {
            content.insert(key, value);
        }
    }
    Ok(())
}

/// A membership change that makes no sense in the target's current state (403, like Synapse).
fn bad_state(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::BadState, message).with_status(403)
}

fn done(room_id: &RoomId) -> MembershipResponse {
    MembershipResponse { room_id: room_id.to_string() }
}
