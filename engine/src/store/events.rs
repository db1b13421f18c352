//! Delivery events (append-only) and the daily rollups per campaign and per IP,
//! written in batches by the Analytics actor.

use deadpool_postgres::Pool;
use time::{Date, OffsetDateTime};
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
}

/// Appends a batch of events in one statement.
pub async fn insert_events(pool: &Pool, events: &[Event]) -> Result<(), StoreError> {
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
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO delivery_events
                 (tenant_id, campaign_id, job_id, ip_id, kind, smtp_code, enhanced_code,
                  class, provider, reply, created_at)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[],
                                  $6::int4[], $7::text[], $8::text[], $9::text[], $10::text[],
                                  $11::timestamptz[])",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &tenants, &campaigns, &jobs, &ips, &kinds, &codes, &enhanced, &classes, &providers,
                &replies, &ats,
            ],
        )
        .await?;
    Ok(())
}

/// Outcome counts to add to one rollup row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: i64,
    pub deferred: i64,
    pub bounced: i64,
    pub failed: i64,
}

impl Counts {
    pub fn add_kind(&mut self, kind: &str) {
        match kind {
            "sent" => self.sent += 1,
            "deferred" => self.deferred += 1,
            "bounced" => self.bounced += 1,
            "failed" => self.failed += 1,
            _ => {}
        }
    }
}

/// Adds counts to the per-campaign daily rollup, one statement for the batch.
pub async fn add_campaign_daily(
    pool: &Pool,
    rows: &[((Uuid, Uuid, Date), Counts)],
) -> Result<(), StoreError> {
    add_daily(
        pool,
        rows,
        "INSERT INTO campaign_daily_stats AS s (tenant_id, campaign_id, day, sent, deferred, bounced, failed)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::date[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])
         ON CONFLICT (tenant_id, campaign_id, day) DO UPDATE SET
             sent = s.sent + EXCLUDED.sent, deferred = s.deferred + EXCLUDED.deferred,
             bounced = s.bounced + EXCLUDED.bounced, failed = s.failed + EXCLUDED.failed",
    )
    .await
}

/// Adds counts to the per-IP daily rollup (day in the IP's timezone).
pub async fn add_ip_daily(
    pool: &Pool,
    rows: &[((Uuid, Uuid, Date), Counts)],
) -> Result<(), StoreError> {
    add_daily(
        pool,
        rows,
        "INSERT INTO ip_daily_stats AS s (tenant_id, ip_id, day, sent, deferred, bounced, failed)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::date[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])
         ON CONFLICT (tenant_id, ip_id, day) DO UPDATE SET
             sent = s.sent + EXCLUDED.sent, deferred = s.deferred + EXCLUDED.deferred,
             bounced = s.bounced + EXCLUDED.bounced, failed = s.failed + EXCLUDED.failed",
    )
    .await
}

async fn add_daily(
    pool: &Pool,
    rows: &[((Uuid, Uuid, Date), Counts)],
    sql: &str,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let a: Vec<Uuid> = rows.iter().map(|((t, _, _), _)| *t).collect();
    let b: Vec<Uuid> = rows.iter().map(|((_, k, _), _)| *k).collect();
    let days: Vec<Date> = rows.iter().map(|((_, _, d), _)| *d).collect();
    let sent: Vec<i64> = rows.iter().map(|(_, c)| c.sent).collect();
    let deferred: Vec<i64> = rows.iter().map(|(_, c)| c.deferred).collect();
    let bounced: Vec<i64> = rows.iter().map(|(_, c)| c.bounced).collect();
    let failed: Vec<i64> = rows.iter().map(|(_, c)| c.failed).collect();
    let client = pool.get().await?;
    let stmt = client.prepare_cached(sql).await?;
    client
        .execute(&stmt, &[&a, &b, &days, &sent, &deferred, &bounced, &failed])
        .await?;
    Ok(())
}
