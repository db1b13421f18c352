//! `penguin sink`: runs the scriptable loopback SMTP sink
//! ([`penguin_engine::sink`]) in the foreground, with its HTTP JSON API, until
//! Ctrl-C or SIGTERM; then prints the final stats as JSON on stdout.
//!
//! Called from `src/main.rs`. Rules come from `--rules FILE` (a JSON array of
//! [`penguin_engine::sink::Rule`]) and can be replaced later with `POST /rules`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use penguin_engine::sink::{Rule, Sink, SinkConfig};

/// Arguments of `penguin sink`.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// SMTP listen address.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub listen: SocketAddr,
    /// HTTP JSON API listen address (GET /stats, GET /messages, POST /reset, POST /rules).
    #[arg(long, default_value = "127.0.0.1:2526")]
    pub http: SocketAddr,
    /// JSON file with scripted replies, e.g.
    /// `[{"recipient_pattern": "*@bounce.test", "stage": "rcpt", "reply": "550 5.1.1 user unknown"}]`.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
}

pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    let rules = match &args.rules {
        Some(path) => read_rules(path)?,
        None => Vec::new(),
    };
    let rule_count = rules.len();
    let sink = Sink::start(SinkConfig {
        listen: args.listen,
        rules,
        http_listen: Some(args.http),
    })
    .await
    .context("starting the SMTP sink")?;

    eprintln!(
        "penguin sink: SMTP on {}, HTTP on {}, {rule_count} rule(s); Ctrl-C to stop",
        sink.smtp_addr(),
        sink.http_addr()
            .map_or_else(|| "-".to_owned(), |a| a.to_string()),
    );
    wait_for_stop_signal().await?;

    let stats = sink.stats();
    sink.shutdown().await;
    println!(
        "{}",
        serde_json::to_string_pretty(&stats).context("serializing the stats")?
    );
    Ok(())
}

fn read_rules(path: &std::path::Path) -> anyhow::Result<Vec<Rule>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading rules file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "parsing rules file {} (a JSON array of rules)",
            path.display()
        )
    })
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("listening for Ctrl-C")?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("listening for Ctrl-C")
    }
}
