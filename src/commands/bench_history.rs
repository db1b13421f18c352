//! `penguin bench --events-history N`: the throughput run on a database that
//! already holds `N` delivery events of other tenants, spread evenly over the
//! last 13 months, as a platform a year into production does. Before the run
//! the history is inserted (in statements of [`CHUNK`] rows) and analysed;
//! after it, `GET /v1/campaigns/{id}` of one bench campaign is timed
//! [`READS`] times, and the oldest month of events is dropped and timed. Run
//! it with and without the flag, alternated, to compare the claim and outcome
//! paths (the messages/s and pick-up latency) on a full and an empty table.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use deadpool_postgres::Pool;
use uuid::Uuid;

use super::bench_stats;
use crate::client::ApiClient;

/// The most history events one run inserts.
pub const MAX_EVENTS_HISTORY: u64 = 50_000_000;
/// Rows per INSERT statement.
const CHUNK: u64 = 500_000;
/// Tenants and campaigns the history is spread over.
const HISTORY_TENANTS: usize = 100;
const HISTORY_CAMPAIGNS: usize = 1_000;
/// The history's span: 13 months.
const HISTORY_DAYS: i32 = 395;
/// `GET /v1/campaigns/{id}` requests timed.
const READS: usize = 200;

/// Inserts `count` events of made-up tenants over the last [`HISTORY_DAYS`]
/// days and analyses the table; returns the seconds it took.
pub async fn insert(pg: &Pool, count: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let tenants: Vec<Uuid> = (0..HISTORY_TENANTS).map(|_| Uuid::new_v4()).collect();
    let campaigns: Vec<Uuid> = (0..HISTORY_CAMPAIGNS).map(|_| Uuid::new_v4()).collect();
    let client = pg.get().await?;
    let mut done = 0u64;
    while done < count {
        let rows = CHUNK.min(count - done) as i64;
        // Campaign k belongs to tenant k % HISTORY_TENANTS; one event in 20 is
        // an open, one a click, one a bounce, the rest sends.
        client
            .execute(
                "INSERT INTO delivery_events
                     (tenant_id, campaign_id, job_id, kind, smtp_code, created_at)
                 SELECT ($1::uuid[])[1 + (g % $3::int8 % $4::int8)::int],
                        ($2::uuid[])[1 + (g % $3::int8)::int],
                        gen_random_uuid(),
                        CASE g % 20 WHEN 0 THEN 'open' WHEN 1 THEN 'click'
                                    WHEN 2 THEN 'bounced' ELSE 'sent' END,
                        CASE g % 20 WHEN 2 THEN 550 WHEN 0 THEN NULL WHEN 1 THEN NULL
                                    ELSE 250 END,
                        now() - random() * make_interval(days => $5)
                 FROM generate_series(1, $6::int8) g",
                &[
                    &tenants,
                    &campaigns,
                    &(HISTORY_CAMPAIGNS as i64),
                    &(HISTORY_TENANTS as i64),
                    &HISTORY_DAYS,
                    &rows,
                ],
            )
            .await
            .context("inserting history events")?;
        done += rows as u64;
        eprintln!(
            "  {done} of {count} history events ({:.0} rows/s)",
            done as f64 / started.elapsed().as_secs_f64()
        );
    }
    client.batch_execute("ANALYZE delivery_events").await?;
    Ok(started.elapsed().as_secs_f64())
}

/// p50 and p99 (ms) of [`READS`] sequential `GET /v1/campaigns/{id}`.
pub async fn time_campaign_reads(
    client: &ApiClient,
    token: &str,
    campaign: Uuid,
) -> anyhow::Result<(f64, f64)> {
    let mut millis = Vec::with_capacity(READS);
    for _ in 0..READS {
        let started = Instant::now();
        client
            .get(&format!("/v1/campaigns/{campaign}"), token)
            .await
            .context("GET /v1/campaigns/{id}")?;
        millis.push(started.elapsed().as_secs_f64() * 1_000.0);
    }
    let (p50, p99, _) = bench_stats::summary(&mut millis).context("no reads")?;
    Ok((p50, p99))
}

/// Drops the oldest monthly partition of `delivery_events` and returns its
/// name, its rows and how long the drop took; `None` when the table has no
/// partition to drop (not partitioned, or only the default one).
pub async fn time_drop_oldest(pg: &Pool) -> anyhow::Result<Option<(String, i64, Duration)>> {
    let client = pg.get().await?;
    let oldest = client
        .query_opt(
            "SELECT quote_ident(c.relname) FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'delivery_events'::regclass
               AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
             ORDER BY c.relname LIMIT 1",
            &[],
        )
        .await?;
    let Some(row) = oldest else {
        return Ok(None);
    };
    let name: String = row.get(0);
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {name}"), &[])
        .await?
        .get(0);
    let started = Instant::now();
    client
        .batch_execute(&format!("DROP TABLE {name}"))
        .await
        .with_context(|| format!("dropping {name}"))?;
    Ok(Some((name, rows, started.elapsed())))
}
