//! Migrations are safe when several nodes start at once: on an empty database,
//! concurrent `migrate` calls apply every migration exactly once and all succeed.

use penguin_config::DatabaseConfig;
use penguin_engine::db;

use crate::support::TestEnv;

/// `url` with its database name replaced (URL or key=value form).
fn with_database(url: &str, name: &str) -> String {
    if url.contains("dbname=") {
        url.split_whitespace()
            .map(|kv| {
                if kv.starts_with("dbname=") {
                    format!("dbname={name}")
                } else {
                    kv.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        let (base, _) = url.rsplit_once('/').expect("url has a path");
        format!("{base}/{name}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_apply_once() {
    let env = TestEnv::start().await;
    let name = format!("{}_empty", env.database_name());
    env.psql(&format!("CREATE DATABASE \"{name}\"")).await;
    let config = DatabaseConfig {
        url: with_database(&env.config.database.url, &name),
        ..env.config.database.clone()
    };
    let pools: Vec<_> = (0..4).map(|_| db::pg_pool(&config).unwrap()).collect();
    let results = futures::future::join_all(pools.iter().map(db::migrate)).await;
    let applied: Vec<Vec<String>> = results
        .into_iter()
        .map(|r| r.expect("migrate succeeds"))
        .collect();
    let total: usize = applied.iter().map(Vec::len).sum();
    let available = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    assert_eq!(
        total, available,
        "each migration applied by exactly one caller: {applied:?}"
    );
    assert!(
        db::migrate(&pools[0]).await.unwrap().is_empty(),
        "re-running applies nothing"
    );
    let client = pools[0].get().await.unwrap();
    let row = client
        .query_one("SELECT count(*) FROM warmup_schedules WHERE builtin", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    drop(client);
    drop(pools);
    env.psql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await;
}
