//! Room members: `/members` (as of a point in the stream, filtered by membership) and
//! `/joined_members`, as the user may see them (a former member sees them as of leaving);
//! the rooms two users share (`/mutual_rooms`).

use ruma::UserId;
use trellis_core::{Error, Result, StreamToken, time::now_ms};
use trellis_proto::rooms::{
    EventList, GetMembersRequest, JoinedMember, JoinedMembersRequest, JoinedMembersResponse, MutualRoomsRequest,
    MutualRoomsResponse,
};
use trellis_storage::{
    events::{COLUMNS, EventRow, Format},
    visibility::membership_of,
};

use crate::{Rooms, access::Access};

const MEMBERSHIPS: &[&str] = &["join", "invite", "knock", "leave", "ban"];
/// Rooms per page of `/mutual_rooms`.
const MUTUAL_PAGE: i64 = 100;
/// Rooms both users are joined to, in room ID order after `$3`, and how many in all.
const MUTUAL: &str = "SELECT a.room_id, count(*) OVER () FROM memberships a \
     JOIN memberships b ON b.room_id = a.room_id AND b.user_id = $2 AND b.membership = 'join' \
     WHERE a.user_id = $1 AND a.membership = 'join' AND a.room_id > $3 ORDER BY a.room_id LIMIT $4";
const MUTUAL_COUNT: &str = "SELECT count(*) FROM memberships a \
     JOIN memberships b ON b.room_id = a.room_id AND b.user_id = $2 AND b.membership = 'join' \
     WHERE a.user_id = $1 AND a.membership = 'join'";

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

impl Rooms {
    /// # `GET /_matrix/client/v1/mutual_rooms`
    pub(crate) async fn mutual_rooms(&self, req: MutualRoomsRequest) -> Result<MutualRoomsResponse> {
        let other = UserId::parse(&req.other_user_id).map_err(|_| Error::invalid_param("invalid user ID"))?;
        if other.is_historical() {
            return Err(Error::invalid_param("The user ID provided is not a compliant one"));
        }
        if other.as_str() == req.user_id {
            return Err(Error::invalid_param("You share every room with yourself"));
        }
        let after = match req.from.as_deref().filter(|f| !f.is_empty()) {
            None => String::new(),
            Some(token) => token
                .strip_prefix('m')
                .filter(|room| room.starts_with('!'))
                .ok_or_else(|| Error::invalid_param("invalid from token"))?
                .to_owned(),
        };
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(MUTUAL).await?;
        let rows = client.query(&stmt, &[&req.user_id, &other.as_str(), &after, &(MUTUAL_PAGE + 1)]).await?;
        let mut room_ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let more = room_ids.len() as i64 > MUTUAL_PAGE;
        room_ids.truncate(MUTUAL_PAGE as usize);
        // The count of the whole set, not of what follows the token.
        let count = if after.is_empty() {
            rows.first().map_or(0, |r| r.get::<_, i64>(1))
        } else {
            let stmt = client.prepare_cached(MUTUAL_COUNT).await?;
            client.query_one(&stmt, &[&req.user_id, &other.as_str()]).await?.get(0)
        };
        let next_batch = more.then(|| room_ids.last().map(|r| format!("m{r}"))).flatten();
        Ok(MutualRoomsResponse { room_ids, count: count.max(0) as u64, next_batch })
    }
}
