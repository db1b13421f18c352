//! `penguin secrets rotate --config FILE`: re-seals every DKIM private key under
//! the current `[secrets] master_key`, opening each with the master key it was
//! sealed under (the current one or one of `previous_master_keys`).
//!
//! Safe to run while nodes serve: each row is updated only if its key version is
//! still the one read, and nodes configured with both keys open either version.
//! Needs the database and `[secrets]` only, not the node's other secrets.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use penguin_config::Config;
use penguin_engine::db;
use penguin_engine::secrets::Sealer;
use penguin_engine::store::dkim_keys;

#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Re-seal every stored DKIM private key under the current master key.
    #[command(
        long_about = "Re-seal every stored DKIM private key under the current master key.\n\n\
        To rotate the master key:\n  \
        1. set the new key as `[secrets] master_key` (make one with `openssl rand -base64 32`)\n     \
           and the old one in `[secrets] previous_master_keys`, on every node and here;\n  \
        2. run `penguin secrets rotate --config FILE`;\n  \
        3. then remove the old key from `previous_master_keys` everywhere.\n\n\
        Keys sealed under a master key that is not configured stop the run with an error\n\
        naming the tenant, domain and selector; fix the configuration and run it again."
    )]
    Rotate {
        /// TOML configuration file (environment variables override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Rows read and re-sealed per transaction.
        #[arg(long, default_value_t = 500, hide = true)]
        batch: i64,
    },
}

impl SecretsArgs {
    /// The configuration file the command reads (for the log settings).
    pub fn file(&self) -> Option<&std::path::Path> {
        match &self.command {
            SecretsCommand::Rotate { config, .. } => config.as_deref(),
        }
    }
}

pub async fn run(args: SecretsArgs) -> anyhow::Result<()> {
    match args.command {
        SecretsCommand::Rotate { config, batch } => rotate(config.as_deref(), batch).await,
    }
}

async fn rotate(config: Option<&std::path::Path>, batch: i64) -> anyhow::Result<()> {
    let config = Config::layered(config)?;
    config.validate_settings()?;
    config.secrets.validate()?;
    let sealer = Sealer::from_config(&config.secrets)?.context(
        "no master key: set `[secrets] master_key` (env PENGUIN_SECRETS__MASTER_KEY) to the \
         new key and put the old one in `previous_master_keys`",
    )?;
    let pg = db::pg_pool(&config.database).context("database pool")?;
    let resealed = dkim_keys::reseal_all(&pg, &sealer, batch)
        .await
        .context("re-sealing DKIM keys (has `penguin migrate` run?)")?;
    println!(
        "re-sealed {resealed} DKIM key{} under master key version {}",
        if resealed == 1 { "" } else { "s" },
        sealer.version()
    );
    Ok(())
}
