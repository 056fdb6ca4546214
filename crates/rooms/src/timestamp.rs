//! Jumping to a date: the event closest to a timestamp in one direction
//! (`/rooms/{roomId}/timestamp_to_event`), among the events the user may see.

use trellis_core::{Error, Result};
use trellis_proto::rooms::{TimestampToEventRequest, TimestampToEventResponse};
use trellis_storage::events::{COLUMNS, EventRow};

use crate::{Rooms, access::Access};

/// Candidates read per round; hidden events are skipped and the next round continues.
const BATCH: i64 = 100;
/// Rounds before giving up on a room whose history the user cannot see.
const MAX_ROUNDS: usize = 20;

impl Rooms {
    #[tracing::instrument(skip_all, fields(user = %req.user_id, room_id = %req.room_id))]
    pub(crate) async fn timestamp_to_event(&self, req: TimestampToEventRequest) -> Result<TimestampToEventResponse> {
        let client = self.pool.get().await?;
        let access = Access::load(&client, &req.user_id, &req.room_id).await?;
        let upper = access.upper(self.announced_position());
        // Keyset pagination over (origin_server_ts, pos) in the asked direction.
        let sql = if req.forward {
            format!(
                "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND pos <= $2 \
                 AND (origin_server_ts, pos) > ($3, $4) ORDER BY origin_server_ts, pos LIMIT $5"
            )
        } else {
            format!(
                "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND pos <= $2 \
                 AND (origin_server_ts, pos) < ($3, $4) ORDER BY origin_server_ts DESC, pos DESC LIMIT $5"
            )
        };
        let stmt = client.prepare_cached(&sql).await?;
        // Start just outside `ts` so events exactly at it are included either way.
        let mut cursor: (i64, i64) = if req.forward { (req.ts, i64::MIN) } else { (req.ts, i64::MAX) };
        for _ in 0..MAX_ROUNDS {
            let rows = client.query(&stmt, &[&req.room_id, &upper, &cursor.0, &cursor.1, &BATCH]).await?;
            let done = (rows.len() as i64) < BATCH;
            for row in &rows {
                let ev = EventRow::from_row(row);
                cursor = (ev.origin_server_ts, ev.pos);
                if access.sees(&ev) {
                    return Ok(TimestampToEventResponse {
                        event_id: ev.event_id,
                        origin_server_ts: ev.origin_server_ts,
                    });
                }
            }
            if done {
                break;
            }
        }
        Err(Error::not_found("No event found in that direction"))
    }
}
