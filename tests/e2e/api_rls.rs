//! API scenario: row-level security is a real second wall (DESIGN.md §2, §8).
//!
//! - At the database: two tenants hold rows in every tenant table. Under the role
//!   `penguin_tenant` (from `V5__api_role.sql`) with no tenant set, every tenant
//!   table answers no row; with tenant A set, no row of B is visible in any table,
//!   UPDATE and DELETE of B's rows change nothing, and a row for B cannot be
//!   inserted. To test the policies rather than the grants, the test database
//!   grants the role every privilege on every tenant table first; the grants the
//!   migration gives are checked separately, and the role is checked to be no
//!   owner, no superuser, without BYPASSRLS.
//! - At the API: the tenant routes run under that role. With the policies of
//!   campaigns, send_jobs, suppressions, smtp_ips and api_tokens turned to `USING (false)`
//!   in this test's database (the table owner would not care), the caller's own
//!   campaign, job, IP and token answer 404 on every route, its lists come back empty
//!   and its writes are refused, while the admin (on the owner's role) still sees
//!   them; restored, they answer again.

use serde_json::json;
use uuid::Uuid;

use crate::support::api::{Answer, ApiClient, ApiServer, campaign_body, count, leads};
use crate::support::{TestEnv, admin_token};

/// Every tenant-owned table, with the column naming its tenant.
const TENANT_TABLES: [(&str, &str); 24] = [
    ("tenants", "id"),
    ("api_tokens", "tenant_id"),
    ("smtp_ips", "tenant_id"),
    ("sending_domains", "tenant_id"),
    ("dkim_keys", "tenant_id"),
    ("campaigns", "tenant_id"),
    ("campaign_steps", "tenant_id"),
    ("leads", "tenant_id"),
    ("send_jobs", "tenant_id"),
    ("suppressions", "tenant_id"),
    ("delivery_events", "tenant_id"),
    ("delivery_event_keys", "tenant_id"),
    ("campaign_daily_stats", "tenant_id"),
    ("campaign_minute_stats", "tenant_id"),
    ("campaign_day_usage", "tenant_id"),
    ("campaign_step_stats", "tenant_id"),
    ("ip_daily_stats", "tenant_id"),
    ("ip_hourly_usage", "tenant_id"),
    ("warmup_history", "tenant_id"),
    ("ip_shaping_actions", "tenant_id"),
    ("webhooks", "tenant_id"),
    ("webhook_deliveries", "tenant_id"),
    ("webhook_attempts", "tenant_id"),
    ("audit_log", "tenant_id"),
];

/// A tenant with a row in every tenant table; returns `(tenant, token, campaign)`.
async fn populated_tenant(
    env: &TestEnv,
    api: &ApiClient,
    name: &str,
    ip: &str,
) -> (Uuid, String, Uuid) {
    let (tenant, token) = api.create_tenant(name).await;
    let ip = api.add_ip(tenant, ip).await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    api.add_leads(&token, campaign, leads(3)).await.expect(200);
    api.action_ok(&token, campaign, "start").await;
    api.add_suppressions(&token, &["gone@example.com"], "manual")
        .await;
    for sql in [
        format!("INSERT INTO sending_domains (tenant_id, id, domain) VALUES ('{tenant}', gen_random_uuid(), '{name}.example')"),
        format!(
            "INSERT INTO dkim_keys (tenant_id, domain_id, selector, algorithm, public_key,
                 sealed_key, key_version, state)
             SELECT tenant_id, id, 's1', 'rsa-sha256', 'AAAA', '\\x00', 'k0', 'active'
             FROM sending_domains WHERE tenant_id = '{tenant}'"
        ),
        format!(
            "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, ip_id, kind)
             SELECT tenant_id, campaign_id, id, '{ip}', 'sent' FROM send_jobs WHERE tenant_id = '{tenant}'"
        ),
        format!(
            "INSERT INTO delivery_event_keys (tenant_id, job_id, kind)
             SELECT tenant_id, id, 'open' FROM send_jobs WHERE tenant_id = '{tenant}'"
        ),
        format!("INSERT INTO campaign_daily_stats (tenant_id, campaign_id, day, sent) VALUES ('{tenant}', '{campaign}', current_date, 3)"),
        format!("INSERT INTO campaign_day_usage (tenant_id, campaign_id, day, started) VALUES ('{tenant}', '{campaign}', current_date, 3)"),
        format!("INSERT INTO campaign_steps (tenant_id, campaign_id, step, delay_secs, text_body) VALUES ('{tenant}', '{campaign}', 2, 60, 'two')"),
        format!("INSERT INTO campaign_step_stats (tenant_id, campaign_id, step, sent) VALUES ('{tenant}', '{campaign}', 1, 3)"),
        format!("INSERT INTO campaign_minute_stats (tenant_id, campaign_id, minute, sent, finished) VALUES ('{tenant}', '{campaign}', date_trunc('minute', now()), 3, 3)"),
        format!("INSERT INTO ip_daily_stats (tenant_id, ip_id, day, sent) VALUES ('{tenant}', '{ip}', current_date, 3)"),
        format!(
            "INSERT INTO ip_hourly_usage (tenant_id, ip_id, hour, day, reserved)
             VALUES ('{tenant}', '{ip}', date_trunc('hour', now()), current_date, 3)"
        ),
        format!(
            "INSERT INTO warmup_history (tenant_id, ip_id, day, decision, from_day, to_day, sent, reason)
             VALUES ('{tenant}', '{ip}', current_date, 'hold', 1, 1, 3, 'test')"
        ),
        format!(
            "INSERT INTO ip_shaping_actions (tenant_id, ip_id, key, action, provider, rule,
                 effective_per_hour, reason, started_at, until)
             VALUES ('{tenant}', '{ip}', 'default', 'suspend', 'default', 'test', 0, 'test',
                 now(), now() + interval '1 hour')"
        ),
        format!(
            "INSERT INTO webhooks (tenant_id, id, url, events, sealed_secret, secret_version)
             VALUES ('{tenant}', gen_random_uuid(), 'http://127.0.0.1/hook', '{{sent}}', '\\x00', 'k0')"
        ),
        format!(
            "INSERT INTO webhook_deliveries (tenant_id, webhook_id, event_id, kind)
             SELECT tenant_id, id, 1, 'sent' FROM webhooks WHERE tenant_id = '{tenant}'"
        ),
        format!(
            "INSERT INTO webhook_attempts (tenant_id, delivery_id, attempt, status_code, duration_ms)
             SELECT tenant_id, id, 1, 200, 5 FROM webhook_deliveries WHERE tenant_id = '{tenant}'"
        ),
        format!(
            "INSERT INTO audit_log (actor, tenant_id, action, target)
             VALUES ('admin', '{tenant}', 'ip.add', '{ip}')"
        ),
    ] {
        env.psql(&sql).await;
    }
    (tenant, token, campaign)
}

/// Rows of `tenant` per tenant table, as the owner sees them.
async fn rows_of(env: &TestEnv, tenant: Uuid) -> Vec<(&'static str, i64)> {
    let mut rows = Vec::new();
    for (table, column) in TENANT_TABLES {
        let sql = format!("SELECT count(*) FROM {table} WHERE {column} = '{tenant}'");
        rows.push((table, count(env, &sql).await));
    }
    rows
}

#[tokio::test]
async fn the_tenant_role_sees_and_changes_only_its_tenants_rows() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (a, _, _) = populated_tenant(&env, api, "alpha", "127.0.0.2").await;
    let (b, _, _) = populated_tenant(&env, api, "beta", "127.0.0.3").await;

    // The list above is every tenant table there is, each with its policy
    // (the partitions of `delivery_events` are reached through it only: the
    // role has no privilege on them).
    let mut found: Vec<String> = env
        .psql(
            "SELECT table_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND column_name = 'tenant_id'
               AND table_name::text NOT IN (SELECT relname::text FROM pg_class WHERE relispartition)
             UNION SELECT 'tenants' ORDER BY 1",
        )
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut listed: Vec<String> = TENANT_TABLES.iter().map(|(t, _)| t.to_string()).collect();
    found.sort();
    listed.sort();
    assert_eq!(found, listed, "a tenant table the test does not know");
    for (table, _) in TENANT_TABLES {
        let sql = format!(
            "SELECT count(*) FROM pg_class c JOIN pg_policy p ON p.polrelid = c.oid
             WHERE c.oid = '{table}'::regclass AND c.relrowsecurity
               AND p.polname = 'tenant_isolation'"
        );
        assert_eq!(count(&env, &sql).await, 1, "{table} lacks its policy");
    }
    let before_b = rows_of(&env, b).await;
    for (table, n) in rows_of(&env, a).await.into_iter().chain(before_b.clone()) {
        assert!(n > 0, "the test gives every tenant rows in {table}");
    }

    // The role: no login, no superuser, no BYPASSRLS, owns nothing.
    let role = env
        .psql(
            "SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb
             FROM pg_roles WHERE rolname = 'penguin_tenant'",
        )
        .await;
    assert_eq!(role.len(), 1, "the role exists");
    for flag in 0..5 {
        assert!(
            !role[0].get::<_, bool>(flag),
            "role flag {flag} must be off"
        );
    }
    let owned = "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
                 WHERE r.rolname = 'penguin_tenant'";
    assert_eq!(count(&env, owned).await, 0);

    // The migration's grants are exactly what the tenant routes need.
    let grants: Vec<String> = env
        .psql(
            "SELECT table_name || ':' || string_agg(privilege_type, ',' ORDER BY privilege_type)
             FROM information_schema.role_table_grants
             WHERE grantee = 'penguin_tenant' GROUP BY table_name ORDER BY table_name",
        )
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        grants,
        [
            "audit_log:INSERT",
            "campaign_daily_stats:SELECT",
            "campaign_day_usage:SELECT",
            "campaign_minute_stats:SELECT",
            "campaign_step_stats:INSERT,SELECT,UPDATE",
            "campaign_steps:INSERT,SELECT",
            "campaigns:INSERT,SELECT,UPDATE",
            "delivery_event_keys:DELETE,INSERT,SELECT",
            "delivery_events:INSERT,SELECT",
            "global_suppressions:SELECT",
            "ip_daily_stats:INSERT,SELECT",
            "ip_hourly_usage:SELECT",
            "ip_shaping_actions:SELECT",
            "leads:DELETE,INSERT,SELECT",
            "send_jobs:DELETE,INSERT,SELECT,UPDATE",
            "sending_domains:SELECT",
            "smtp_ips:SELECT",
            "suppressions:DELETE,INSERT,SELECT",
            "tenants:SELECT",
            "warmup_history:SELECT",
            "warmup_schedules:SELECT",
            "webhook_attempts:SELECT",
            "webhook_deliveries:INSERT,SELECT,UPDATE",
            "webhooks:DELETE,INSERT",
        ]
    );
    // Column grants: a token's hash is never read back; of an IP, only the
    // status is set.
    for (table, column, privilege, granted) in [
        ("api_tokens", "token_hash", "SELECT", false),
        ("api_tokens", "created_at", "SELECT", true),
        ("api_tokens", "revoked_at", "UPDATE", true),
        ("api_tokens", "token_hash", "UPDATE", false),
        ("smtp_ips", "status", "UPDATE", true),
        ("smtp_ips", "address", "UPDATE", false),
        ("smtp_ips", "tenant_id", "UPDATE", false),
        ("ip_daily_stats", "complaints", "UPDATE", true),
        // A bounce reported after delivery moves a message from sent to bounced.
        ("ip_daily_stats", "sent", "UPDATE", true),
        ("ip_daily_stats", "deferred", "UPDATE", false),
        ("campaign_daily_stats", "bounced", "UPDATE", true),
        ("campaign_daily_stats", "failed", "UPDATE", false),
        ("suppressions", "expires_at", "UPDATE", true),
        ("suppressions", "tenant_id", "UPDATE", false),
        ("suppressions", "email", "UPDATE", false),
        ("dkim_keys", "public_key", "SELECT", true),
        ("dkim_keys", "sealed_key", "SELECT", false),
        ("dkim_keys", "key_version", "SELECT", false),
        ("webhooks", "url", "SELECT", true),
        ("webhooks", "sealed_secret", "SELECT", false),
        ("webhooks", "secret_version", "SELECT", false),
    ] {
        let sql = format!(
            "SELECT has_column_privilege('penguin_tenant', '{table}', '{column}', '{privilege}')"
        );
        let has: bool = env.psql(&sql).await[0].get(0);
        assert_eq!(has, granted, "{privilege} on {table}.{column}");
    }

    // From here the policies alone stand between the role and B's rows.
    let tables = TENANT_TABLES.map(|(t, _)| t).join(", ");
    env.psql(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO penguin_tenant"
    ))
    .await;
    let mut client = env.pg.get().await.expect("connection");

    // No tenant set (unset, then empty): nothing is visible.
    for setting in [None, Some("")] {
        let tx = client.transaction().await.expect("begin");
        tx.batch_execute("SET LOCAL ROLE penguin_tenant")
            .await
            .expect("set role");
        if let Some(value) = setting {
            tx.execute(
                "SELECT set_config('app.current_tenant_id', $1, true)",
                &[&value],
            )
            .await
            .expect("set tenant");
        }
        let user: String = tx
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(user, "penguin_tenant");
        for (table, _) in TENANT_TABLES {
            let sql = format!("SELECT count(*) FROM {table}");
            let n: i64 = tx.query_one(&sql, &[]).await.expect(&sql).get(0);
            assert_eq!(n, 0, "{table} shows rows with tenant {setting:?}");
        }
        tx.rollback().await.expect("rollback");
    }

    // Tenant A: its own rows only; B's rows cannot be changed or deleted.
    let tx = penguin_engine::db::tenant_transaction(&mut client, a)
        .await
        .expect("tenant transaction");
    for (table, column) in TENANT_TABLES {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE {column} = $1), count(*) FILTER (WHERE {column} <> $1)
             FROM {table}"
        );
        let row = tx.query_one(&sql, &[&a]).await.expect(&sql);
        assert!(row.get::<_, i64>(0) > 0, "{table}: A sees its rows");
        assert_eq!(
            row.get::<_, i64>(1),
            0,
            "{table}: A sees another tenant's rows"
        );
        let update = format!("UPDATE {table} SET {column} = {column} WHERE {column} = $1");
        assert_eq!(
            tx.execute(&update, &[&b]).await.expect(&update),
            0,
            "{update}"
        );
        let delete = format!("DELETE FROM {table} WHERE {column} = $1");
        assert_eq!(
            tx.execute(&delete, &[&b]).await.expect(&delete),
            0,
            "{delete}"
        );
        // Unfiltered statements reach no foreign row either.
        let update_all = format!("UPDATE {table} SET {column} = {column}");
        tx.execute(&update_all, &[]).await.expect(&update_all);
    }
    let refused = tx
        .execute(
            "INSERT INTO suppressions (tenant_id, email, reason) VALUES ($1, 'x@example.com', 'manual')",
            &[&b],
        )
        .await
        .expect_err("a row for B is refused");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    drop(tx);
    drop(client);
    assert_eq!(rows_of(&env, b).await, before_b, "B's rows are untouched");
}

#[tokio::test]
async fn tenant_routes_run_under_the_role() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    api.add_leads(&token, campaign, leads(2)).await.expect(200);
    api.action_ok(&token, campaign, "start").await;
    api.add_suppressions(&token, &["gone@example.com"], "manual")
        .await;
    // A job that never left: a complaint about it finds it and answers 409.
    let job: Uuid = env.psql("SELECT id FROM send_jobs LIMIT 1").await[0].get(0);
    let complaint = json!({ "job_id": job });
    let complained = api.post("/v1/complaints", Some(&token), &complaint).await;
    complained.assert_error(409, "conflict");
    let tokens_path = format!("/v1/tenants/{tenant}/tokens");
    let token_id = api.get(&tokens_path, Some(&token)).await.expect(200)["tokens"][0]["id"]
        .as_str()
        .expect("token id")
        .to_string();
    let length = |answer: Answer, list: &str| -> usize {
        answer.expect(200)[list].as_array().expect(list).len()
    };
    assert_eq!(
        length(api.suppressions(&token, "").await, "suppressions"),
        1
    );
    assert_eq!(length(api.get("/v1/ips", Some(&token)).await, "ips"), 1);

    // The owner would bypass these; the tenant role may not.
    let tables = [
        "campaigns",
        "send_jobs",
        "suppressions",
        "smtp_ips",
        "api_tokens",
    ];
    for table in tables {
        let sql = format!("ALTER POLICY tenant_isolation ON {table} USING (false)");
        env.psql(&sql).await;
    }
    api.campaign(&token, campaign)
        .await
        .assert_error(404, "not_found");
    api.events(&token, campaign, "")
        .await
        .assert_error(404, "not_found");
    let imported = api.add_leads(&token, campaign, leads(1)).await;
    imported.assert_error(404, "not_found");
    for action in ["start", "pause", "resume", "cancel"] {
        let answer = api.action(&token, campaign, action).await;
        answer.assert_error(404, "not_found");
    }
    // Its own IP is invisible too, so the pool check refuses a new campaign.
    let created = api
        .create_campaign_with(&token, &campaign_body(&[ip]))
        .await;
    created.assert_error(422, "invalid_request");
    assert_eq!(
        length(api.suppressions(&token, "").await, "suppressions"),
        0
    );
    let removed = api
        .remove_suppression(Some(&token), "gone@example.com")
        .await;
    removed.assert_error(404, "not_found");
    let added = api
        .add_suppressions_with(&token, &json!({"emails": ["new@example.com"]}))
        .await;
    assert_eq!(added.status, 500, "{:?}", added.body);
    assert_eq!(length(api.get("/v1/ips", Some(&token)).await, "ips"), 0);
    let show_ip = api.get(&format!("/v1/ips/{ip}"), Some(&token)).await;
    show_ip.assert_error(404, "not_found");
    for action in ["pause", "resume"] {
        let path = format!("/v1/ips/{ip}/{action}");
        let answer = api.post(&path, Some(&token), &json!({})).await;
        answer.assert_error(404, "not_found");
    }
    assert_eq!(
        length(api.get(&tokens_path, Some(&token)).await, "tokens"),
        0
    );
    let revoked = api
        .delete(&format!("{tokens_path}/{token_id}"), Some(&token))
        .await;
    revoked.assert_error(404, "not_found");
    let issued = api.post(&tokens_path, Some(&token), &json!({})).await;
    assert_eq!(issued.status, 500, "{:?}", issued.body);
    let complained = api.post("/v1/complaints", Some(&token), &complaint).await;
    complained.assert_error(404, "not_found");
    // The admin works on the owner's role: the policies do not apply to it.
    let admin = Some(admin_token());
    let complained = api.post("/v1/complaints", admin, &complaint).await;
    complained.assert_error(409, "conflict");
    assert_eq!(length(api.get(&tokens_path, admin).await, "tokens"), 1);
    assert_eq!(length(api.get("/v1/ips", admin).await, "ips"), 1);
    // Nothing changed.
    for (sql, n) in [
        ("SELECT count(*) FROM campaigns", 1),
        ("SELECT count(*) FROM suppressions", 1),
        ("SELECT count(*) FROM leads", 2),
        (
            "SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL",
            1,
        ),
        ("SELECT count(*) FROM smtp_ips WHERE status = 'active'", 1),
    ] {
        assert_eq!(count(&env, sql).await, n, "{sql}");
    }

    // Restored, the same calls answer again.
    for table in tables {
        let policy = format!(
            "ALTER POLICY tenant_isolation ON {table} USING (tenant_id = \
             NULLIF(current_setting('app.current_tenant_id', true), '')::uuid)"
        );
        env.psql(&policy).await;
    }
    api.campaign(&token, campaign).await.expect(200);
    api.events(&token, campaign, "").await.expect(200);
    assert_eq!(
        length(api.suppressions(&token, "").await, "suppressions"),
        1
    );
    assert_eq!(api.action_ok(&token, campaign, "start").await, "running");
    let complained = api.post("/v1/complaints", Some(&token), &complaint).await;
    complained.assert_error(409, "conflict");
    assert_eq!(
        length(api.get(&tokens_path, Some(&token)).await, "tokens"),
        1
    );
    assert_eq!(length(api.get("/v1/ips", Some(&token)).await, "ips"), 1);
    let paused = api
        .post(&format!("/v1/ips/{ip}/pause"), Some(&token), &json!({}))
        .await;
    assert_eq!(paused.expect(200)["status"], "paused");
}
