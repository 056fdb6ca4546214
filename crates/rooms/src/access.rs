//! Who may read a room, and how far: members read everything they may see, former members
//! read up to their departure, anyone may read a `world_readable` room; each event is then
//! subject to the history-visibility rules (`trellis_storage::visibility`), and an erased
//! user's events to `trellis_storage::erasure`.

use trellis_core::{Error, Result, time::now_ms};
use trellis_storage::{
    erasure,
    events::{EventRow, Format, Viewer},
    relations,
    visibility::{self, HistoryVisibility, RoomHistory},
};

const SELECT_MEMBERSHIP: &str =
    "SELECT membership, pos, forgotten FROM memberships WHERE user_id = $1 AND room_id = $2";

/// A user's read access to one room.
pub(crate) struct Access {
    pub user: String,
    /// The last position the user may read: their departure, for a former member.
    pub ceiling: Option<i64>,
    pub history: RoomHistory,
    /// A server admin's access: every event, whatever the history visibility.
    pub everything: bool,
}

impl Access {
    /// Decides `user`'s access to `room`; `M_FORBIDDEN` if they may not read it at all.
    pub async fn load(client: &deadpool_postgres::Client, user: &str, room: &str) -> Result<Access> {
        let stmt = client.prepare_cached(SELECT_MEMBERSHIP).await?;
        let membership = client.query_opt(&stmt, &[&user, &room]).await?;
        let history = visibility::load_one(client, user, room).await?;
        let ceiling = match membership.as_ref().map(|r| (r.get::<_, &str>(0), r.get::<_, i64>(1), r.get::<_, bool>(2)))
        {
            Some(("join", _, _)) => None,
            _ if history.current_visibility() == HistoryVisibility::WorldReadable => None,
            // A forgotten room is no longer readable (spec: forget).
            Some(("leave" | "ban", pos, false)) => Some(pos),
            _ => return Err(Error::forbidden("You are not a member of this room")),
        };
        Ok(Access { user: user.to_owned(), ceiling, history, everything: false })
    }

    /// A server admin's access to any room: every event (the admin API's `/messages`).
    pub async fn everything(client: &deadpool_postgres::Client, user: &str, room: &str) -> Result<Access> {
        let history = visibility::load_one(client, user, room).await?;
        Ok(Access { user: user.to_owned(), ceiling: None, history, everything: true })
    }

    /// The highest position to read, given the highest readers may see at all.
    pub fn upper(&self, announced: i64) -> i64 {
        self.ceiling.map_or(announced, |c| c.min(announced))
    }

    /// Whether the user may see this event of the room.
    pub fn sees(&self, row: &EventRow) -> bool {
        self.everything || (self.ceiling.is_none_or(|c| row.pos <= c) && self.history.allows(&self.user, row))
    }

    /// The visible events of `rows`, in order.
    pub fn filter(&self, rows: Vec<EventRow>) -> Vec<EventRow> {
        rows.into_iter().filter(|r| self.sees(r)).collect()
    }

    /// The visible events of `rows`, rendered for `viewer` with their bundled aggregations.
    pub async fn serve(
        &self,
        client: &deadpool_postgres::Client,
        viewer: Viewer<'_>,
        rows: Vec<EventRow>,
    ) -> Result<Vec<String>> {
        let mut rows = self.filter(rows);
        erasure::hide_erased(client, |_| Some(&self.history), rows.iter_mut()).await?;
        relations::bundle(client, viewer, &mut rows).await?;
        let now = now_ms();
        Ok(rows.iter().map(|r| r.render(Some(viewer), Format::Client, now)).collect())
    }
}
