//! `GET /v1/stats/storage` (admin) → `{tables: [{name, rows, rows_exact,
//! bytes, partitions: [{name, rows, rows_exact, bytes, from, to}]}],
//! oldest_event_day, generated_at}`: what the data takes, per table of the
//! schema and per partition (`store::storage`).
//!
//! `rows` is exact (`rows_exact: true`) for a relation whose heap is at most
//! 1 MiB, else the planner's estimate (`pg_class.reltuples`, kept by
//! autovacuum/ANALYZE); `bytes` is `pg_total_relation_size` (heap, indexes,
//! TOAST), a partitioned table's the sum of its partitions'. `partitions` is
//! empty for a plain table; `from`/`to` are a range partition's bounds as
//! Postgres prints them (null for a default partition). `oldest_event_day` is
//! the UTC day of the oldest delivery event kept (null: none), one index probe.

use axum::Json;
use axum::extract::State;
use penguin_engine::store::storage::{self, Partition, Size};
use serde::Serialize;
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::AdminCaller;
use crate::error::ApiResult;
use crate::openapi::AdminOnly;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(storage_stats))
}

#[derive(Debug, Serialize, ToSchema)]
struct PartitionBody {
    name: String,
    rows: i64,
    /// Whether `rows` is a count (small partitions), not the estimate.
    rows_exact: bool,
    bytes: i64,
    /// Lower bound (inclusive) of a range partition; null for a default one.
    from: Option<String>,
    /// Upper bound (exclusive) of a range partition; null for a default one.
    to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct TableBody {
    name: String,
    rows: i64,
    /// Whether `rows` is a count (small tables), not the estimate.
    rows_exact: bool,
    bytes: i64,
    /// Its partitions; empty for a plain table.
    partitions: Vec<PartitionBody>,
}

#[derive(Debug, Serialize, ToSchema)]
struct StorageBody {
    tables: Vec<TableBody>,
    /// UTC day (YYYY-MM-DD) of the oldest delivery event kept; null when none.
    #[schema(value_type = Option<String>)]
    oldest_event_day: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    generated_at: OffsetDateTime,
}

fn partition(p: Partition) -> PartitionBody {
    let Size {
        name,
        rows,
        rows_exact,
        bytes,
    } = p.size;
    PartitionBody {
        name,
        rows,
        rows_exact,
        bytes,
        from: p.from,
        to: p.to,
    }
}

fn day(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Rows and bytes per table and partition, and the oldest event day (admin).
#[utoipa::path(get, path = "/v1/stats/storage", tag = "stats",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Sizes per table and partition", body = StorageBody),
        AdminOnly,
    ))]
async fn storage_stats(
    _: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<Json<StorageBody>> {
    let client = super::connection(&state).await?;
    let tables = storage::tables(&client, None).await?;
    let oldest = storage::oldest_event_day(&client).await?;
    drop(client);
    Ok(Json(StorageBody {
        tables: tables
            .into_iter()
            .map(|t| TableBody {
                name: t.size.name,
                rows: t.size.rows,
                rows_exact: t.size.rows_exact,
                bytes: t.size.bytes,
                partitions: t.partitions.into_iter().map(partition).collect(),
            })
            .collect(),
        oldest_event_day: oldest.map(day),
        generated_at: OffsetDateTime::now_utc(),
    }))
}
