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
use penguin_engine::store::partitions::{self, Month};
use time::OffsetDateTime;
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
/// days (first creating the monthly partitions they fall in, as the
/// retention round would have over the year) and analyses the table; returns
/// the seconds it took.
pub async fn insert(pg: &Pool, count: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let now = OffsetDateTime::now_utc();
    let first = Month::of(now - time::Duration::days(HISTORY_DAYS.into()));
    let existing = partitions::existing(&pg.get().await?).await?;
    let months = std::iter::successors(Some(first), |m| Some(m.plus(1)));
    for month in months.take_while(|m| *m <= Month::of(now)) {
        if !existing.contains(&month) {
            partitions::create_month(pg, month)
                .await
                .with_context(|| format!("creating {}", month.table()))?;
        }
    }
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

/// Drops the oldest monthly partition of `delivery_events` as the retention
/// round does ([`partitions::drop_month`]) and returns its name, its rows and
/// how long the drop took; `None` when there is no monthly partition.
pub async fn time_drop_oldest(pg: &Pool) -> anyhow::Result<Option<(String, i64, Duration)>> {
    let client = pg.get().await?;
    let Some(oldest) = partitions::existing(&client).await?.first().copied() else {
        return Ok(None);
    };
    let name = oldest.table();
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {name}"), &[])
        .await?
        .get(0);
    let started = Instant::now();
    partitions::drop_month(pg, oldest)
        .await
        .with_context(|| format!("dropping {name}"))?;
    Ok(Some((name, rows, started.elapsed())))
}
