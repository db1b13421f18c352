//! Storage sizes (issue 23): rows and bytes per table and per partition, and
//! the oldest delivery event kept. Read by `GET /v1/stats/storage` (admin,
//! every table of the schema) and by the Gauges actor (the fixed
//! [`METRIC_TABLES`], `penguin_storage_rows{table}` / `_bytes{table}`).
//!
//! Cheap by construction:
//! - bytes are `pg_total_relation_size` (heap, indexes, TOAST) of every leaf
//!   relation, summed up to its partitioned parent;
//! - rows are exact (`count(*)`) for a leaf whose heap is at most
//!   [`EXACT_MAX_BYTES`], and otherwise `pg_class.reltuples`, the planner's
//!   estimate kept by (auto)vacuum and ANALYZE; `rows_exact` says which;
//! - partitions are the direct children of `pg_inherits` with their bounds
//!   (`pg_get_expr(relpartbound)`), whatever the partitioning is;
//! - the oldest retained day is `min(created_at)` of `delivery_events`, one
//!   probe of an index leading with `created_at` (`V20__audit_erasure.sql`
//!   makes sure there is one; on a partitioned table, one per partition).

use deadpool_postgres::GenericClient;
use time::{Date, OffsetDateTime};

use crate::db::StoreError;

/// A leaf at most this large (heap bytes) is counted exactly.
pub const EXACT_MAX_BYTES: i64 = 1024 * 1024;

/// The tables the storage gauges report (a fixed, bounded label set): those
/// that grow with every message, plus the lists they are checked against.
pub const METRIC_TABLES: [&str; 11] = [
    "delivery_events",
    "send_jobs",
    "leads",
    "suppressions",
    "global_suppressions",
    "campaign_daily_stats",
    "ip_daily_stats",
    "campaign_minute_stats",
    "webhook_deliveries",
    "webhook_attempts",
    "audit_log",
];

/// Rows and bytes of one relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Size {
    pub name: String,
    pub rows: i64,
    /// Whether `rows` is a count, not the planner's estimate.
    pub rows_exact: bool,
    pub bytes: i64,
}

/// One partition: its size and its bounds as Postgres prints them (`None`
/// for a default partition, or bounds that are not a range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub size: Size,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One table of the schema (plain or partitioned) with its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// For a partitioned table, the sums over its partitions.
    pub size: Size,
    /// Direct partitions by name; empty for a plain table.
    pub partitions: Vec<Partition>,
}

/// Every table of the current schema that is not a partition (or only those
/// named in `only`), by name.
pub async fn tables(
    client: &impl GenericClient,
    only: Option<&[&str]>,
) -> Result<Vec<Table>, StoreError> {
    let only: Option<Vec<String>> = only.map(|names| names.iter().map(|n| n.to_string()).collect());
    let top = client
        .prepare_cached(
            "SELECT c.oid, c.relname::text, c.relkind = 'p', c.reltuples::float8,
                    pg_relation_size(c.oid), pg_total_relation_size(c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
               AND NOT c.relispartition AND ($1::text[] IS NULL OR c.relname = ANY($1))
             ORDER BY 2",
        )
        .await?;
    let children = client
        .prepare_cached(
            "SELECT c.relname::text, c.relkind = 'p', c.reltuples::float8,
                    pg_relation_size(c.oid), pg_total_relation_size(c.oid),
                    coalesce(pg_get_expr(c.relpartbound, c.oid), ''),
                    (SELECT coalesce(sum(greatest(l.reltuples, 0)), 0)::float8
                     FROM pg_partition_tree(c.oid) t JOIN pg_class l ON l.oid = t.relid
                     WHERE t.isleaf),
                    (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::int8
                     FROM pg_partition_tree(c.oid) t WHERE t.isleaf)
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = $1
             ORDER BY 1",
        )
        .await?;
    let mut out = Vec::new();
    for row in client.query(&top, &[&only]).await? {
        let oid: u32 = row.get(0);
        let name: String = row.get(1);
        let partitioned: bool = row.get(2);
        let mut partitions = Vec::new();
        for child in client.query(&children, &[&oid]).await? {
            let child_name: String = child.get(0);
            let size = if child.get::<_, bool>(1) {
                // Partitioned again: its leaves' estimates and bytes.
                Size {
                    name: child_name,
                    rows: child.get::<_, f64>(6) as i64,
                    rows_exact: false,
                    bytes: child.get(7),
                }
            } else {
                leaf_size(client, child_name, child.get(2), child.get(3), child.get(4)).await?
            };
            let (from, to) = range_bounds(child.get(5));
            partitions.push(Partition { size, from, to });
        }
        let size = if partitioned {
            Size {
                name,
                rows: partitions.iter().map(|p| p.size.rows).sum(),
                rows_exact: partitions.iter().all(|p| p.size.rows_exact),
                bytes: partitions.iter().map(|p| p.size.bytes).sum(),
            }
        } else {
            leaf_size(client, name, row.get(3), row.get(4), row.get(5)).await?
        };
        out.push(Table { size, partitions });
    }
    Ok(out)
}

/// A leaf's size: counted when its heap is small, else the estimate (0 while
/// it was never analysed).
async fn leaf_size(
    client: &impl GenericClient,
    name: String,
    estimate: f64,
    heap_bytes: i64,
    bytes: i64,
) -> Result<Size, StoreError> {
    if heap_bytes <= EXACT_MAX_BYTES {
        // The name comes from pg_class; quoted as an identifier all the same.
        let sql = format!("SELECT count(*) FROM \"{}\"", name.replace('"', "\"\""));
        let rows: i64 = client.query_one(sql.as_str(), &[]).await?.get(0);
        return Ok(Size {
            name,
            rows,
            rows_exact: true,
            bytes,
        });
    }
    Ok(Size {
        name,
        rows: estimate.max(0.0) as i64,
        rows_exact: false,
        bytes,
    })
}

/// The `FROM (…) TO (…)` of a range partition's bound expression, unquoted;
/// `(None, None)` for a default partition or a list/hash bound.
pub fn range_bounds(bound: &str) -> (Option<String>, Option<String>) {
    let Some(rest) = bound.strip_prefix("FOR VALUES FROM (") else {
        return (None, None);
    };
    let Some((from, to)) = rest.split_once(") TO (") else {
        return (None, None);
    };
    let to = to.strip_suffix(')').unwrap_or(to);
    let unquote = |v: &str| v.trim().trim_matches('\'').to_string();
    (Some(unquote(from)), Some(unquote(to)))
}

/// The UTC day of the oldest delivery event kept, `None` when there is none.
pub async fn oldest_event_day(client: &impl GenericClient) -> Result<Option<Date>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT min(created_at) FROM delivery_events")
        .await?;
    let oldest: Option<OffsetDateTime> = client.query_one(&stmt, &[]).await?.get(0);
    Ok(oldest.map(|at| at.to_offset(time::UtcOffset::UTC).date()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_bounds_are_read_from_postgres_bound_text() {
        assert_eq!(
            range_bounds(
                "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')"
            ),
            (
                Some("2026-01-01 00:00:00+00".to_string()),
                Some("2026-02-01 00:00:00+00".to_string())
            )
        );
        assert_eq!(
            range_bounds("FOR VALUES FROM (MINVALUE) TO ('2026-01-01 00:00:00+00')"),
            (
                Some("MINVALUE".to_string()),
                Some("2026-01-01 00:00:00+00".to_string())
            )
        );
        assert_eq!(range_bounds("DEFAULT"), (None, None));
        assert_eq!(range_bounds("FOR VALUES IN ('a')"), (None, None));
        assert_eq!(range_bounds(""), (None, None));
    }
}
