//! `migrations/distributed/citus.sql` fits the real schema: applied after every
//! migration, with stand-ins of Citus' two functions that refuse what Citus
//! refuses (`tests/e2e/citus_stub.sql`), it distributes every tenant-owned
//! table on `tenant_id` in one co-location group, makes every other table a
//! reference table, and leaves no table out. The stand-ins are shown to refuse
//! the mistakes they exist to catch before the file is applied.

use std::collections::BTreeSet;

use crate::support::TestEnv;

const STUB: &str = include_str!("citus_stub.sql");
const CITUS: &str = include_str!("../../migrations/distributed/citus.sql");

/// Runs `sql` and returns its error message (panics if it succeeds).
async fn refused(env: &TestEnv, sql: &str) -> String {
    let client = env.pg.get().await.expect("a connection");
    match client.batch_execute(sql).await {
        Ok(()) => panic!("`{sql}` was accepted"),
        Err(err) => err
            .as_db_error()
            .map(|db| db.message().to_string())
            .unwrap_or_else(|| err.to_string()),
    }
}

async fn uncovered(env: &TestEnv) -> BTreeSet<String> {
    env.psql("SELECT citus_stub.uncovered()")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn the_citus_ddl_distributes_every_table_by_tenant() {
    let env = TestEnv::start().await;
    let client = env.pg.get().await.expect("a connection");
    client
        .batch_execute(STUB)
        .await
        .expect("the stand-ins load");
    let all = uncovered(&env).await;
    assert!(
        all.contains("send_jobs") && all.contains("tenants"),
        "{all:?}"
    );

    // What the stand-ins refuse, as Citus would.
    let cases = [
        (
            "SELECT create_distributed_table('api_tokens', 'tenant_id')",
            "api_tokens_token_hash_key",
        ),
        (
            "SELECT create_distributed_table('smtp_ips', 'tenant_id')",
            "smtp_ips_address",
        ),
        (
            "SELECT create_distributed_table('leads', 'tenant_id', colocate_with => 'none')",
            "neither distributed nor a reference table",
        ),
        (
            "SELECT create_distributed_table('delivery_events_default', 'tenant_id')",
            "is a partition",
        ),
        (
            "SELECT create_distributed_table('campaigns', 'no_such_column')",
            "does not exist",
        ),
        (
            "SELECT create_reference_table('tenants'); \
             SELECT create_distributed_table('campaigns', 'tenant_id'); \
             SELECT create_reference_table('campaign_steps')",
            "not a reference table",
        ),
        (
            "SELECT create_reference_table('tenants'); \
             SELECT create_distributed_table('campaigns', 'tenant_id', colocate_with => 'none'); \
             SELECT create_distributed_table('leads', 'tenant_id', colocate_with => 'none')",
            "not in its co-location group",
        ),
    ];
    for (sql, expected) in cases {
        // batch_execute runs the statements as one implicit transaction: a
        // refusal leaves nothing registered.
        let message = refused(&env, sql).await;
        assert!(message.contains(expected), "`{sql}`: {message}");
        assert_eq!(uncovered(&env).await, all, "`{sql}` registered something");
    }

    client
        .batch_execute(CITUS)
        .await
        .unwrap_or_else(|e| panic!("citus.sql: {:?}", e.as_db_error().map(|d| d.message())));
    assert_eq!(uncovered(&env).await, BTreeSet::new(), "tables left out");

    // Every table with a tenant_id is distributed on it in one group, except
    // the reference tables citus.sql names for cross-tenant uniqueness.
    let rows = env
        .psql(
            "SELECT t.rel::text, t.kind, coalesce(a.attname::text, ''), coalesce(t.colocation::text, ''),
                    EXISTS (SELECT 1 FROM pg_attribute x
                            WHERE x.attrelid = t.rel AND x.attname = 'tenant_id')
             FROM citus_stub.tables t
             LEFT JOIN pg_attribute a ON a.attrelid = t.rel AND a.attnum = t.dist_column",
        )
        .await;
    let cross_tenant = ["api_tokens", "smtp_ips", "sending_domains", "audit_log"];
    for row in &rows {
        let (table, kind, column, group, has_tenant): (String, String, String, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if kind == "distributed" {
            assert_eq!(
                (column.as_str(), group.as_str()),
                ("tenant_id", "campaigns"),
                "{table}"
            );
        } else {
            assert!(
                !has_tenant || cross_tenant.contains(&table.as_str()),
                "{table} has a tenant_id but is a reference table"
            );
        }
    }
    let distributed = rows
        .iter()
        .filter(|r| r.get::<_, String>(1) == "distributed")
        .count();
    assert!(distributed >= 19, "only {distributed} tables distributed");
}
