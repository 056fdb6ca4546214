//! The media a room's events show, for the admin API (listing and quarantining a room's
//! media): as Synapse counts them, the `url` of an event's content and its
//! `info.thumbnail_url`, split into this server's media and other servers'.

use trellis_core::{Error, Result};
use trellis_proto::rooms::{RoomMediaRequest, RoomMediaResponse};

use crate::Rooms;

const ROOM_EXISTS: &str = "SELECT 1 FROM rooms WHERE room_id = $1";
const ROOM_MEDIA: &str = "SELECT DISTINCT uri FROM ( \
       SELECT trellis_jsonb(content)->>'url' AS uri FROM events WHERE room_id = $1 \
       UNION ALL \
       SELECT trellis_jsonb(content)->'info'->>'thumbnail_url' FROM events WHERE room_id = $1 \
     ) found WHERE uri LIKE 'mxc://%' ORDER BY uri";

/// Whether an `mxc://` URI names media of `server_name`.
fn is_local(uri: &str, server_name: &str) -> bool {
    uri.strip_prefix("mxc://").and_then(|rest| rest.split_once('/')).is_some_and(|(server, _)| server == server_name)
}

impl Rooms {
    #[tracing::instrument(skip_all, fields(room_id = %req.room_id))]
    pub(crate) async fn room_media(&self, req: RoomMediaRequest) -> Result<RoomMediaResponse> {
        let client = self.pool.get().await?;
        if client.query_opt(&client.prepare_cached(ROOM_EXISTS).await?, &[&req.room_id]).await?.is_none() {
            return Err(Error::not_found("Room not found"));
        }
        let rows = client.query(&client.prepare_cached(ROOM_MEDIA).await?, &[&req.room_id]).await?;
        let (local, remote) =
            rows.into_iter().map(|r| r.get::<_, String>(0)).partition(|uri| is_local(uri, self.server_name()));
        Ok(RoomMediaResponse { local, remote })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_media() {
        assert!(is_local("mxc://hs/abc", "hs"));
        assert!(!is_local("mxc://other/abc", "hs"));
        assert!(!is_local("mxc://hs", "hs"));
    }
}
