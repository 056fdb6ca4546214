//! Helpers shared by the `rooms_*` scenarios: registered users and room paths.

use serde_json::Value;
use trellis_testkit::{Client, enc};

/// `/_matrix/client/v3/rooms/{room}{rest}`.
pub fn room_path(room: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}{rest}", enc(room))
}

/// `/_matrix/client/v1/rooms/{room}{rest}`.
pub fn v1_path(room: &str, rest: &str) -> String {
    format!("/_matrix/client/v1/rooms/{}{rest}", enc(room))
}

/// Message bodies of a list of events, in order.
pub fn bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|evs| {
            evs.iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The whole of a room's history the client may see, oldest first.
pub async fn history(client: &Client, room: &str) -> Value {
    client.get(&room_path(room, "/messages?dir=f&limit=1000")).await.ok()["chunk"].clone()
}

/// Sends a message and returns its event ID.
pub async fn say(client: &Client, room: &str, body: &str) -> String {
    let txn = format!("t{}", rand::random::<u64>());
    client.send_text(room, &txn, body).await
}
