//! `trellis admin token ...` (and its older name `trellis registration-token ...`): registration
//! tokens managed from the command line, through the auth service's own operations (the admin
//! API uses the same ones) on the configured database. Under `admin`, a table by default and
//! one JSON object per token with `--json`; `registration-token` always prints JSON.

use std::io::Write;

use clap::Subcommand;
use trellis_core::config::Config;
use trellis_proto::auth::{
    AuthService, CreateRegistrationTokenRequest, ListRegistrationTokensRequest, RegistrationToken,
    RegistrationTokenRequest, UpdateRegistrationTokenRequest,
};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token (random unless `--token` names it).
    Create {
        /// The token itself: 1 to 64 of A-Z, a-z, 0-9, '.', '_', '~' and '-'.
        #[arg(long)]
        token: Option<String>,
        /// Length of a random token (default 16).
        #[arg(long, conflicts_with = "token")]
        length: Option<i32>,
        /// How many accounts it may create (default: any number).
        #[arg(long)]
        uses_allowed: Option<i32>,
        /// When it stops working, in milliseconds since the epoch (default: never).
        #[arg(long)]
        expiry_time: Option<i64>,
    },
    /// List tokens.
    List {
        /// Only those usable now (true) or only those used up or expired (false).
        #[arg(long)]
        valid: Option<bool>,
    },
    /// Show one token.
    Get { token: String },
    /// Change a token's uses or expiry.
    Update {
        token: String,
        #[arg(long, conflicts_with = "unlimited")]
        uses_allowed: Option<i32>,
        /// Any number of uses from now on.
        #[arg(long)]
        unlimited: bool,
        #[arg(long, conflicts_with = "no_expiry")]
        expiry_time: Option<i64>,
        /// Never expires from now on.
        #[arg(long)]
        no_expiry: bool,
    },
    /// Delete a token.
    Delete { token: String },
}

/// Runs one command against the configured database (migrated first, as `trellis migrate`),
/// one JSON object per token on stdout.
pub async fn run(config: &Config, command: TokenCommand) -> anyhow::Result<()> {
    run_to(config, command, true, &mut std::io::stdout().lock()).await
}

/// [`run`], printing to `out`: JSON lines, or a table.
pub(crate) async fn run_to(
    config: &Config,
    command: TokenCommand,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let auth = crate::admin::local_auth(config).await?;
    let tokens = match command {
        TokenCommand::Create { token, length, uses_allowed, expiry_time } => {
            let req = CreateRegistrationTokenRequest { token, length, uses_allowed, expiry_time };
            vec![auth.create_registration_token(req).await?]
        }
        TokenCommand::List { valid } => {
            auth.list_registration_tokens(ListRegistrationTokensRequest { valid }).await?.tokens
        }
        TokenCommand::Get { token } => vec![auth.get_registration_token(RegistrationTokenRequest { token }).await?],
        TokenCommand::Update { token, uses_allowed, unlimited, expiry_time, no_expiry } => {
            let req = UpdateRegistrationTokenRequest {
                token,
                set_uses_allowed: unlimited || uses_allowed.is_some(),
                uses_allowed,
                set_expiry_time: no_expiry || expiry_time.is_some(),
                expiry_time,
            };
            vec![auth.update_registration_token(req).await?]
        }
        TokenCommand::Delete { token } => {
            auth.delete_registration_token(RegistrationTokenRequest { token }).await?;
            Vec::new()
        }
    };
    if json {
        for token in &tokens {
            writeln!(out, "{}", as_json(token))?;
        }
        return Ok(());
    }
    if tokens.is_empty() {
        return Ok(());
    }
    let width = tokens.iter().map(|t| t.token.len()).max().unwrap_or(0).max("TOKEN".len());
    writeln!(out, "{:width$}  {:12}  {:7}  {:9}  EXPIRES (ms)", "TOKEN", "USES ALLOWED", "PENDING", "COMPLETED")?;
    for t in &tokens {
        let uses = t.uses_allowed.map_or("any".to_owned(), |n| n.to_string());
        let expiry = t.expiry_time.map_or("never".to_owned(), |ms| ms.to_string());
        writeln!(out, "{:width$}  {uses:12}  {:7}  {:9}  {expiry}", t.token, t.pending, t.completed)?;
    }
    Ok(())
}

/// A token as the admin API shows it.
fn as_json(t: &RegistrationToken) -> serde_json::Value {
    serde_json::json!({
        "token": t.token,
        "uses_allowed": t.uses_allowed,
        "pending": t.pending,
        "completed": t.completed,
        "expiry_time": t.expiry_time,
    })
}
