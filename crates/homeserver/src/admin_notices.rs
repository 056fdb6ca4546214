//! `trellis admin notice send USER MESSAGE`: a server notice through the running server's
//! rooms service (`remote.rooms`), the same one operation as the admin API's
//! `send_server_notice`. One readable line by default, a JSON object with `--json`.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use trellis_core::config::Config;
use trellis_proto::rooms::{RoomsGrpcClient, RoomsService, ServerNoticeRequest};

#[derive(Subcommand)]
pub enum NoticeCommand {
    /// Send a text notice to a user (a localpart or a full user ID) from the system user
    /// (`[server_notices]`). Needs `remote.rooms`: the running server.
    Send { user: String, message: String },
}

pub(crate) async fn run(
    config: &Config,
    command: NoticeCommand,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let NoticeCommand::Send { user, message } = command;
    let user_id = if user.starts_with('@') { user } else { format!("@{user}:{}", config.server_name) };
    let Some(url) = config.remote.rooms.as_deref() else {
        anyhow::bail!(
            "sending a notice needs the running server's rooms service: set remote.rooms to its gRPC URL \
             (or use the admin API, POST /_synapse/admin/v1/send_server_notice)"
        );
    };
    let rooms = RoomsGrpcClient::connect(url)?;
    let notice = ServerNoticeRequest {
        admin: String::new(),
        user_id: user_id.clone(),
        event_type: "m.room.message".into(),
        state_key: None,
        content_json: serde_json::json!({"msgtype": "m.text", "body": message}).to_string(),
        txn_id: None,
    };
    let sent = rooms.send_server_notice(notice).await.with_context(|| format!("sending a notice to {user_id}"))?;
    if json {
        let line = serde_json::json!({
            "user_id": user_id, "room_id": sent.room_id, "event_id": sent.event_id, "created_room": sent.created_room,
        });
        writeln!(out, "{line}")?;
    } else {
        let room = if sent.created_room { "a new notices room" } else { "the notices room" };
        writeln!(out, "Sent {} to {user_id} in {room} {}", sent.event_id, sent.room_id)?;
    }
    Ok(())
}
