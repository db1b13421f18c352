//! `penguin config check --config FILE`: loads the configuration as `penguin
//! serve` would (defaults, the file, `PENGUIN_<SECTION>__<KEY>`, `DATABASE_URL`,
//! `REDIS_URL`), prints the effective result as TOML with every secret masked,
//! then every problem a node would refuse to start for. Exits 1 when there is
//! one. Connects to nothing.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use penguin_config::Config;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (secrets masked) and every problem in it.
    Check {
        /// TOML configuration file (environment variables override it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

impl ConfigArgs {
    /// The configuration file the command reads (for the log settings).
    pub fn file(&self) -> Option<&Path> {
        match &self.command {
            ConfigCommand::Check { config } => config.as_deref(),
        }
    }
}

pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    let ConfigCommand::Check { config } = args.command;
    let config = match Config::layered(config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            println!("# problems\n# - {err}");
            anyhow::bail!("the configuration does not load");
        }
    };
    let text = toml::to_string(&config.masked())?;
    println!("# effective configuration (secrets masked)\n{text}");
    let problems = config.problems();
    if problems.is_empty() {
        println!("# no problems found");
        return Ok(());
    }
    println!("# problems");
    for problem in &problems {
        println!("# - {problem}");
    }
    anyhow::bail!("{} problem(s) in the configuration", problems.len())
}
