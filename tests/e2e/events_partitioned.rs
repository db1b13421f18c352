//! `V19__events_partitioned.sql` moves existing events (issue 23): a database
//! migrated to V18 holds events over three months (opens, clicks on two links,
//! a complaint, replies) and an event id drawn past max(id) for a webhook
//! without an event row; migrated on, `delivery_events` is partitioned by
//! month, holds every row with its id in its month's partition, new events get
//! larger ids than any drawn before, and the once-only keys came along: a
//! repeated open, click, complaint or reply of a migrated event is refused by
//! `delivery_event_keys`, a new link is not.

use deadpool_postgres::Pool;
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

async fn one_i64(pool: &Pool, sql: &str) -> i64 {
    let client = pool.get().await.unwrap();
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

async fn run(pool: &Pool, sql: &str) {
    let client = pool.get().await.unwrap();
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Records `kind` on `job` the way the store does (key first, the event only
/// when its key row was inserted); `true` when recorded.
async fn record_once(pool: &Pool, job: &str, kind: &str, key: &str) -> bool {
    let sql = format!(
        "WITH once AS (
             INSERT INTO delivery_event_keys (tenant_id, job_id, kind, key)
             VALUES ('00000000-0000-0000-0000-000000000001', '{job}', '{kind}', {key})
             ON CONFLICT DO NOTHING RETURNING job_id),
         ev AS (
             INSERT INTO delivery_events (tenant_id, campaign_id, job_id, kind)
             SELECT '00000000-0000-0000-0000-000000000001', gen_random_uuid(), job_id, '{kind}'
             FROM once RETURNING 1)
         SELECT count(*) FROM ev"
    );
    one_i64(pool, &sql).await == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_events_move_into_monthly_partitions_with_their_ids_and_keys() {
    let env = TestEnv::start().await;
    let name = format!("{}_v18", env.database_name());
    env.psql(&format!("CREATE DATABASE \"{name}\"")).await;
    let config = DatabaseConfig {
        url: with_database(&env.config.database.url, &name),
        ..env.config.database.clone()
    };
    let pool = db::pg_pool(&config).unwrap();
    let applied = db::migrate_to(&pool, Some(18)).await.unwrap();
    assert_eq!(applied.last().map(String::as_str), Some("V18__webhooks"));

    // Before V19: 30 events, 10 per month over the last three months, then a
    // webhook-only event id drawn from the table's sequence.
    run(
        &pool,
        "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, kind, reply, created_at)
         SELECT '00000000-0000-0000-0000-000000000001', gen_random_uuid(),
                ('00000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid,
                (ARRAY['sent', 'open', 'click', 'complaint', 'replied'])[1 + n % 5],
                'https://a.test/' || n % 2,
                date_trunc('month', now()) - make_interval(months => n % 3) + interval '3 days'
         FROM generate_series(1, 30) n;
         -- a second link clicked on job 2
         INSERT INTO delivery_events (tenant_id, campaign_id, job_id, kind, reply)
         VALUES ('00000000-0000-0000-0000-000000000001', gen_random_uuid(),
                 '00000000-0000-0000-0000-000000000002', 'click', 'https://other.test/');",
    )
    .await;
    let before = one_i64(&pool, "SELECT max(id) FROM delivery_events").await;
    assert_eq!(before, 31);
    let drawn = one_i64(&pool, "SELECT penguin_webhook_event_id()").await;
    assert_eq!(drawn, 32);
    let digest_sql = "SELECT count(*) FROM delivery_events";
    let ids_before: Vec<(i64, String)> = {
        let client = pool.get().await.unwrap();
        client
            .query(
                "SELECT id, job_id::text || kind || created_at::text FROM delivery_events ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };

    let applied = db::migrate(&pool).await.unwrap();
    assert_eq!(
        applied.first().map(String::as_str),
        Some("V19__events_partitioned")
    );

    assert_eq!(one_i64(&pool, digest_sql).await, 31);
    let ids_after: Vec<(i64, String)> = {
        let client = pool.get().await.unwrap();
        client
            .query(
                "SELECT id, job_id::text || kind || created_at::text FROM delivery_events ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    assert_eq!(ids_after, ids_before, "every row kept with its id");
    assert_eq!(
        one_i64(
            &pool,
            "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'delivery_events'::regclass"
        )
        .await,
        1
    );
    // Each row sits in its month's partition, none in the default one.
    assert_eq!(
        one_i64(
            &pool,
            "SELECT count(*) FROM delivery_events
             WHERE tableoid::regclass::text <> 'delivery_events_p' || to_char(created_at AT TIME ZONE 'UTC', 'YYYYMM')"
        )
        .await,
        0
    );
    assert_eq!(
        one_i64(&pool, "SELECT count(*) FROM delivery_events_default").await,
        0
    );
    // Keys: 6 opens, 6 + 1 clicks (two links on job 2), 6 complaints, 6 replies.
    assert_eq!(
        one_i64(&pool, "SELECT count(*) FROM delivery_event_keys").await,
        25
    );

    // New ids continue past every id drawn before.
    let new_id = one_i64(
        &pool,
        "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, kind)
         VALUES ('00000000-0000-0000-0000-000000000001', gen_random_uuid(), gen_random_uuid(), 'sent')
         RETURNING id",
    )
    .await;
    assert_eq!(new_id, drawn + 1);

    // Once-only survives the move: job 1 was opened (n = 1), job 2 clicked
    // (n = 2, link 0), job 3 complained, job 4 replied.
    let job = |n: u32| format!("00000000-0000-0000-0000-0000000000{n:02}");
    assert!(!record_once(&pool, &job(1), "open", "''").await);
    assert!(!record_once(&pool, &job(2), "click", "md5('https://a.test/0')").await);
    assert!(record_once(&pool, &job(2), "click", "md5('https://b.test/')").await);
    assert!(!record_once(&pool, &job(3), "complaint", "''").await);
    assert!(!record_once(&pool, &job(4), "replied", "''").await);
    assert!(record_once(&pool, &job(4), "auto_replied", "''").await);
    assert!(record_once(&pool, &job(5), "open", "''").await);
    assert!(!record_once(&pool, &job(5), "open", "''").await);

    drop(pool);
    env.psql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await;
}
