//! `trellis admin room ...`: rooms listed straight from the configured database (the rooms
//! service's own listing, which needs no event writer) and deleted through the running
//! server's rooms service (`remote.rooms`, the event writer), with the purge's progress on
//! stderr. Readable tables by default, one JSON object per line with `--json`.

use std::{io::Write, time::Duration};

use anyhow::Context;
use clap::Subcommand;
use trellis_core::config::Config;
use trellis_proto::rooms::{
    AdminDeleteRoomRequest, AdminDeleteStatusRequest, AdminDeletion, AdminListRoomsRequest, AdminRoom, RoomsGrpcClient,
    RoomsService,
};

#[derive(Subcommand)]
pub enum RoomCommand {
    /// List rooms, by name.
    List {
        /// Only those whose name, canonical alias or ID contains this.
        #[arg(long)]
        search: Option<String>,
        /// The admin API's order_by (name, joined_members, state_events, creator, version, ...).
        #[arg(long)]
        order_by: Option<String>,
        #[arg(long, default_value_t = 0)]
        from: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Delete a room: every local member leaves, its aliases and directory entry go, and its
    /// every row is purged (unless `--no-purge`). Needs `remote.rooms`: the running server.
    Delete {
        room: String,
        /// Keep the room's history in the database.
        #[arg(long)]
        no_purge: bool,
        /// Block the room: nobody may join it again.
        #[arg(long)]
        block: bool,
        /// Purge even if some local member could not be made to leave.
        #[arg(long)]
        force_purge: bool,
    },
}

pub(crate) async fn run(config: &Config, command: RoomCommand, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        RoomCommand::List { search, order_by, from, limit } => {
            let pool = trellis_storage::Target::from_config(&config.database)?.pool(2)?;
            trellis_storage::migrate::run(&pool).await.context("running migrations")?;
            let list = AdminListRoomsRequest { from, limit, order_by, backwards: false, search_term: search };
            let found = trellis_rooms::list_rooms(&pool, &config.server_name, list).await?;
            print_rooms(out, &found.rooms, json)?;
            if !json {
                eprintln!("{} of {} rooms", found.rooms.len(), found.total);
            }
            Ok(())
        }
        RoomCommand::Delete { room, no_purge, block, force_purge } => {
            let Some(url) = config.remote.rooms.as_deref() else {
                anyhow::bail!(
                    "deleting a room needs the running server's rooms service: set remote.rooms to its gRPC URL \
                     (or use the admin API, DELETE /_synapse/admin/v2/rooms/{{roomId}})"
                );
            };
            let rooms = RoomsGrpcClient::connect(url)?;
            let delete = AdminDeleteRoomRequest {
                admin: "cli".into(),
                room_id: room.clone(),
                block,
                purge: !no_purge,
                force_purge,
                ..AdminDeleteRoomRequest::default()
            };
            let started = rooms.admin_delete_room(delete).await.with_context(|| format!("deleting {room}"))?;
            let mut last = (String::new(), -1);
            let done = loop {
                let ask = AdminDeleteStatusRequest { delete_id: Some(started.delete_id.clone()), room_id: None };
                let now = rooms.admin_delete_status(ask).await?.deletions.into_iter().next().context("no status")?;
                if (now.status.as_str(), now.purged_rows) != (last.0.as_str(), last.1) {
                    eprintln!("{room}: {} ({} rows purged)", now.status, now.purged_rows);
                    last = (now.status.clone(), now.purged_rows);
                }
                if now.status == "complete" || now.status == "failed" {
                    break now;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            print_deletion(out, &done, json)?;
            anyhow::ensure!(done.status == "complete", "deleting {room} failed: {}", done.error.unwrap_or_default());
            Ok(())
        }
    }
}

fn print_deletion(out: &mut dyn Write, d: &AdminDeletion, json: bool) -> anyhow::Result<()> {
    if json {
        let line = serde_json::json!({
            "delete_id": d.delete_id, "room_id": d.room_id, "status": d.status, "error": d.error,
            "purged_rows": d.purged_rows, "kicked_users": d.kicked_users,
            "failed_to_kick_users": d.failed_to_kick_users, "local_aliases": d.local_aliases,
        });
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "{}: {} ({} members left, {} rows purged)",
            d.room_id,
            d.status,
            d.kicked_users.len(),
            d.purged_rows
        )?;
        for user in &d.failed_to_kick_users {
            writeln!(out, "  could not make {user} leave")?;
        }
    }
    Ok(())
}

/// Rooms as a table (or JSON lines, in the admin API's list shape).
fn print_rooms(out: &mut dyn Write, rooms: &[AdminRoom], json: bool) -> anyhow::Result<()> {
    if json {
        for r in rooms {
            let line = serde_json::json!({
                "room_id": r.room_id, "name": r.name, "canonical_alias": r.canonical_alias,
                "joined_members": r.joined_members, "joined_local_members": r.joined_local_members,
                "version": r.version, "creator": r.creator, "public": r.public,
                "state_events": r.state_events, "blocked": r.blocked,
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    if rooms.is_empty() {
        return Ok(());
    }
    let width = rooms.iter().map(|r| r.room_id.len()).max().unwrap_or(0).max("ROOM".len());
    writeln!(out, "{:width$}  {:7}  {:6}  {:7}  NAME", "ROOM", "MEMBERS", "PUBLIC", "BLOCKED")?;
    let yes = |b: bool| if b { "yes" } else { "-" };
    for r in rooms {
        let name = r.name.as_deref().or(r.canonical_alias.as_deref()).unwrap_or("");
        writeln!(
            out,
            "{:width$}  {:7}  {:6}  {:7}  {name}",
            r.room_id,
            r.joined_members,
            yes(r.public),
            yes(r.blocked)
        )?;
    }
    Ok(())
}
