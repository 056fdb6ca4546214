//! Reports to the server's admins (spec: "Reporting content"): an event of a room the
//! reporter is in, a room, or a user, each stored with its reason for the admin API.

use ruma::{EventId, RoomId, UserId};
use trellis_core::{Error, Result, time::now_ms};
use trellis_proto::rooms::{Empty, ReportEventRequest, ReportRoomRequest, ReportUserRequest};

use crate::Rooms;

/// The longest reason kept, in bytes (a longer one is cut at a character boundary).
const MAX_REASON: usize = 4096;

const SELECT_EVENT: &str = "SELECT redacted_by IS NULL FROM events WHERE event_id = $1 AND room_id = $2";
const SELECT_ROOM: &str = "SELECT 1 FROM rooms WHERE room_id = $1";
const SELECT_USER: &str = "SELECT 1 FROM users WHERE user_id = $1";
const INSERT: &str = "INSERT INTO content_reports (reporter, room_id, event_id, target_user_id, reason, received_ts) \
     VALUES ($1, $2, $3, $4, $5, $6)";

fn clip(reason: Option<String>) -> Option<String> {
    reason.map(|mut r| {
        if r.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r.truncate(end);
        }
        r
    })
}

impl Rooms {
    async fn store_report(
        &self,
        reporter: &str,
        room: Option<&str>,
        event: Option<&str>,
        user: Option<&str>,
        reason: Option<String>,
    ) -> Result<Empty> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(INSERT).await?;
        client.execute(&stmt, &[&reporter, &room, &event, &user, &clip(reason), &now_ms()]).await?;
        tracing::info!(reporter, room, event, user, "content reported");
        Ok(Empty {})
    }

    #[tracing::instrument(skip_all, fields(reporter = %req.reporter, room_id = %req.room_id, event_id = %req.event_id))]
    pub(crate) async fn report_event(&self, req: ReportEventRequest) -> Result<Empty> {
        let reporter = UserId::parse(&req.reporter)?;
        let not_found = || Error::not_found("The event was not found or you are not joined to the room.");
        let room_id = RoomId::parse(&req.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        let event_id = EventId::parse(&req.event_id).map_err(|_| Error::invalid_param("invalid event ID"))?;
        if self.membership_of(&room_id, &reporter).await?.as_deref() != Some("join") {
            return Err(not_found());
        }
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_EVENT).await?;
        // A redacted event has nothing left to report (the spec allows 404 for it).
        let live =
            client.query_opt(&stmt, &[&event_id.as_str(), &room_id.as_str()]).await?.map(|r| r.get::<_, bool>(0));
        if live != Some(true) {
            return Err(not_found());
        }
        drop(client);
        self.store_report(reporter.as_str(), Some(room_id.as_str()), Some(event_id.as_str()), None, req.reason).await
    }

    #[tracing::instrument(skip_all, fields(reporter = %req.reporter, room_id = %req.room_id))]
    pub(crate) async fn report_room(&self, req: ReportRoomRequest) -> Result<Empty> {
        let reporter = UserId::parse(&req.reporter)?;
        let room_id = RoomId::parse(&req.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        let client = self.pool.get().await?;
        if client.query_opt(&client.prepare_cached(SELECT_ROOM).await?, &[&room_id.as_str()]).await?.is_none() {
            return Err(Error::not_found("The room was not found."));
        }
        drop(client);
        self.store_report(reporter.as_str(), Some(room_id.as_str()), None, None, Some(req.reason)).await
    }

    /// Users of other servers cannot be checked here and are recorded as reported.
    #[tracing::instrument(skip_all, fields(reporter = %req.reporter, user_id = %req.user_id))]
    pub(crate) async fn report_user(&self, req: ReportUserRequest) -> Result<Empty> {
        let reporter = UserId::parse(&req.reporter)?;
        let target = UserId::parse(&req.user_id).map_err(|_| Error::invalid_param("invalid user ID"))?;
        if target.server_name() == self.settings.server_name {
            let client = self.pool.get().await?;
            if client.query_opt(&client.prepare_cached(SELECT_USER).await?, &[&target.as_str()]).await?.is_none() {
                return Err(Error::not_found("The user was not found."));
            }
        }
        self.store_report(reporter.as_str(), None, None, Some(target.as_str()), Some(req.reason)).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_reasons_are_cut_at_a_character() {
        let long = "é".repeat(super::MAX_REASON);
        let cut = super::clip(Some(long)).unwrap();
        assert!(cut.len() <= super::MAX_REASON && cut.chars().all(|c| c == 'é'));
        assert_eq!(super::clip(Some("short".into())).as_deref(), Some("short"));
    }
}
