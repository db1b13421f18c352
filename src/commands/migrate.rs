//! `penguin migrate --config FILE`: applies pending migrations and exits. Safe to
//! run while nodes start: migrations run under a Postgres advisory lock.

use std::path::Path;

use anyhow::Context as _;
use penguin_config::Config;
use penguin_engine::db;

pub async fn run(config: Option<&Path>) -> anyhow::Result<()> {
    // Migrations need the database, not the node's secrets.
    let config = Config::layered(config)?;
    config.validate_settings()?;
    let pg = db::pg_pool(&config.database).context("database pool")?;
    let applied = crate::node::migrate_with_retry(&pg).await?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for name in applied {
            println!("applied {name}");
        }
    }
    Ok(())
}
