//! The end-to-end encryption parts of `/sync` besides to-device messages: `device_lists`
//! (whose device lists changed, who newly shares or no longer shares a room with the user),
//! `device_one_time_keys_count` and `device_unused_fallback_key_types`. Reads the tables the
//! auth service writes.

use trellis_core::{Result, Stream, StreamToken};
use trellis_storage::{device_lists, key_counts};

use crate::{poll::response::SyncBody, queries::Client};

/// Fills the body's device-list changes (incremental syncs only, as Synapse) and key counts;
/// true if the device holds any one-time or fallback key.
pub(crate) async fn fill(
    client: &Client,
    user: &str,
    device: &str,
    since: Option<StreamToken>,
    upto: StreamToken,
    body: &mut SyncBody,
) -> Result<bool> {
    if let Some(since) = since {
        let dl = Stream::DeviceLists;
        let mut changed = device_lists::changed(client, user, since.get(dl), upto.get(dl)).await?;
        changed.extend(device_lists::newly_shared(client, user, since.events, upto.events).await?);
        changed.sort();
        changed.dedup();
        body.device_lists.changed = changed;
        body.device_lists.left = device_lists::left(client, user, since.events, upto.events).await?;
    }
    key_counts(client, user, device, body).await
}

/// Fills `device_one_time_keys_count` and `device_unused_fallback_key_types` (the spec
/// requires both whenever the device has keys); true if it holds any.
pub(crate) async fn key_counts(client: &Client, user: &str, device: &str, body: &mut SyncBody) -> Result<bool> {
    let counts = key_counts::one_time_keys(client, user, device).await?;
    let fallback = key_counts::unused_fallback(client, user, device).await?;
    let has_keys = counts.values().any(|n| *n > 0) || !fallback.is_empty();
    body.device_one_time_keys_count = counts;
    body.device_unused_fallback_key_types = Some(fallback);
    Ok(has_keys)
}
