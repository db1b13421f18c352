//! The ledger's hot path finds jobs by primary key, however the planner's
//! statistics look: a claim `queued → sending` and an outcome write read only
//! the jobs they name, never every in-flight job of the tenant through the
//! partial index `send_jobs_in_flight` or `send_jobs_campaign_status`.
//!
//! The statistics are taken while every job is `pending`, as production's
//! mostly are, so the partial index looks empty to the planner; then the whole
//! campaign is `queued`. Before the fix a claim of 8 jobs read the tenant's
//! 1,088 queued jobs during `penguin bench` (BENCHMARKS.md, "Where the time
//! goes"). Index reads are counted in `pg_stat_user_indexes`, which each
//! backend reports about a second after it goes idle: the test waits for the
//! updates it made to show before it reads them.

use std::time::Duration;

use penguin_engine::domain::JobStatus;
use penguin_engine::store::fences;
use penguin_engine::store::ledger::{self, Outcome};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::{TestEnv, wait_for_showing};

const JOBS: i64 = 600;
const CLAIMS: usize = 10;
const PER_CLAIM: usize = 5;

/// Rows read through the two status indexes, and updates of `send_jobs`, as
/// reported so far.
async fn reads(env: &TestEnv) -> (i64, i64) {
    let rows = env
        .psql(
            "SELECT (SELECT coalesce(sum(idx_tup_read), 0)::int8 FROM pg_stat_user_indexes
                     WHERE indexrelname IN ('send_jobs_in_flight', 'send_jobs_campaign_status')),
                    (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'send_jobs')",
        )
        .await;
    (rows[0].get(0), rows[0].get(1))
}

/// Waits until `send_jobs` shows at least `updates` row updates, then returns
/// the status-index reads reported with them.
async fn reads_after(env: &TestEnv, updates: i64) -> i64 {
    wait_for_showing(
        "send_jobs updates in pg_stat_user_tables",
        Duration::from_secs(30),
        || async {
            let (read, updated) = reads(env).await;
            if updated >= updates {
                Ok(read)
            } else {
                Err(updated)
            }
        },
    )
    .await
}

#[tokio::test]
async fn claims_and_outcomes_read_only_the_jobs_they_name() {
    let env = TestEnv::start().await;
    let (tenant, campaign, ip) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    env.psql(&format!(
        "INSERT INTO tenants (id, name) VALUES ('{tenant}', 'keyed')"
    ))
    .await;
    env.psql(&format!(
        "INSERT INTO smtp_ips (tenant_id, id, address, helo_name)
         VALUES ('{tenant}', '{ip}', '127.0.0.2', 'mx.keyed.test')"
    ))
    .await;
    env.psql(&format!(
        "INSERT INTO campaigns (tenant_id, id, name, status, from_address, subject, text_body, ip_ids)
         VALUES ('{tenant}', '{campaign}', 'c', 'running', 'a@keyed.test', 's', 't', ARRAY['{ip}'::uuid])"
    ))
    .await;
    env.psql(&format!(
        "INSERT INTO leads (tenant_id, campaign_id, id, email)
         SELECT '{tenant}', '{campaign}', gen_random_uuid(), 'r' || g || '@keyed.test'
         FROM generate_series(1, {JOBS}) g"
    ))
    .await;
    env.psql(&format!(
        "INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority)
         SELECT tenant_id, gen_random_uuid(), campaign_id, id, 100 FROM leads
         WHERE tenant_id = '{tenant}'"
    ))
    .await;
    env.psql("ANALYZE send_jobs").await;
    env.psql(&format!(
        "UPDATE send_jobs SET status = 'queued' WHERE tenant_id = '{tenant}'"
    ))
    .await;
    let now = OffsetDateTime::now_utc();
    let partition = penguin_engine::partition::of(tenant, 512);
    let epoch = fences::take(&env.pg, &[partition], 512, "node-a", now)
        .await
        .expect("take")
        .token_of(partition)
        .expect("the partition taken");
    let jobs: Vec<Uuid> = env
        .psql(&format!(
            "SELECT id FROM send_jobs WHERE tenant_id = '{tenant}' ORDER BY id LIMIT {}",
            CLAIMS * PER_CLAIM
        ))
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    let before = reads_after(&env, JOBS).await;

    // More batches than Postgres' five custom plans, so cached generic plans run too.
    let mut outcomes = Vec::new();
    for batch in jobs.chunks(PER_CLAIM) {
        let pairs: Vec<(Uuid, Uuid)> = batch.iter().map(|job| (*job, ip)).collect();
        let claim = ledger::claim_sending(&env.pg, tenant, epoch, &pairs, &[campaign], now, None)
            .await
            .expect("claim");
        assert_eq!(claim.claimed.len(), batch.len(), "{claim:?}");
        outcomes.extend(batch.iter().map(|job| Outcome {
            tenant_id: tenant,
            job_id: *job,
            to: JobStatus::Sent,
            run_at: None,
            message_id: Some(format!("{job}@keyed.test")),
            reply: Some("250 ok".into()),
            fence: epoch,
            claim: claim.claim,
        }));
    }
    for batch in outcomes.chunks(PER_CLAIM) {
        let applied = ledger::record_outcomes(&env.pg, batch, now)
            .await
            .expect("outcomes");
        assert_eq!(applied.written, batch.len());
    }

    let written = (CLAIMS * PER_CLAIM) as i64;
    let after = reads_after(&env, JOBS + 2 * written).await;
    assert_eq!(
        after - before,
        0,
        "claims and outcomes of {written} jobs read {} entries of the status indexes \
         (the tenant has {JOBS} in flight)",
        after - before
    );
}
