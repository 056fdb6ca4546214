//! Room members: `/members` (as of a point in the stream, filtered by membership) and
//! `/joined_members`, as the user may see them (a former member sees them as of leaving).

use trellis_core::{Error, Result, StreamToken, time::now_ms};
use trellis_proto::rooms::{EventList, GetMembersRequest, JoinedMember, JoinedMembersRequest, JoinedMembersResponse};
use trellis_storage::{
    events::{COLUMNS, EventRow, Format},
    visibility::membership_of,
};

use crate::{Rooms, access::Access};

const MEMBERSHIPS: &[&str] = &["join", "invite", "knock", "leave", "ban"];

impl Rooms {
    /// The member events of `room` as of `at` (a stream position), within the user's view.
    async fn member_events(&self, user: &str, room: &str, at: Option<i64>) -> Result<Vec<EventRow>> {
        let client = self.pool.get().await?;
        let access = Access::load(&client, user, room).await?;
        let upper = access.upper(self.announced_position());
        let upper = at.map_or(upper, |a| a.min(upper));
        let sql = format!(
            "SELECT {COLUMNS} FROM (SELECT DISTINCT ON (state_key) * FROM events WHERE room_id = $1 \
             AND type = 'm.room.member' AND pos <= $2 ORDER BY state_key, pos DESC) m ORDER BY pos"
        );
        let rows = client.query(&client.prepare_cached(&sql).await?, &[&room, &upper]).await?;
        Ok(rows.iter().map(EventRow::from_row).collect())
    }

    pub(crate) async fn get_members(&self, req: GetMembersRequest) -> Result<EventList> {
        for m in [&req.membership, &req.not_membership].into_iter().flatten() {
            if !MEMBERSHIPS.contains(&m.as_str()) {
                return Err(Error::invalid_param(format!("unknown membership {m:?}")));
            }
        }
        let at = req.at.as_deref().filter(|a| !a.is_empty()).map(|a| a.parse::<StreamToken>()).transpose()?;
        let rows = self.member_events(&req.user_id, &req.room_id, at.map(|t| t.events)).await?;
        let now = now_ms();
        let events_json = rows
            .iter()
            .filter(|r| {
                let m = membership_of(&r.content);
                req.membership.as_ref().is_none_or(|want| m.as_ref() == Some(want))
                    && req.not_membership.as_ref().is_none_or(|not| m.as_ref() != Some(not))
            })
            .map(|r| r.render(None, Format::Client, now))
            .collect();
        Ok(EventList { events_json })
    }

    pub(crate) async fn joined_members(&self, req: JoinedMembersRequest) -> Result<JoinedMembersResponse> {
        let rows = self.member_events(&req.user_id, &req.room_id, None).await?;
        let members = rows
            .iter()
            .filter_map(|r| {
                let content: serde_json::Value = serde_json::from_str(&r.content).ok()?;
                (content["membership"] == "join").then(|| JoinedMember {
                    user_id: r.state_key.clone().unwrap_or_default(),
                    display_name: content["displayname"].as_str().map(str::to_owned),
                    avatar_url: content["avatar_url"].as_str().map(str::to_owned),
                })
            })
            .collect();
        Ok(JoinedMembersResponse { members })
    }
}
