//! Webhooks (tenant token):
//!
//! - `POST /v1/webhooks` `{url, events, description?}` → 201 `{id, url, events,
//!   description, secret, created_at}`; the signing secret is shown only here
//!   and stored sealed under `[secrets] master_key` (aad
//!   `"<tenant>/<id>/webhook"`, as DKIM keys are).
//! - `GET /v1/webhooks` (never the secret), `DELETE /v1/webhooks/{id}` (with its
//!   deliveries).
//! - `POST /v1/webhooks/{id}/test` → 202, a `test` event queued for it.
//! - `GET /v1/webhooks/{id}/deliveries?before=&limit=` → its deliveries, newest
//!   first, each with its attempts; `POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry`
//!   makes one due now again (a `dead` one too).
//!
//! Refused with 422, changing nothing: a URL that is not http(s), carries
//! credentials or a fragment, or whose host resolves to any address that is not
//! public (loopback, private, link-local, metadata, …) unless the host is in
//! `[webhooks] allow_hosts`; an unknown event kind (named) or none; a
//! description over 500 characters or with control characters. The
//! `[webhooks] max_per_tenant`-th + 1 webhook is 409 `too_many_webhooks`.
//! Another tenant's webhook or delivery answers 404.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use penguin_engine::store;
use penguin_engine::store::webhooks::{AttemptRow, Created, DeliveryRow, NewWebhook, WebhookRow};
use penguin_engine::webhook;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{IdPath, JsonBody, NoFields, OptionalJsonBody};
use crate::openapi::{JsonBodyErrors, TenantOnly};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(delete))
        .routes(routes!(test))
        .routes(routes!(deliveries))
        .routes(routes!(retry))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateWebhook {
    /// Where events are POSTed: `http://` or `https://`, a public address
    /// (or a host in `[webhooks] allow_hosts`).
    #[schema(example = "https://hooks.example.com/penguin")]
    url: String,
    /// The kinds to receive: `sent`, `deferred`, `bounced`, `failed`,
    /// `suppressed`, `opened`, `clicked`, `unsubscribed`, `complained`,
    /// `replied`, `campaign_completed`.
    #[schema(example = json!(["bounced", "complained"]))]
    events: Vec<String>,
    /// Free text, at most 500 characters.
    description: Option<String>,
}

/// A webhook (never its secret).
#[derive(Debug, Serialize, ToSchema)]
struct WebhookBody {
    id: Uuid,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl From<WebhookRow> for WebhookBody {
    fn from(row: WebhookRow) -> Self {
        WebhookBody {
            id: row.id,
            url: row.url,
            events: row.events,
            description: row.description,
            created_at: row.created_at,
        }
    }
}

/// A new webhook, with its signing secret (shown only here).
#[derive(Debug, Serialize, ToSchema)]
struct WebhookCreated {
    id: Uuid,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    /// The HMAC-SHA256 key of `Penguin-Signature`, as this exact text. Shown once.
    secret: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
struct WebhookList {
    webhooks: Vec<WebhookBody>,
}

/// One attempt to deliver.
#[derive(Debug, Serialize, ToSchema)]
struct AttemptBody {
    attempt: i32,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    /// The receiver's HTTP status, when it answered.
    status_code: Option<i32>,
    /// Why it failed (null: a 2xx answer).
    error: Option<String>,
    duration_ms: i32,
}

impl From<AttemptRow> for AttemptBody {
    fn from(a: AttemptRow) -> Self {
        AttemptBody {
            attempt: a.attempt,
            at: a.at,
            status_code: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
        }
    }
}

/// One delivery: a webhook × an event.
#[derive(Debug, Serialize, ToSchema)]
struct DeliveryBody {
    id: Uuid,
    /// The event's id (the `id` the receiver gets).
    event_id: i64,
    kind: String,
    /// `pending`, `delivered` or `dead` (retried until `[webhooks] max_age_secs`).
    status: String,
    /// Attempts made.
    attempts: i32,
    /// When the next attempt is due (pending only).
    #[serde(with = "time::serde::rfc3339::option")]
    next_attempt_at: Option<OffsetDateTime>,
    last_status: Option<i32>,
    last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    delivered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// Every attempt, oldest first.
    attempt_log: Vec<AttemptBody>,
}

impl From<DeliveryRow> for DeliveryBody {
    fn from(d: DeliveryRow) -> Self {
        DeliveryBody {
            id: d.id,
            event_id: d.event_id,
            kind: d.kind,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
            created_at: d.created_at,
            attempt_log: d.attempt_log.into_iter().map(AttemptBody::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct DeliveryList {
    deliveries: Vec<DeliveryBody>,
    /// The `before` of the next (older) page; null on the last page.
    next_before: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    before: Option<Uuid>,
    limit: Option<i64>,
}

/// The URL, checked, with every address of its host vetted (see the module doc).
async fn checked_url(state: &AppState, text: &str) -> ApiResult<String> {
    let target = webhook::parse_url(text).map_err(|e| AppError::invalid(format!("url: {e}")))?;
    let allowed = state.config.webhooks.allows(&target.host);
    let addresses: Vec<IpAddr> = match target.ip {
        Some(ip) => vec![ip],
        None if allowed => Vec::new(),
        None => state
            .domains
            .dns
            .addresses(&target.host)
            .await
            .map_err(|e| {
                AppError::invalid(format!(
                    "url: the host {} does not resolve: {e}",
                    target.host
                ))
            })?,
    };
    webhook::vet(&addresses, allowed)
        .map_err(|refused| AppError::invalid(format!("url: {refused}")))?;
    Ok(target.url.to_string())
}

fn checked_description(value: Option<String>) -> ApiResult<Option<String>> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.chars().count() > webhook::MAX_DESCRIPTION_CHARS {
        return Err(AppError::invalid(format!(
            "description must be at most {} characters",
            webhook::MAX_DESCRIPTION_CHARS
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "description must not contain control characters (line breaks, tabs, NUL)",
        ));
    }
    Ok(Some(value))
}

/// Creates a webhook; its signing secret is in this answer only.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    security(("bearer" = [])),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "The webhook, with its secret (shown once)", body = WebhookCreated),
        (status = 409, description = "The tenant has `[webhooks] max_per_tenant` webhooks \
            (`too_many_webhooks`), or the node has no `[secrets] master_key` (`secrets_not_configured`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn create(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<WebhookCreated>)> {
    let events = webhook::check_events(&request.events)
        .map_err(|e| AppError::invalid(format!("events: {e}")))?;
    let description = checked_description(request.description)?;
    let url = checked_url(&state, &request.url).await?;
    let sealer = state.domains.sealer()?;
    let id = Uuid::now_v7();
    let secret = webhook::new_secret();
    let sealed = sealer.seal(
        secret.as_bytes(),
        webhook::secret_aad(tenant, id).as_bytes(),
    );
    let new = NewWebhook {
        id,
        url: &url,
        events: &events,
        description: description.as_deref(),
        sealed_secret: &sealed,
        secret_version: sealer.version(),
    };
    let max = state.config.webhooks.max_per_tenant;
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let Created::Created(row) = store::webhooks::create(&tx, tenant, &new, max).await? else {
        return Err(AppError::too_many_webhooks(max));
    };
    super::commit(tx).await?;
    tracing::info!(tenant_id = %tenant, webhook_id = %row.id, "webhook created");
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated {
            id: row.id,
            url: row.url,
            events: row.events,
            description: row.description,
            secret,
            created_at: row.created_at,
        }),
    ))
}

/// The caller's webhooks, oldest first (never their secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The webhooks", body = WebhookList),
        TenantOnly,
    ))]
async fn list(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
) -> ApiResult<Json<WebhookList>> {
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let rows = store::webhooks::list(&tx, tenant).await?;
    super::commit(tx).await?;
    Ok(Json(WebhookList {
        webhooks: rows.into_iter().map(WebhookBody::from).collect(),
    }))
}

/// Deletes a webhook with its deliveries; nothing more is sent to it.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The webhook")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such webhook of the caller (`not_found`)", body = ErrorBody),
        TenantOnly,
    ))]
async fn delete(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<StatusCode> {
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    store::webhooks::delete(&tx, tenant, id)
        .await
        .map_err(AppError::missing("no such webhook"))?;
    super::commit(tx).await?;
    tracing::info!(tenant_id = %tenant, webhook_id = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a `test` event for the webhook.
///
/// 202 with its delivery (`pending`): the node owning the tenant sends it
/// within `[webhooks] poll_ms`, signed like every event, with `kind` `test`
/// and null campaign, job and recipient; `GET /v1/webhooks/{id}/deliveries`
/// shows how it went. The body is empty or `{}`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The webhook")),
    request_body = Option<NoFields>,
    responses(
        (status = 202, description = "The test delivery, queued", body = DeliveryBody),
        (status = 404, description = "No such webhook of the caller (`not_found`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn test(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    OptionalJsonBody(_): OptionalJsonBody<NoFields>,
) -> ApiResult<(StatusCode, Json<DeliveryBody>)> {
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let row = store::webhooks::enqueue_test(&tx, tenant, id)
        .await
        .map_err(AppError::missing("no such webhook"))?;
    super::commit(tx).await?;
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}

/// The webhook's deliveries, newest first, each with its attempts.
///
/// Paged by `before` = the last delivery id of the previous page (`next_before`).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The webhook"),
        ("before" = Option<Uuid>, Query, description = "Deliveries older than this one"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryList),
        (status = 404, description = "No such webhook of the caller (`not_found`)", body = ErrorBody),
        (status = 422, description = "A malformed, repeated or unknown query parameter, \
            or `limit` out of range (`invalid_request`)", body = ErrorBody),
        TenantOnly,
    ))]
async fn deliveries(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<DeliveryList>> {
    let Query(query) = query.map_err(|rejection| AppError::invalid(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(super::DEFAULT_PAGE_LIMIT);
    if !(1..=super::MAX_PAGE_LIMIT).contains(&limit) {
        return Err(AppError::invalid(format!(
            "limit must be between 1 and {}",
            super::MAX_PAGE_LIMIT
        )));
    }
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let mut rows = store::webhooks::deliveries(&tx, tenant, id, query.before, limit + 1)
        .await
        .map_err(AppError::missing("no such webhook"))?;
    super::commit(tx).await?;
    let next_before = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|d| d.id)
    } else {
        None
    };
    Ok(Json(DeliveryList {
        deliveries: rows.into_iter().map(DeliveryBody::from).collect(),
        next_before,
    }))
}

/// Sends a delivery again: due now, whatever its status (a `dead` one too).
///
/// The body is empty or `{}`. 202 with the delivery (`pending`); its earlier
/// attempts stay in its log.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The webhook"),
        ("delivery_id" = Uuid, Path, description = "The delivery"),
    ),
    request_body = Option<NoFields>,
    responses(
        (status = 202, description = "The delivery, due now", body = DeliveryBody),
        (status = 404, description = "No such webhook or delivery of the caller (`not_found`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn retry(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    path: Result<Path<(Uuid, Uuid)>, axum::extract::rejection::PathRejection>,
    OptionalJsonBody(_): OptionalJsonBody<NoFields>,
) -> ApiResult<(StatusCode, Json<DeliveryBody>)> {
    let Ok(Path((id, delivery))) = path else {
        return Err(AppError::not_found("not found"));
    };
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let row = store::webhooks::retry(&tx, tenant, id, delivery)
        .await
        .map_err(AppError::missing("no such delivery"))?;
    super::commit(tx).await?;
    tracing::info!(tenant_id = %tenant, webhook_id = %id, delivery_id = %delivery, "webhook delivery retried");
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}
