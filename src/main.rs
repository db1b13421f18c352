//! `penguin`: the command line. Parses arguments, sets up logging, and hands over
//! to `penguin::commands`; nothing else lives here.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use penguin::commands;

#[derive(Debug, Parser)]
#[command(
    name = "penguin",
    version,
    about = "Penguin Engine: multi-tenant cold-outreach sending engine",
    long_about = "Penguin Engine: an actor-based, multi-tenant cold-outreach sending engine.\n\
                  Configuration: one TOML file (--config) plus PENGUIN_<SECTION>__<KEY> \
                  environment overrides; DATABASE_URL and REDIS_URL are honoured. \
                  See config/example.toml for every key and its default."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an engine node: migrate, start the actors and the control API.
    Serve {
        /// TOML configuration file (environment variables override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Shut down when the parent process is gone (nodes started by `penguin faults`).
        #[arg(long, hide = true)]
        exit_with_parent: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        /// TOML configuration file (environment variables override it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a configuration: print it with secrets masked, and every problem (`config check`).
    Config(commands::config::ConfigArgs),
    /// Manage the master key sealing DKIM private keys (`secrets rotate`).
    Secrets(commands::secrets::SecretsArgs),
    /// Measure end-to-end throughput against the raw-SMTP ceiling; or, one
    /// mode per run, lead import, an idle node's cost, the urgent lane under
    /// bulk, or memory with jobs waiting.
    Bench(commands::bench::BenchArgs),
    /// Run a whole campaign against a built-in loopback sink and report.
    Demo(commands::demo::DemoArgs),
    /// Run the loopback SMTP sink used by tests, the demo and benchmarks.
    Sink(commands::sink::SinkArgs),
    /// Run campaigns on several node processes, inject faults (kill, pause,
    /// Redis flush or restart, Postgres restart) and check what the sink got.
    Faults(commands::faults::FaultsArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let file = match &cli.command {
        Command::Serve { config, .. } | Command::Migrate { config } => config.as_deref(),
        Command::Config(args) => args.file(),
        Command::Secrets(args) => args.file(),
        _ => None,
    };
    penguin::logging::init(file);
    if let Command::Config(args) = cli.command {
        return commands::config::run(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve {
                config,
                exit_with_parent,
            } => commands::serve::run(config.as_deref(), exit_with_parent).await,
            Command::Migrate { config } => commands::migrate::run(config.as_deref()).await,
            Command::Config(_) => unreachable!("handled before the runtime starts"),
            Command::Secrets(args) => commands::secrets::run(args).await,
            Command::Bench(args) => commands::bench::run(args).await,
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Sink(args) => commands::sink::run(args).await,
            Command::Faults(args) => commands::faults::run(args).await,
        }
    })
}
