//! The route groups, one per file, each a `routes() -> OpenApiRouter<AppState>`
//! registering `#[utoipa::path]`-annotated handlers (full paths) with
//! `utoipa_axum::routes!`, so each route is served and documented at once. Also
//! [`publish`], the hint every state change sends to the nodes, [`Paging`], the
//! `?after=&limit=` of the list routes, and [`tenant_scope`] / [`caller_scope`] /
//! [`commit`], the transaction a route's queries run in (for a tenant caller:
//! under the tenant role, where row-level security applies).

pub mod audit;
pub mod bounces;
pub mod campaign_actions;
pub mod campaign_lists;
pub mod campaign_patch;
pub mod campaign_retry;
pub mod campaigns;
pub mod complaints;
pub mod docs;
pub mod domains;
pub mod erasure;
pub mod events;
pub mod events_stream;
pub mod ips;
pub mod leads;
pub mod nodes;
pub mod ops;
pub mod replies;
pub mod schedules;
pub mod stats;
pub mod storage;
pub mod suppressions;
pub mod suppressions_global;
pub mod tenants;
pub mod tokens;
pub mod tracking;
pub mod unsubscribe;
pub mod webhooks;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use deadpool_postgres::{Object, Transaction};
use penguin_engine::control::{self, ControlEvent};
use penguin_engine::db::StoreError;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiResult, AppError};

/// Rows per page when `limit` is absent, and the most a page may ask for.
pub(crate) const DEFAULT_PAGE_LIMIT: i64 = 100;
pub(crate) const MAX_PAGE_LIMIT: i64 = 1000;

/// The query of a list route: rows after the cursor `after` (of type `C`, the
/// last row's key from the previous page's `next_after`), at most `limit`.
/// A malformed, repeated or unknown parameter, or a limit outside
/// 1..=[`MAX_PAGE_LIMIT`], is 422 `invalid_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paging<C> {
    pub after: Option<C>,
    pub limit: i64,
}

impl<C> Paging<C> {
    /// How many rows to ask the store for: one more than a page, to know
    /// whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts `rows` (fetched with [`Self::fetch`]) to a page; returns it and the
    /// cursor of the next page (`key` of its last row), `None` on the last page.
    pub fn page<T, K>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> K) -> (Vec<T>, Option<K>) {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if rows.len() <= limit {
            return (rows, None);
        }
        rows.truncate(limit);
        let next = rows.last().map(key);
        (rows, next)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagingQuery<C> {
    after: Option<C>,
    limit: Option<i64>,
}

impl<S, C> FromRequestParts<S> for Paging<C>
where
    S: Send + Sync,
    C: DeserializeOwned + Send,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        let Query(query) = Query::<PagingQuery<C>>::try_from_uri(&parts.uri)
            .map_err(|rejection| AppError::invalid(rejection.body_text()))?;
        let limit = query.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(AppError::invalid(format!(
                "limit must be between 1 and {MAX_PAGE_LIMIT}"
            )));
        }
        Ok(Paging {
            after: query.after,
            limit,
        })
    }
}

/// Tells every engine node about a change. A failure is only logged: the change
/// is already in Postgres, and nodes poll it anyway (slower).
pub(crate) async fn publish(state: &AppState, event: ControlEvent) {
    if let Err(error) = control::publish(&state.redis, &event).await {
        tracing::warn!(%error, tenant_id = %event.tenant_id(), "control event not published");
    }
}

/// Who `caller` is in the audit log.
pub(crate) fn actor(caller: Caller) -> penguin_engine::store::audit::Actor {
    use penguin_engine::store::audit::Actor;
    match caller {
        Caller::Admin => Actor::Admin,
        Caller::Tenant(tenant) => Actor::Tenant(tenant),
    }
}

/// Records an audit entry after its change committed in a transaction of the
/// store's own (tenant creation, IP registration and retirement, domains). The change
/// stands either way: a failure is logged as an error, not answered.
pub(crate) async fn audit_after(state: &AppState, entry: penguin_engine::store::audit::Entry) {
    let written = match state.pg.get().await {
        Ok(client) => penguin_engine::store::audit::record(&client, &entry).await,
        Err(error) => Err(StoreError::from(error)),
    };
    if let Err(error) = written {
        tracing::error!(%error, action = entry.action, "audit entry not written");
    }
}

/// A pooled connection for [`tenant_scope`]: `let mut client =
/// connection(&state).await?; let tx = tenant_scope(&mut client, tenant).await?;`
pub(crate) async fn connection(state: &AppState) -> ApiResult<Object> {
    Ok(state.pg.get().await.map_err(StoreError::from)?)
}

/// Opens the transaction of a tenant route: under the tenant role with
/// `app.current_tenant_id` = `tenant` (`db::tenant_transaction`), so the
/// row-level-security policies confine every query to the tenant's rows, behind
/// the store's own `tenant_id` filters. Dropped without [`commit`], it rolls back.
pub(crate) async fn tenant_scope(
    client: &mut Object,
    tenant: uuid::Uuid,
) -> ApiResult<Transaction<'_>> {
    Ok(penguin_engine::db::tenant_transaction(client, tenant).await?)
}

/// Commits a [`tenant_scope`] transaction.
pub(crate) async fn commit(tx: Transaction<'_>) -> ApiResult<()> {
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

/// The transaction of a route open to the admin and to the owner: a tenant's is
/// [`tenant_scope`]; the admin's runs on the owner's role (it spans tenants).
pub(crate) async fn caller_scope(
    client: &mut Object,
    caller: Caller,
) -> ApiResult<Transaction<'_>> {
    match caller {
        Caller::Tenant(tenant) => tenant_scope(client, tenant).await,
        Caller::Admin => Ok(client.transaction().await.map_err(StoreError::from)?),
    }
}
