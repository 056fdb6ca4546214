//! Rooms: creation and upgrades.

use axum::Router;
use ruma::api::client::room::{create_room, upgrade_room};
use trellis_proto::{
    rooms::{CreateRoomRequest, UpgradeRoomRequest},
    sync::TransferRoomSettingsRequest,
};

use super::stored_id;
use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(create_room_route).ruma(upgrade_room_route)
}

/// # `POST /_matrix/client/v3/createRoom`
async fn create_room_route(s: AppState, req: Ruma<create_room::v3::Request>) -> ApiResult<create_room::v3::Response> {
    req.user.not_suspended()?;
    // Shadow-banned: the room is made, its invites go nowhere.
    let shadow_banned = req.user.shadow_banned;
    let (sender, req) = (req.user.user_id, req.body);
    let mut invite: Vec<String> = req.invite.iter().map(|u| u.to_string()).collect();
    // `invite_3pid`: the users identity servers have these bound to are invited too; the
    // addresses nobody has bound get third-party invites once the room exists.
    let mut unbound = Vec::new();
    for threepid in &req.invite_3pid {
        match super::threepid::invitee(&s, threepid).await? {
            Some(user_id) if !invite.contains(&user_id) => invite.push(user_id),
            Some(_) => {}
            None => unbound.push(threepid),
        }
    }
    let resp = s
        .services
        .rooms
        .create_room(CreateRoomRequest {
            sender: sender.clone(),
            name: req.name,
            topic: req.topic,
            preset: req.preset.map(|p| p.as_str().to_owned()).unwrap_or_default(),
            visibility: req.visibility.as_str().to_owned(),
            invite: if shadow_banned { Vec::new() } else { invite },
            room_alias_name: req.room_alias_name,
            is_direct: req.is_direct,
            initial_state_json: req.initial_state.iter().map(|e| e.json().get().to_owned()).collect(),
            power_level_content_override_json: req.power_level_content_override.map(|p| p.json().get().to_owned()),
            creation_content_json: req.creation_content.map(|c| c.json().get().to_owned()),
            room_version: req.room_version.map(|v| v.to_string()),
        })
        .await?;
    for threepid in unbound.into_iter().filter(|_| !shadow_banned) {
        super::threepid_invite::invite_unbound(&s, &sender, &resp.room_id, threepid).await?;
    }
    Ok(create_room::v3::Response::new(stored_id(resp.room_id)?))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/upgrade`
///
/// The rooms service replaces the room; the sync service then carries its members' push
/// rules, tags and direct-chat entries over (best effort: the upgrade stands either way).
async fn upgrade_room_route(
    s: AppState,
    req: Ruma<upgrade_room::v3::Request>,
) -> ApiResult<upgrade_room::v3::Response> {
    req.user.not_suspended()?;
    if req.user.shadow_banned {
        // Shadow-banned: the upgrade seems made and is not.
        let random = trellis_core::ids::random_string;
        let room_id = match req.body.new_version.as_str() {
            "12" => format!("!{}", random(43)),
            _ => format!("!{}:{}", random(18), s.settings.server_name),
        };
        return Ok(upgrade_room::v3::Response::new(stored_id(room_id)?));
    }
    let (user_id, req) = (req.user.user_id, req.body);
    let resp = s
        .services
        .rooms
        .upgrade_room(UpgradeRoomRequest {
            sender: user_id.clone(),
            room_id: req.room_id.to_string(),
            new_version: req.new_version.to_string(),
            additional_creators: req.additional_creators.iter().map(|u| u.to_string()).collect(),
        })
        .await?;
    let transfer = TransferRoomSettingsRequest {
        user_id,
        old_room_id: req.room_id.to_string(),
        new_room_id: resp.replacement_room.clone(),
    };
    if let Err(e) = s.services.sync.transfer_room_settings(transfer).await {
        tracing::warn!(error = ?e, room_id = %req.room_id, "room settings not carried over to the upgraded room");
    }
    Ok(upgrade_room::v3::Response::new(stored_id(resp.replacement_room)?))
}
