//! `GET /initialSync`: every room the user is in or invited to (and with `archived=true`
//! the rooms they left), each with its latest messages and state as the user may see them,
//! its directory visibility and the user's account data for it; then the presence of the
//! people the user shares rooms with, the read receipts of the joined rooms and the user's
//! global account data.

use serde_json::{Value, json};
use trellis_core::{Result, Stream, time::now_ms};
use trellis_proto::sync::{InitialSyncRequest, SyncResponse};
use trellis_storage::events::{COLUMNS, EventRow, Viewer};

use super::{in_room, limit_of, public_rooms, snapshots, v1_event, with_user_id, without_push_rules};
use crate::{SyncWorker, queries, streams};

impl SyncWorker {
    /// # `GET /_matrix/client/r0/initialSync`
    pub(crate) async fn legacy_initial_sync(&self, req: InitialSyncRequest) -> Result<SyncResponse> {
        let user = req.user_id.as_str();
        let viewer = Viewer { user_id: user, device_id: &req.device_id };
        let client = self.pool.get().await?;
        let now = streams::current(&client).await?;
        let memberships: Vec<queries::Membership> = queries::memberships(&client, user)
            .await?
            .into_iter()
            .filter(|m| match m.membership.as_str() {
                "join" | "invite" => true,
                // As Synapse: bans are not listed, forgotten rooms are gone.
                "leave" => req.archived && !m.forgotten,
                _ => false,
            })
            .collect();

        let read: Vec<(String, i64)> = memberships
            .iter()
            .filter_map(|m| match m.membership.as_str() {
                "join" => Some((m.room_id.clone(), now.events)),
                "leave" => Some((m.room_id.clone(), m.pos.min(now.events))),
                _ => None,
            })
            .collect();
        let mut rooms = snapshots(&client, viewer, &read, limit_of(req.limit), now).await?;
        let ids: Vec<&str> = memberships.iter().map(|m| m.room_id.as_str()).collect();
        let public = public_rooms(&client, &ids).await?;
        let invites = invite_events(&client, &memberships).await?;
        let (global, mut room_data) =
            self.account_data_events(&client, user, None, now.get(Stream::AccountData)).await?;

        let ms = now_ms();
        let mut out = Vec::with_capacity(memberships.len());
        for m in &memberships {
            let visibility = if public.contains(&m.room_id) { "public" } else { "private" };
            let mut entry = json!({ "room_id": m.room_id, "membership": m.membership, "visibility": visibility });
            if let Some(invite) = invites.iter().find(|e| e.room_id == m.room_id) {
                entry["inviter"] = json!(invite.sender);
                entry["invite"] = v1_event(invite, viewer, ms);
            }
            if let Some(snapshot) = rooms.remove(&m.room_id) {
                entry["messages"] = snapshot.messages();
                entry["state"] = json!(snapshot.state);
                entry["account_data"] = json!(room_data.remove(&m.room_id).unwrap_or_default());
            }
            out.push(entry);
        }

        let joined: Vec<String> =
            memberships.iter().filter(|m| m.membership == "join").map(|m| m.room_id.clone()).collect();
        let receipts: Vec<Value> = self
            .receipt_events(&client, user, &joined, None, now.get(Stream::Receipts))
            .await?
            .into_iter()
            .map(|(room, event)| in_room(event, &room))
            .collect();
        // As Synapse, only the people who are not offline.
        let presence: Vec<Value> = self
            .presence_events(&client, user, None, now.get(Stream::Presence))
            .await?
            .into_iter()
            .filter(|p| p["content"]["presence"] != "offline")
            .map(with_user_id)
            .collect();
        let body = json!({
            "end": now.to_string(),
            "rooms": out,
            "presence": presence,
            "account_data": without_push_rules(global),
            "receipts": receipts,
        });
        Ok(SyncResponse { body_json: body.to_string() })
    }
}

/// The member events that invited the user to the invited rooms of `memberships`.
async fn invite_events(client: &queries::Client, memberships: &[queries::Membership]) -> Result<Vec<EventRow>> {
    let positions: Vec<i64> = memberships.iter().filter(|m| m.membership == "invite").map(|m| m.pos).collect();
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {COLUMNS} FROM events WHERE pos = ANY($1)");
    let stmt = client.prepare_cached(&sql).await?;
    Ok(client.query(&stmt, &[&positions]).await?.iter().map(EventRow::from_row).collect())
}
