//! Delivery events (append-only) and the daily rollups per campaign and per IP,
//! written together in batches by the Analytics actor.

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// One delivery event row.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub tenant_id: Uuid,
    pub campaign_id: Uuid,
    pub job_id: Uuid,
    pub ip_id: Option<Uuid>,
    /// `sent`, `deferred`, `bounced`, `failed`, `suppressed`, …
    pub kind: String,
    pub smtp_code: Option<i32>,
    pub enhanced_code: Option<String>,
    pub class: Option<String>,
    pub provider: Option<String>,
    pub reply: Option<String>,
    pub at: OffsetDateTime,
    /// The job's step in its campaign's sequence (1: the first email): `sent`
    /// and `bounced` are also rolled up per step (`campaign_step_stats`).
    pub step: i32,
}

/// Appends a batch of events and adds their outcomes to the daily rollups, in
/// one statement (so one transaction: a retried batch is never half-counted).
/// A campaign's day is the UTC day of the event; an IP's day is the day in the
/// IP's timezone (as its daily allowance and warm-up judge it). `sent`,
/// `deferred`, `bounced` and `failed` are rolled up per day; the final outcomes
/// (`sent`, `bounced`, `failed`, `suppressed`) also per campaign and minute
/// (`campaign_minute_stats`, the recent rates; rows an hour older than the
/// batch are pruned); `sent` and `bounced` also per campaign and sequence step
/// (`campaign_step_stats`); other kinds are events only.
pub async fn record(pool: &Pool, events: &[Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let col =
        |f: fn(&Event) -> Option<String>| -> Vec<Option<String>> { events.iter().map(f).collect() };
    let tenants: Vec<Uuid> = events.iter().map(|e| e.tenant_id).collect();
    let campaigns: Vec<Uuid> = events.iter().map(|e| e.campaign_id).collect();
    let jobs: Vec<Uuid> = events.iter().map(|e| e.job_id).collect();
    let ips: Vec<Option<Uuid>> = events.iter().map(|e| e.ip_id).collect();
    let kinds = col(|e| Some(e.kind.clone()));
    let codes: Vec<Option<i32>> = events.iter().map(|e| e.smtp_code).collect();
    let enhanced = col(|e| e.enhanced_code.clone());
    let classes = col(|e| e.class.clone());
    let providers = col(|e| e.provider.clone());
    let replies = col(|e| e.reply.clone());
    let ats: Vec<OffsetDateTime> = events.iter().map(|e| e.at).collect();
    let steps: Vec<i32> = events.iter().map(|e| e.step).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "WITH per_step AS (
                 INSERT INTO campaign_step_stats AS s (tenant_id, campaign_id, step, sent, bounced)
                 SELECT tenant_id, campaign_id, step,
                        count(*) FILTER (WHERE kind = 'sent'), count(*) FILTER (WHERE kind = 'bounced')
                 FROM unnest($1::uuid[], $2::uuid[], $5::text[], $12::int4[])
                      AS u(tenant_id, campaign_id, kind, step)
                 WHERE kind IN ('sent', 'bounced')
                 GROUP BY 1, 2, 3
                 ON CONFLICT (tenant_id, campaign_id, step) DO UPDATE SET
                     sent = s.sent + EXCLUDED.sent, bounced = s.bounced + EXCLUDED.bounced
             ), ev AS (
                 INSERT INTO delivery_events
                     (tenant_id, campaign_id, job_id, ip_id, kind, smtp_code, enhanced_code,
                      class, provider, reply, created_at)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[],
                                      $6::int4[], $7::text[], $8::text[], $9::text[], $10::text[],
                                      $11::timestamptz[])
                 RETURNING tenant_id, campaign_id, ip_id, kind, created_at
             ), outcomes AS (
                 SELECT * FROM ev WHERE kind IN ('sent', 'deferred', 'bounced', 'failed')
             ), finished AS (
                 SELECT * FROM ev WHERE kind IN ('sent', 'bounced', 'failed', 'suppressed')
             ), per_minute AS (
                 INSERT INTO campaign_minute_stats AS m (tenant_id, campaign_id, minute, sent, finished)
                 SELECT tenant_id, campaign_id, date_trunc('minute', created_at),
                        count(*) FILTER (WHERE kind = 'sent'), count(*)
                 FROM finished GROUP BY 1, 2, 3
                 ON CONFLICT (tenant_id, campaign_id, minute) DO UPDATE SET
                     sent = m.sent + EXCLUDED.sent, finished = m.finished + EXCLUDED.finished
             ), pruned AS (
                 -- Older than any minute this batch writes, so never a row it updates.
                 DELETE FROM campaign_minute_stats m
                 USING (SELECT DISTINCT tenant_id, campaign_id FROM finished) c
                 WHERE m.tenant_id = c.tenant_id AND m.campaign_id = c.campaign_id
                   AND m.minute < (SELECT min(created_at) FROM finished) - interval '1 hour'
             ), per_campaign AS (
                 INSERT INTO campaign_daily_stats AS s
                     (tenant_id, campaign_id, day, sent, deferred, bounced, failed)
                 SELECT tenant_id, campaign_id, (created_at AT TIME ZONE 'UTC')::date,
                        count(*) FILTER (WHERE kind = 'sent'),
                        count(*) FILTER (WHERE kind = 'deferred'),
                        count(*) FILTER (WHERE kind = 'bounced'),
                        count(*) FILTER (WHERE kind = 'failed')
                 FROM outcomes GROUP BY 1, 2, 3
                 ON CONFLICT (tenant_id, campaign_id, day) DO UPDATE SET
                     sent = s.sent + EXCLUDED.sent, deferred = s.deferred + EXCLUDED.deferred,
                     bounced = s.bounced + EXCLUDED.bounced, failed = s.failed + EXCLUDED.failed
             )
             INSERT INTO ip_daily_stats AS s (tenant_id, ip_id, day, sent, deferred, bounced, failed)
             SELECT o.tenant_id, o.ip_id, (o.created_at AT TIME ZONE coalesce(i.timezone, 'UTC'))::date,
                    count(*) FILTER (WHERE o.kind = 'sent'),
                    count(*) FILTER (WHERE o.kind = 'deferred'),
                    count(*) FILTER (WHERE o.kind = 'bounced'),
                    count(*) FILTER (WHERE o.kind = 'failed')
             FROM outcomes o
             LEFT JOIN smtp_ips i ON i.tenant_id = o.tenant_id AND i.id = o.ip_id
             WHERE o.ip_id IS NOT NULL
             GROUP BY 1, 2, 3
             ON CONFLICT (tenant_id, ip_id, day) DO UPDATE SET
                 sent = s.sent + EXCLUDED.sent, deferred = s.deferred + EXCLUDED.deferred,
                 bounced = s.bounced + EXCLUDED.bounced, failed = s.failed + EXCLUDED.failed",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &tenants, &campaigns, &jobs, &ips, &kinds, &codes, &enhanced, &classes, &providers,
                &replies, &ats, &steps,
            ],
        )
        .await?;
    Ok(())
}
