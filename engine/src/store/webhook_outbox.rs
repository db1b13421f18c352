//! The webhook outbox as the dispatcher (`actors::webhooks`) works it: which
//! webhooks of a node's partitions have deliveries due ([`due`]), a batch
//! claimed for one request ([`claim`]), the answer recorded ([`record`]), old
//! finished deliveries pruned ([`prune`]). Rows are written by the triggers of
//! `V18__webhooks.sql` in the transaction of their event.
//!
//! Guarantees:
//! - Fenced like the Feeder's claims: [`claim`] runs in a transaction holding
//!   the fence of the tenant's partition at the node's token
//!   ([`crate::store::fences::hold`]); a node that lost the partition claims
//!   nothing.
//! - A claim is a lease, never a loss: it adds one to `attempts` and moves
//!   `next_attempt_at` a lease ahead (longer than a request may last), so a
//!   batch whose node dies mid-request is due again once the lease passes, on
//!   whichever node owns the tenant then. `SKIP LOCKED` keeps two claims apart.
//! - [`record`] changes a delivery only if it is still `pending` at the attempt
//!   that was made (a retry requested meanwhile is left alone) and writes the
//!   attempt in the same transaction; a failure schedules the next attempt
//!   `backoff_base_ms · 2^(attempts-1)` (at most `backoff_max_ms`) later, or
//!   marks the delivery `dead` when that would be past `max_age_secs` after it
//!   was queued. Every delivery gets at least one attempt, however late.
//! - Every statement filters `tenant_id`; [`due`] and [`prune`] visit only the
//!   webhooks of the partitions given, one index probe per webhook.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::store::fences::{Epoch, fenced_transaction, hold};
use crate::webhook::Event;

/// A webhook with deliveries waiting: `due_in_ms` ≤ 0 when one is due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub tenant: Uuid,
    pub webhook: Uuid,
    pub due_in_ms: i64,
}

/// Every webhook of `partitions` (of `count`) with a pending delivery, with
/// how long until its earliest one is due (Postgres' clock).
pub async fn due(pool: &Pool, count: u32, partitions: &[u32]) -> Result<Vec<Waiting>, StoreError> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let partitions: Vec<i32> = partitions.iter().map(|p| *p as i32).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT w.tenant_id, w.id,
                    (extract(epoch FROM (d.next_attempt_at - now())) * 1000)::int8
             FROM webhooks w
             CROSS JOIN LATERAL (
                 SELECT next_attempt_at FROM webhook_deliveries d
                 WHERE d.tenant_id = w.tenant_id AND d.webhook_id = w.id
                   AND d.status = 'pending'
                 ORDER BY d.next_attempt_at LIMIT 1) d
             WHERE penguin_partition(w.tenant_id, $1) = ANY($2)",
        )
        .await?;
    let rows = client.query(&stmt, &[&(count as i32), &partitions]).await?;
    Ok(rows
        .iter()
        .map(|row| Waiting {
            tenant: row.get(0),
            webhook: row.get(1),
            due_in_ms: row.get(2),
        })
        .collect())
}

/// One delivery of a claimed batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub delivery: Uuid,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    pub event: Event,
}

/// A batch claimed for one request, with where and how to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub url: String,
    pub sealed_secret: Vec<u8>,
    pub secret_version: String,
    /// Ordered by event id.
    pub deliveries: Vec<Claimed>,
}

/// Claims up to `limit` due deliveries of one webhook for `lease_ms`; `None`
/// when the node's token for the tenant's partition is no longer current, or
/// the webhook is gone. An empty batch: nothing due.
pub async fn claim(
    pool: &Pool,
    tenant: Uuid,
    webhook: Uuid,
    epoch: Epoch,
    limit: i64,
    lease_ms: i64,
) -> Result<Option<Batch>, StoreError> {
    let mut client = pool.get().await?;
    let tx = fenced_transaction(&mut client).await?;
    if hold(&tx, &[tenant], &[epoch]).await?.is_empty() {
        return Ok(None);
    }
    let target = tx
        .prepare_cached(
            "SELECT url, sealed_secret, secret_version FROM webhooks
             WHERE tenant_id = $1 AND id = $2",
        )
        .await?;
    let Some(target) = tx.query_opt(&target, &[&tenant, &webhook]).await? else {
        return Ok(None);
    };
    let take = tx
        .prepare_cached(
            "WITH picked AS (
                 SELECT id FROM webhook_deliveries
                 WHERE tenant_id = $1 AND webhook_id = $2 AND status = 'pending'
                   AND next_attempt_at <= now()
                 ORDER BY next_attempt_at, event_id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             UPDATE webhook_deliveries d
             SET attempts = d.attempts + 1,
                 next_attempt_at = now() + $4::float8 * interval '1 millisecond'
             FROM picked
             WHERE d.tenant_id = $1 AND d.id = picked.id
             RETURNING d.id, d.attempts, d.event_id, d.kind, d.campaign_id, d.event_at",
        )
        .await?;
    let taken = tx
        .query(&take, &[&tenant, &webhook, &limit, &(lease_ms as f64)])
        .await?;
    let event_ids: Vec<i64> = taken
        .iter()
        .filter(|row| row.get::<_, Option<OffsetDateTime>>(5).is_none())
        .map(|row| row.get(2))
        .collect();
    let mut recorded: HashMap<i64, Event> = HashMap::new();
    if !event_ids.is_empty() {
        let read = tx
            .prepare_cached(
                "SELECT e.id, e.campaign_id, e.job_id, l.email, e.smtp_code, e.enhanced_code,
                        e.reply, e.created_at
                 FROM delivery_events e
                 LEFT JOIN send_jobs j ON j.tenant_id = e.tenant_id AND j.id = e.job_id
                 LEFT JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
                 WHERE e.tenant_id = $1 AND e.id = ANY($2)",
            )
            .await?;
        for row in tx.query(&read, &[&tenant, &event_ids]).await? {
            let id: i64 = row.get(0);
            recorded.insert(
                id,
                Event {
                    id,
                    kind: String::new(),
                    tenant_id: tenant,
                    campaign_id: row.get(1),
                    job_id: row.get(2),
                    recipient: row.get(3),
                    smtp_code: row.get(4),
                    enhanced_code: row.get(5),
                    reply: row.get(6),
                    created_at: row.get(7),
                },
            );
        }
    }
    tx.commit().await?;
    let mut deliveries: Vec<Claimed> = taken
        .iter()
        .map(|row| {
            let event_id: i64 = row.get(2);
            let kind: String = row.get(3);
            let own_at: Option<OffsetDateTime> = row.get(5);
            let event = match (own_at, recorded.get(&event_id)) {
                (None, Some(event)) => Event {
                    kind,
                    ..event.clone()
                },
                (at, _) => Event {
                    id: event_id,
                    kind,
                    tenant_id: tenant,
                    campaign_id: row.get(4),
                    job_id: None,
                    recipient: None,
                    smtp_code: None,
                    enhanced_code: None,
                    reply: None,
                    created_at: at.unwrap_or_else(OffsetDateTime::now_utc),
                },
            };
            Claimed {
                delivery: row.get(0),
                attempt: row.get(1),
                event,
            }
        })
        .collect();
    deliveries.sort_by_key(|c| c.event.id);
    Ok(Some(Batch {
        url: target.get(0),
        sealed_secret: target.get(1),
        secret_version: target.get(2),
        deliveries,
    }))
}

/// What one request got.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The HTTP status, when one came.
    pub status_code: Option<i32>,
    /// Why it failed (`None`: a 2xx answer).
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// The retry schedule of [`record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: i64,
    pub max_ms: i64,
    pub max_age_secs: i64,
}

/// How many deliveries of a batch [`record`] found in which state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub delivered: u64,
    pub retrying: u64,
    pub dead: u64,
}

/// Records `answer` for the batch `(delivery, attempt)` of `tenant`.
pub async fn record(
    pool: &Pool,
    tenant: Uuid,
    batch: &[(Uuid, i32)],
    answer: &Answer,
    backoff: Backoff,
) -> Result<Recorded, StoreError> {
    if batch.is_empty() {
        return Ok(Recorded::default());
    }
    let ids: Vec<Uuid> = batch.iter().map(|b| b.0).collect();
    let attempts: Vec<i32> = batch.iter().map(|b| b.1).collect();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let update = tx
        .prepare_cached(
            "WITH next AS (
                 SELECT d.id,
                        now() + least($7::int8, $6::int8 * power(2, least(d.attempts - 1, 40))::int8)::float8
                                * interval '1 millisecond' AS at,
                        d.created_at + $8::int8::float8 * interval '1 second' AS expires
                 FROM webhook_deliveries d
                 JOIN unnest($2::uuid[], $3::int4[]) AS u(id, attempt)
                   ON d.tenant_id = $1 AND d.id = u.id AND d.attempts = u.attempt
                 WHERE d.status = 'pending'
                 FOR UPDATE OF d)
             UPDATE webhook_deliveries d
             SET status = CASE WHEN $5::text IS NULL THEN 'delivered'
                               WHEN n.at > n.expires THEN 'dead'
                               ELSE 'pending' END,
                 delivered_at = CASE WHEN $5::text IS NULL THEN now() END,
                 next_attempt_at = CASE WHEN $5::text IS NULL THEN d.next_attempt_at ELSE n.at END,
                 last_status = $4, last_error = $5
             FROM next n
             WHERE d.tenant_id = $1 AND d.id = n.id
             RETURNING d.status",
        )
        .await?;
    let rows = tx
        .query(
            &update,
            &[
                &tenant,
                &ids,
                &attempts,
                &answer.status_code,
                &answer.error,
                &backoff.base_ms,
                &backoff.max_ms,
                &backoff.max_age_secs,
            ],
        )
        .await?;
    let log = tx
        .prepare_cached(
            "INSERT INTO webhook_attempts (tenant_id, delivery_id, attempt, status_code, error, duration_ms)
             SELECT $1, d.id, u.attempt, $4, $5, $6
             FROM unnest($2::uuid[], $3::int4[]) AS u(id, attempt)
             JOIN webhook_deliveries d ON d.tenant_id = $1 AND d.id = u.id
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(
        &log,
        &[
            &tenant,
            &ids,
            &attempts,
            &answer.status_code,
            &answer.error,
            &answer.duration_ms,
        ],
    )
    .await?;
    tx.commit().await?;
    let mut recorded = Recorded::default();
    for row in rows {
        match row.get::<_, &str>(0) {
            "delivered" => recorded.delivered += 1,
            "dead" => recorded.dead += 1,
            _ => recorded.retrying += 1,
        }
    }
    Ok(recorded)
}

/// Deletes up to `limit` delivered or dead deliveries (with their attempts)
/// of the webhooks of `partitions` queued more than `retention_secs` ago;
/// returns how many.
pub async fn prune(
    pool: &Pool,
    count: u32,
    partitions: &[u32],
    retention_secs: i64,
    limit: i64,
) -> Result<u64, StoreError> {
    if partitions.is_empty() {
        return Ok(0);
    }
    let partitions: Vec<i32> = partitions.iter().map(|p| *p as i32).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "DELETE FROM webhook_deliveries x
             USING (
                 SELECT d.tenant_id, d.id FROM webhooks w
                 CROSS JOIN LATERAL (
                     SELECT d.tenant_id, d.id FROM webhook_deliveries d
                     WHERE d.tenant_id = w.tenant_id AND d.webhook_id = w.id
                       AND d.created_at < now() - $3::int8::float8 * interval '1 second'
                       AND d.status <> 'pending'
                     LIMIT $4) d
                 WHERE penguin_partition(w.tenant_id, $1) = ANY($2)
                 LIMIT $4) old
             WHERE x.tenant_id = old.tenant_id AND x.id = old.id",
        )
        .await?;
    Ok(client
        .execute(
            &stmt,
            &[&(count as i32), &partitions, &retention_secs, &limit],
        )
        .await?)
}
