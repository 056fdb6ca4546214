//! Room aliases: lookup, creation and deletion (`/directory/room/{roomAlias}`) with their
//! permission checks, a room's local aliases, and the validation of `m.room.canonical_alias`
//! (every alias well-formed; local ones must point at the room).

use ruma::{RoomId, UserId, events::StateEventType};
use serde_json::{Value, json};
use trellis_core::{Error, ErrorCode, Result, time::now_ms};
use trellis_proto::rooms::{
    DeleteAliasRequest, Empty, ResolveAliasRequest, ResolveAliasResponse, RoomAliasesRequest, RoomAliasesResponse,
    SetAliasRequest,
};
use trellis_storage::visibility::HistoryVisibility;

use crate::{Rooms, new_event::NewEvent, writer::is_unique_violation};

const SELECT_ALIAS: &str = "SELECT room_id, creator FROM room_aliases WHERE alias = $1";
const SELECT_ROOM_ALIASES: &str = "SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias";
const INSERT_ALIAS: &str = "INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)";
const DELETE_ALIAS: &str = "DELETE FROM room_aliases WHERE alias = $1";

impl Rooms {
    pub(crate) async fn alias_room(&self, alias: &str) -> Result<Option<String>> {
        Ok(self.alias_entry(alias).await?.map(|(room, _)| room))
    }

    /// `(room_id, creator)` of an alias.
    async fn alias_entry(&self, alias: &str) -> Result<Option<(String, String)>> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_ALIAS).await?;
        Ok(client.query_opt(&stmt, &[&alias]).await?.map(|r| (r.get(0), r.get(1))))
    }

    /// A well-formed alias of this server (`M_INVALID_PARAM` otherwise).
    fn local_alias(&self, alias: &str) -> Result<ruma::OwnedRoomAliasId> {
        let parsed = trellis_core::ids::parse_room_alias(alias)?;
        if parsed.server_name() != self.settings.server_name || alias.len() > 255 {
            return Err(Error::invalid_param("Room alias must be local and at most 255 bytes"));
        }
        Ok(parsed)
    }

    pub(crate) async fn resolve_alias(&self, req: ResolveAliasRequest) -> Result<ResolveAliasResponse> {
        trellis_core::ids::parse_room_alias(&req.alias)?;
        let room_id =
            self.resolve_local_alias(&req.alias).await?.ok_or_else(|| Error::not_found("Room alias not found"))?;
        Ok(ResolveAliasResponse { room_id, servers: vec![self.server_name().to_owned()] })
    }

    /// Creates an alias; only members of the room may (like Synapse), or an appservice in its
    /// alias namespaces; nobody else in an appservice's exclusive alias namespace.
    #[tracing::instrument(skip_all, fields(sender = %req.sender, alias = %req.alias))]
    pub(crate) async fn set_alias(&self, req: SetAliasRequest) -> Result<Empty> {
        let alias = self.local_alias(&req.alias)?;
        let sender = UserId::parse(&req.sender)?;
        let room_id = RoomId::parse(&req.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        let appservices = &self.settings.appservices;
        match req.appservice_id.as_deref().and_then(|id| appservices.by_id(id)) {
            Some(appservice) if !appservice.is_interested_in_alias(alias.as_str()) => {
                return Err(Error::new(
                    ErrorCode::Exclusive,
                    "This application service has not reserved this kind of alias.",
                ));
            }
            Some(_) => {}
            None if !appservices.alias_claimed_by(alias.as_str()).is_empty() => {
                return Err(Error::new(ErrorCode::Exclusive, "This alias is reserved by an application service."));
            }
            None if self.membership_of(&room_id, &sender).await?.as_deref() != Some("join") => {
                return Err(Error::forbidden("You must be in the room to create an alias for it"));
            }
            None => {}
        }
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(INSERT_ALIAS).await?;
        client.execute(&stmt, &[&alias.as_str(), &room_id.as_str(), &sender.as_str(), &now_ms()]).await.map_err(
            |e| {
                if is_unique_violation(&e) {
                    Error::new(ErrorCode::Unknown, format!("Room alias {alias} already exists")).with_status(409)
                } else {
                    e.into()
                }
            },
        )?;
        tracing::info!(room_id = %room_id, "alias created");
        Ok(Empty {})
    }

    /// Deletes an alias: its creator may, and so may anyone who may change the room's
    /// canonical alias. The canonical alias event stops naming it, when the sender may.
    #[tracing::instrument(skip_all, fields(sender = %req.sender, alias = %req.alias))]
    pub(crate) async fn delete_alias(&self, req: DeleteAliasRequest) -> Result<Empty> {
        let alias = self.local_alias(&req.alias)?;
        let sender = UserId::parse(&req.sender)?;
        let (room, creator) =
            self.alias_entry(alias.as_str()).await?.ok_or_else(|| Error::not_found("Room alias not found"))?;
        let room_id = RoomId::parse(&room)?;
        let state = self.snapshot(&room_id).await?;
        let may_change_canonical = state.membership(sender.as_str()).as_deref() == Some("join")
            && state.power_levels().user_can_send_state(&sender, StateEventType::RoomCanonicalAlias);
        if creator != sender.as_str() && !may_change_canonical {
            return Err(Error::forbidden("You may not delete this alias"));
        }
        let client = self.pool.get().await?;
        client.execute(&client.prepare_cached(DELETE_ALIAS).await?, &[&alias.as_str()]).await?;
        if let Some(content) = state.content(&StateEventType::RoomCanonicalAlias, "")
            && let Some(updated) = without_alias(&content, alias.as_str())
        {
            let event = NewEvent::state(&sender, "m.room.canonical_alias", "", updated)?;
            if let Err(e) = self.append(&room_id, None, vec![event]).await {
                tracing::info!(error = ?e, "canonical alias left unchanged after deleting an alias");
            }
        }
        tracing::info!(room_id = %room_id, "alias deleted");
        Ok(Empty {})
    }

    /// The local aliases of a room, for its members (anyone, if it is world-readable).
    pub(crate) async fn room_aliases(&self, req: RoomAliasesRequest) -> Result<RoomAliasesResponse> {
        let room_id = RoomId::parse(&req.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        let user = UserId::parse(&req.user_id)?;
        let client = self.pool.get().await?;
        if self.membership_of(&room_id, &user).await?.as_deref() != Some("join") {
            let history = trellis_storage::visibility::load_one(&client, user.as_str(), room_id.as_str()).await?;
            if history.current_visibility() != HistoryVisibility::WorldReadable {
                return Err(Error::forbidden("You are not a member of the room"));
            }
        }
        let stmt = client.prepare_cached(SELECT_ROOM_ALIASES).await?;
        let aliases = client.query(&stmt, &[&room_id.as_str()]).await?.iter().map(|r| r.get(0)).collect();
        Ok(RoomAliasesResponse { aliases })
    }

    /// Checks the content of an `m.room.canonical_alias` event for `room_id`.
    pub(crate) async fn check_canonical_alias(&self, room_id: &RoomId, content: &Value) -> Result<()> {
        let mut aliases = Vec::new();
        match content.get("alias") {
            None | Some(Value::Null) => {}
            Some(Value::String(a)) => aliases.push(a.as_str()),
            Some(_) => return Err(Error::invalid_param("alias must be a string")),
        }
        match content.get("alt_aliases") {
            None => {}
            Some(Value::Array(list)) => {
                for a in list {
                    aliases.push(a.as_str().ok_or_else(|| Error::invalid_param("alt_aliases must be strings"))?);
                }
            }
            Some(_) => return Err(Error::invalid_param("alt_aliases must be a list")),
        }
        for alias in aliases {
            let parsed = trellis_core::ids::parse_room_alias(alias)?;
            // Only this server's aliases can be checked.
            if parsed.server_name() == self.settings.server_name
                && self.alias_room(alias).await?.as_deref() != Some(room_id.as_str())
            {
                let msg = format!("Room alias {alias} does not point to the room");
                return Err(Error::new(trellis_core::ErrorCode::BadAlias, msg));
            }
        }
        Ok(())
    }
}

/// The canonical alias content without `alias`, or `None` if it does not name it.
fn without_alias(content: &Value, alias: &str) -> Option<Value> {
    let mut updated = content.clone();
    let mut changed = false;
    if content.get("alias").and_then(Value::as_str) == Some(alias) {
        updated.as_object_mut()?.remove("alias");
        changed = true;
    }
    if let Some(alt) = content.get("alt_aliases").and_then(Value::as_array)
        && alt.iter().any(|a| a.as_str() == Some(alias))
    {
        let kept: Vec<&Value> = alt.iter().filter(|a| a.as_str() != Some(alias)).collect();
        updated["alt_aliases"] = json!(kept);
        changed = true;
    }
    changed.then_some(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_aliases_leave_the_canonical_alias() {
        let c = json!({"alias": "#a:x", "alt_aliases": ["#a:x", "#b:x"]});
        assert_eq!(without_alias(&c, "#a:x"), Some(json!({"alt_aliases": ["#b:x"]})));
        assert_eq!(without_alias(&c, "#b:x"), Some(json!({"alias": "#a:x", "alt_aliases": ["#a:x"]})));
        assert_eq!(without_alias(&c, "#c:x"), None);
    }
}
