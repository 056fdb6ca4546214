//! `trellis admin user ...`: accounts managed from the command line through the auth
//! service's own admin operations (the admin API uses the same ones) on the configured
//! database. Readable tables by default, one JSON object per line with `--json`.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use trellis_core::config::Config;
use trellis_proto::{
    auth::{
        AdminDeactivateRequest, AdminListUsersRequest, AdminPutUserRequest, AdminResetPasswordRequest, AdminUser,
        AuthService,
    },
    rooms::RoomsGrpcClient,
};

#[derive(Args)]
pub struct AdminCommand {
    /// One JSON object per line instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminArea,
}

#[derive(Subcommand)]
pub enum AdminArea {
    /// Accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Rooms (list, delete).
    #[command(subcommand)]
    Room(crate::admin_rooms::RoomCommand),
    /// Registration tokens (create, list, get, update, delete).
    #[command(subcommand)]
    Token(crate::registration_tokens::TokenCommand),
    /// Server notices (send).
    #[command(subcommand)]
    Notice(crate::admin_notices::NoticeCommand),
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account (a localpart or a full user ID).
    Create {
        user: String,
        /// Its password (or set TRELLIS_NEW_PASSWORD); none: it cannot log in with one.
        #[arg(long, env = "TRELLIS_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long)]
        displayname: Option<String>,
        /// Make it a server admin.
        #[arg(long)]
        admin: bool,
    },
    /// List accounts, by user ID.
    List {
        /// Only those whose localpart or display name contains this.
        #[arg(long)]
        name: Option<String>,
        /// Include deactivated accounts.
        #[arg(long)]
        deactivated: bool,
        /// Only server admins.
        #[arg(long)]
        admins: bool,
        #[arg(long, default_value_t = 0)]
        from: i64,
        #[arg(long, default_value_t = 100)]
        limit: i32,
    },
    /// Deactivate an account: no more logins, every device and token removed.
    Deactivate {
        user: String,
        /// Also hide its messages from those who join later.
        #[arg(long)]
        erase: bool,
    },
    /// Set a new password; every device is logged out unless `--keep-devices`.
    ResetPassword {
        user: String,
        /// The new password (or set TRELLIS_NEW_PASSWORD).
        #[arg(long, env = "TRELLIS_NEW_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        keep_devices: bool,
    },
    /// Make an account a server admin (or, with `--revoke`, no longer one).
    MakeAdmin {
        user: String,
        #[arg(long)]
        revoke: bool,
    },
}

/// The auth service on the configured database, for a command run at the command line (this
/// one and `trellis registration-token`): connected as `trellis migrate` and the server
/// connect (`database.tls_ca_file` included), and migrated first.
pub(crate) async fn local_auth(config: &Config) -> anyhow::Result<trellis_auth::Auth> {
    let pool = trellis_storage::Target::from_config(&config.database)?.pool(2)?;
    trellis_storage::migrate::run(&pool).await.context("running migrations")?;
    Ok(trellis_auth::Auth::new(pool, trellis_auth::AuthConfig::from_config(config)))
}

/// Runs one command against the configured database (migrated first, as `trellis migrate`),
/// printing to stdout.
pub async fn run(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    run_to(config, command, &mut std::io::stdout().lock()).await
}

/// [`run`], printing to `out`.
pub async fn run_to(config: &Config, command: AdminCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command.command {
        AdminArea::User(user) => run_user(config, user, command.json, out).await,
        AdminArea::Room(room) => crate::admin_rooms::run(config, room, command.json, out).await,
        AdminArea::Token(token) => crate::registration_tokens::run_to(config, token, command.json, out).await,
        AdminArea::Notice(notice) => crate::admin_notices::run(config, notice, command.json, out).await,
    }
}

async fn run_user(config: &Config, command: UserCommand, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let auth = local_auth(config).await?;
    let qualify = |user: String| {
        if user.starts_with('@') { user } else { format!("@{user}:{}", config.server_name) }
    };
    let users = match command {
        UserCommand::Create { user, password, displayname, admin } => {
            let put = AdminPutUserRequest {
                user_id: qualify(user),
                password,
                displayname,
                make_admin: admin.then_some(true),
                ..AdminPutUserRequest::default()
            };
            let done = auth.admin_put_user(put).await?;
            let user = done.user.context("no user in the answer")?;
            anyhow::ensure!(done.created, "{} already exists (nothing was changed but what was asked)", user.user_id);
            vec![user]
        }
        UserCommand::List { name, deactivated, admins, from, limit } => {
            let list = AdminListUsersRequest {
                from,
                limit,
                name,
                guests: true,
                deactivated: (!deactivated).then_some(false),
                admins: admins.then_some(true),
                ..AdminListUsersRequest::default()
            };
            auth.admin_list_users(list).await?.users
        }
        UserCommand::Deactivate { user, erase } => {
            let user_id = qualify(user);
            // The auth service has the account leave its rooms, through the rooms service
            // configured in `remote.rooms` (the running server's event writer; this process
            // is not one).
            let rooms = config.remote.rooms.as_deref().map(RoomsGrpcClient::connect).transpose()?;
            let auth = match rooms {
                Some(rooms) => auth.with_rooms(std::sync::Arc::new(rooms)),
                None => auth,
            };
            auth.admin_deactivate(AdminDeactivateRequest { admin: String::new(), user_id: user_id.clone(), erase })
                .await?;
            match config.remote.rooms {
                Some(_) => eprintln!("{user_id} is deactivated and left its rooms"),
                None => eprintln!(
                    "{user_id} is deactivated; remote.rooms is not set, so its room memberships stay until it is \
                     deactivated through the admin API (POST /_synapse/admin/v1/deactivate/{{userId}})"
                ),
            }
            Vec::new()
        }
        UserCommand::ResetPassword { user, password, keep_devices } => {
            let reset = AdminResetPasswordRequest {
                admin: String::new(),
                user_id: qualify(user),
                new_password: password,
                logout_devices: !keep_devices,
            };
            auth.admin_reset_password(reset).await?;
            Vec::new()
        }
        UserCommand::MakeAdmin { user, revoke } => {
            let user_id = qualify(user);
            auth.admin_get_user(trellis_proto::auth::AdminUserRequest { user_id: user_id.clone() }).await?;
            let put = AdminPutUserRequest { user_id, make_admin: Some(!revoke), ..AdminPutUserRequest::default() };
            vec![auth.admin_put_user(put).await?.user.context("no user in the answer")?]
        }
    };
    print_users(out, &users, json)?;
    Ok(())
}

/// Accounts as a table (or JSON lines, in the admin API's list shape).
fn print_users(out: &mut dyn Write, users: &[AdminUser], json: bool) -> anyhow::Result<()> {
    if json {
        for u in users {
            let line = serde_json::json!({
                "name": u.user_id, "displayname": u.displayname, "avatar_url": u.avatar_url,
                "is_guest": u.is_guest, "admin": u.admin, "deactivated": u.deactivated, "erased": u.erased,
                "locked": u.locked, "creation_ts": u.creation_ts, "last_seen_ts": u.last_seen_ts,
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    if users.is_empty() {
        return Ok(());
    }
    let width = users.iter().map(|u| u.user_id.len()).max().unwrap_or(0).max("USER".len());
    writeln!(out, "{:width$}  {:5}  {:11}  {:5}  DISPLAY NAME", "USER", "ADMIN", "DEACTIVATED", "GUEST")?;
    let yes = |b: bool| if b { "yes" } else { "-" };
    for u in users {
        let name = u.displayname.as_deref().unwrap_or("");
        writeln!(
            out,
            "{:width$}  {:5}  {:11}  {:5}  {name}",
            u.user_id,
            yes(u.admin),
            yes(u.deactivated),
            yes(u.is_guest)
        )?;
    }
    Ok(())
}
