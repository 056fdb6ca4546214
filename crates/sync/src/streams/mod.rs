//! The streams the sync service writes besides push: typing, read receipts, presence, account
//! data (tags and room-upgrade carry-over included), to-device messages and the end-to-end
//! parts of `/sync` (device lists, key counts). Each file stores its stream, takes positions and
//! announces changes; `/sync` (in `poll/`) and sliding sync read them back.
//!
//! This file: positions of the sync service's own streams (receipts, typing, account data,
//! presence, to-device), and reading every stream's position (events and device lists included).
//!
//! A writer takes the next position by bumping the stream's row in `sync_streams` inside its
//! transaction. The row stays locked until commit, so writers of one stream commit in position
//! order and the row's value is always safe for readers: everything at or below it has
//! committed. Wake-ups are published after commit.

pub(crate) mod account_data;
pub(crate) mod e2ee;
pub(crate) mod presence;
pub(crate) mod receipts;
pub(crate) mod room_upgrade;
pub(crate) mod to_device;
pub(crate) mod typing;

use deadpool_postgres::Transaction;
use trellis_bus::Channel;
use trellis_core::{Result, Stream, StreamPos, StreamToken};

use crate::SyncWorker;

const BUMP: &str = "UPDATE sync_streams SET pos = pos + 1 WHERE stream = $1 RETURNING pos";
const POSITIONS: &str = "SELECT stream, pos FROM sync_streams \
     UNION ALL SELECT 'events', pos FROM stream_positions WHERE stream = 'events' \
     UNION ALL SELECT stream, pos FROM e2ee_streams";

/// Takes the next position of `stream` inside `tx`.
pub async fn next_position(tx: &Transaction<'_>, stream: Stream) -> Result<StreamPos> {
    let stmt = tx.prepare_cached(BUMP).await?;
    Ok(tx.query_one(&stmt, &[&stream.table_name()]).await?.get(0))
}

/// Every stream's committed position.
pub async fn current(client: &deadpool_postgres::Client) -> Result<StreamToken> {
    let stmt = client.prepare_cached(POSITIONS).await?;
    let mut token = StreamToken::default();
    for row in client.query(&stmt, &[]).await? {
        let name: &str = row.get(0);
        if let Some(stream) = Stream::ALL.into_iter().find(|s| s.table_name() == name) {
            token.set(stream, row.get(1));
        }
    }
    Ok(token)
}

impl SyncWorker {
    /// Tells the sync workers holding long-polls on `channels` that `stream` reached `pos`.
    pub(crate) async fn announce(&self, channels: &[Channel], stream: Stream, pos: StreamPos) {
        self.bus.publish_at(channels, stream, pos).await;
    }
}
