//! `webhooks`, `webhook_deliveries`, `webhook_attempts`, as the control API
//! reads and changes them: a tenant's webhooks (create under the per-tenant
//! limit, list, delete), their deliveries with every attempt, a delivery sent
//! again, a test delivery. The dispatcher's side (due deliveries, claims,
//! results) is [`super::webhook_outbox`]; the deliveries of recorded events are
//! written by the triggers of `V18__webhooks.sql`.
//!
//! Guarantees: every query filters `tenant_id` explicitly (a foreign id is
//! [`StoreError::NotFound`]); [`create`] counts the tenant's webhooks under a
//! per-tenant advisory lock in the insert's transaction, so concurrent creates
//! never pass the limit; the sealed secret is never read back here.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// The advisory lock class of webhook creation (per tenant).
const CREATE_LOCK: i32 = 0x7768_6b73; // "whks"

/// A webhook as the API shows it (never its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRow {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub created_at: OffsetDateTime,
}

fn webhook_row(row: &tokio_postgres::Row) -> WebhookRow {
    WebhookRow {
        id: row.get(0),
        url: row.get(1),
        events: row.get(2),
        description: row.get(3),
        created_at: row.get(4),
    }
}

/// A new webhook, its secret already sealed.
#[derive(Debug, Clone)]
pub struct NewWebhook<'a> {
    pub id: Uuid,
    pub url: &'a str,
    pub events: &'a [String],
    pub description: Option<&'a str>,
    pub sealed_secret: &'a [u8],
    pub secret_version: &'a str,
}

/// What [`create`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    Created(WebhookRow),
    /// The tenant already has `max` webhooks; nothing written.
    TooMany,
}

/// Creates a webhook unless the tenant already has `max`.
pub async fn create(
    client: &impl GenericClient,
    tenant: Uuid,
    new: &NewWebhook<'_>,
    max: u32,
) -> Result<Created, StoreError> {
    let lock = client
        .prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
        .await?;
    client
        .execute(&lock, &[&CREATE_LOCK, &tenant.to_string()])
        .await?;
    let count = client
        .prepare_cached("SELECT count(*) FROM webhooks WHERE tenant_id = $1")
        .await?;
    let count: i64 = client.query_one(&count, &[&tenant]).await?.get(0);
    if count >= i64::from(max) {
        return Ok(Created::TooMany);
    }
    let insert = client
        .prepare_cached(
            "INSERT INTO webhooks
                 (tenant_id, id, url, events, description, sealed_secret, secret_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING id, url, events, description, created_at",
        )
        .await?;
    let row = client
        .query_one(
            &insert,
            &[
                &tenant,
                &new.id,
                &new.url,
                &new.events,
                &new.description,
                &new.sealed_secret,
                &new.secret_version,
            ],
        )
        .await?;
    Ok(Created::Created(webhook_row(&row)))
}

/// The tenant's webhooks, oldest first.
pub async fn list(
    client: &impl GenericClient,
    tenant: Uuid,
) -> Result<Vec<WebhookRow>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT id, url, events, description, created_at FROM webhooks
             WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenant]).await?;
    Ok(rows.iter().map(webhook_row).collect())
}

/// Deletes a webhook with its deliveries and attempts.
pub async fn delete(client: &impl GenericClient, tenant: Uuid, id: Uuid) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2")
        .await?;
    match client.execute(&stmt, &[&tenant, &id]).await? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// [`StoreError::NotFound`] unless the tenant has webhook `id`.
pub async fn ensure_exists(
    client: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached("SELECT 1 FROM webhooks WHERE tenant_id = $1 AND id = $2")
        .await?;
    match client.query_opt(&stmt, &[&tenant, &id]).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound),
    }
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub attempt: i32,
    pub at: OffsetDateTime,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// One delivery (a webhook × an event) with its attempts, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: i64,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub attempt_log: Vec<AttemptRow>,
}

const DELIVERY_COLUMNS: &str = "id, event_id, kind, status, attempts,
    CASE WHEN status = 'pending' THEN next_attempt_at END,
    last_status, last_error, delivered_at, created_at";

fn delivery_row(row: &tokio_postgres::Row) -> DeliveryRow {
    DeliveryRow {
        id: row.get(0),
        event_id: row.get(1),
        kind: row.get(2),
        status: row.get(3),
        attempts: row.get(4),
        next_attempt_at: row.get(5),
        last_status: row.get(6),
        last_error: row.get(7),
        delivered_at: row.get(8),
        created_at: row.get(9),
        attempt_log: Vec::new(),
    }
}

/// Up to `limit` deliveries of webhook `id`, newest first, older than the
/// delivery `before` when given, each with its attempts.
pub async fn deliveries(
    client: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, StoreError> {
    ensure_exists(client, tenant, id).await?;
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
         WHERE d.tenant_id = $1 AND d.webhook_id = $2
           AND ($3::uuid IS NULL OR (d.created_at, d.id) < (
                SELECT c.created_at, c.id FROM webhook_deliveries c
                WHERE c.tenant_id = $1 AND c.webhook_id = $2 AND c.id = $3))
         ORDER BY d.created_at DESC, d.id DESC
         LIMIT $4"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[&tenant, &id, &before, &limit])
        .await?;
    let mut page: Vec<DeliveryRow> = rows.iter().map(delivery_row).collect();
    attach_attempts(client, tenant, &mut page).await?;
    Ok(page)
}

async fn attach_attempts(
    client: &impl GenericClient,
    tenant: Uuid,
    page: &mut [DeliveryRow],
) -> Result<(), StoreError> {
    if page.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = page.iter().map(|d| d.id).collect();
    let stmt = client
        .prepare_cached(
            "SELECT delivery_id, attempt, at, status_code, error, duration_ms
             FROM webhook_attempts WHERE tenant_id = $1 AND delivery_id = ANY($2)
             ORDER BY delivery_id, attempt",
        )
        .await?;
    for row in client.query(&stmt, &[&tenant, &ids]).await? {
        let delivery: Uuid = row.get(0);
        if let Some(d) = page.iter_mut().find(|d| d.id == delivery) {
            d.attempt_log.push(AttemptRow {
                attempt: row.get(1),
                at: row.get(2),
                status_code: row.get(3),
                error: row.get(4),
                duration_ms: row.get(5),
            });
        }
    }
    Ok(())
}

/// Makes delivery `delivery` of webhook `id` due now again, whatever its
/// status (a `dead` one included); its attempts so far stay.
pub async fn retry(
    client: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
    delivery: Uuid,
) -> Result<DeliveryRow, StoreError> {
    let sql = format!(
        "UPDATE webhook_deliveries
         SET status = 'pending', next_attempt_at = now(), delivered_at = NULL
         WHERE tenant_id = $1 AND webhook_id = $2 AND id = $3
         RETURNING {DELIVERY_COLUMNS}"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&tenant, &id, &delivery])
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut page = vec![delivery_row(&row)];
    attach_attempts(client, tenant, &mut page).await?;
    Ok(page.remove(0))
}

/// Queues a `test` event for webhook `id`, due now; returns the delivery.
pub async fn enqueue_test(
    client: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
) -> Result<DeliveryRow, StoreError> {
    let sql = format!(
        "INSERT INTO webhook_deliveries (tenant_id, webhook_id, event_id, kind, event_at)
         SELECT w.tenant_id, w.id, penguin_webhook_event_id(), $3, now()
         FROM webhooks w WHERE w.tenant_id = $1 AND w.id = $2
         RETURNING {DELIVERY_COLUMNS}"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&tenant, &id, &crate::webhook::TEST_KIND])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(delivery_row(&row))
}
