//! `penguin serve --config FILE`: runs one engine node (migrations, actors, the
//! control API and the public links)
//! until SIGTERM or Ctrl-C, or until a drain request (`POST /v1/nodes/{id}/drain`)
//! has handed every tenant off, then shuts down in order (see `penguin-actors`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use penguin_config::Config;
use penguin_engine::clock::SystemClock;

use crate::node::{Node, NodeOptions};

pub async fn run(config: Option<&Path>, exit_with_parent: bool) -> anyhow::Result<()> {
    let config = Arc::new(Config::load(config)?);
    let metrics = Arc::new(penguin_api::recorder::node_recorder());
    let upkeep = metrics.handle();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let node = Node::start(
        config,
        NodeOptions {
            metrics,
            clock: Arc::new(SystemClock),
            resolver: None,
        },
    )
    .await?;
    // Tools that start nodes read these two lines (the public one first).
    crate::logging::announce(&format!(
        "penguin node public links on {}",
        node.public_url()
    ));
    crate::logging::announce(&format!("penguin node listening on {}", node.api_url()));
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutdown requested"),
        _ = node.engine().drained() => tracing::info!("drained; shutting down"),
        _ = parent_gone(), if exit_with_parent => tracing::info!("parent gone; shutting down"),
    }
    node.shutdown().await;
    Ok(())
}

/// Resolves once this process' parent has exited (it was re-parented).
async fn parent_gone() {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        let mut every = tokio::time::interval(Duration::from_millis(500));
        loop {
            every.tick().await;
            if std::os::unix::process::parent_id() != parent {
                return;
            }
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
