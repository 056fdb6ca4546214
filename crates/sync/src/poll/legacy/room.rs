//! `GET /rooms/{roomId}/initialSync`: one room's latest messages, state, members' presence,
//! read receipts and the user's account data for it. A member sees the room now; a former
//! member sees it as it was when they left (no presence or receipts, SPEC-216); anyone may
//! peek into a `world_readable` room (then without a `membership`).

use serde_json::{Value, json};
use trellis_core::{Error, Result, Stream, time::now_ms};
use trellis_proto::sync::{RoomInitialSyncRequest, SyncResponse};
use trellis_storage::{
    events::Viewer,
    visibility::{self, HistoryVisibility},
};

use super::{in_room, limit_of, snapshots, v1_presence};
use crate::{SyncWorker, access, queries, streams, streams::presence::PresenceRow};

const MEMBERSHIP: &str = "SELECT membership, pos, forgotten FROM memberships WHERE user_id = $1 AND room_id = $2";
/// Every joined member with their presence, if they ever had any.
const MEMBERS_PRESENCE: &str = "SELECT m.user_id, p.state, p.status_msg, p.last_active_ts, p.currently_active \
     FROM memberships m LEFT JOIN presence p ON p.user_id = m.user_id \
     WHERE m.room_id = $1 AND m.membership = 'join' ORDER BY m.user_id";

/// How the user reads the room.
enum View {
    Member,
    /// Left (`leave`) or was banned (`ban`) at this position.
    Departed(i64, String),
    /// Not a member of a `world_readable` room.
    Peeking,
}

impl SyncWorker {
    /// # `GET /_matrix/client/r0/rooms/{roomId}/initialSync`
    pub(crate) async fn legacy_room_initial_sync(&self, req: RoomInitialSyncRequest) -> Result<SyncResponse> {
        access::room_id(&req.room_id)?;
        let (user, room) = (req.user_id.as_str(), req.room_id.as_str());
        let viewer = Viewer { user_id: user, device_id: &req.device_id };
        let client = self.pool.get().await?;
        let now = streams::current(&client).await?;
        let membership = client.query_opt(&client.prepare_cached(MEMBERSHIP).await?, &[&user, &room]).await?;
        let membership = membership.map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1), r.get::<_, bool>(2)));
        let view = match membership {
            Some((m, _, _)) if m == "join" => View::Member,
            Some((m, pos, false)) if m == "leave" || m == "ban" => View::Departed(pos.min(now.events), m),
            _ if visibility::load_one(&client, user, room).await?.current_visibility()
                == HistoryVisibility::WorldReadable =>
            {
                View::Peeking
            }
            _ => return Err(Error::forbidden("You are not a member of this room and it is not world-readable")),
        };
        let at = match view {
            View::Departed(pos, _) => pos,
            View::Member | View::Peeking => now.events,
        };
        let snapshot = snapshots(&client, viewer, &[(room.to_owned(), at)], limit_of(req.limit), now)
            .await?
            .remove(room)
            .expect("a snapshot of the room asked for");

        let (presence, receipts) = match view {
            View::Departed(..) => (Vec::new(), Vec::new()),
            View::Member | View::Peeking => {
                let receipts = self
                    .receipt_events(&client, user, &[room.to_owned()], None, now.get(Stream::Receipts))
                    .await?
                    .into_iter()
                    .map(|(room, event)| in_room(event, &room))
                    .collect();
                (members_presence(&client, room).await?, receipts)
            }
        };
        let account_data = self
            .room_account_data(&client, user, &[room], now.get(Stream::AccountData))
            .await?
            .remove(room)
            .unwrap_or_default();

        let mut body = json!({
            "room_id": room,
            "messages": snapshot.messages(),
            "state": snapshot.state,
            "presence": presence,
            "receipts": receipts,
            "account_data": account_data,
        });
        match view {
            View::Member => body["membership"] = json!("join"),
            View::Departed(_, membership) => body["membership"] = json!(membership),
            View::Peeking => {}
        }
        Ok(SyncResponse { body_json: body.to_string() })
    }
}

/// The presence of every joined member: `offline` for those who never had any.
async fn members_presence(client: &queries::Client, room: &str) -> Result<Vec<Value>> {
    let now = now_ms();
    let rows = client.query(&client.prepare_cached(MEMBERS_PRESENCE).await?, &[&room]).await?;
    Ok(rows
        .iter()
        .map(|r| match r.get::<_, Option<String>>(1) {
            Some(_) => v1_presence(&PresenceRow::from_row(r), now),
            None => {
                let user: String = r.get(0);
                json!({ "type": "m.presence", "sender": user, "content": { "presence": "offline", "user_id": user } })
            }
        })
        .collect())
}
