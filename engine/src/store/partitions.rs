//! The monthly partitions of `delivery_events` (V19): which to create and which
//! to drop for a given "now" ([`plan`], pure), and the two DDL steps
//! ([`create_month`], [`drop_month`]). Called by the retention round
//! ([`super::retention::run_round`]) under its advisory lock, so one node at a
//! time changes them.
//!
//! Guarantees:
//! - A month is `[first day 00:00 UTC, first day of the next month 00:00 UTC)`,
//!   its partition `delivery_events_pYYYYMM`.
//! - [`plan`] creates the month of `now` through `partitions_ahead` months
//!   ahead, and drops a month only when every instant of it is older than
//!   `now - events_days` (the month goes whole, so an event is kept at least
//!   `events_days` and at most a month longer).
//! - [`create_month`] never loses or duplicates an event: rows of the new month that
//!   sit in the DEFAULT partition are moved into the new table and the table
//!   attached, in one transaction; inserts into the default partition wait for
//!   that transaction (a lock on the default partition only), inserts into
//!   every other partition go on. The moved rows keep their ids and fire no
//!   trigger (they are written to the partition, not the parent: no second
//!   webhook delivery).
//! - Every DDL statement runs under `lock_timeout` (5 s to create, 1 s to
//!   drop), so a retention round never queues long behind a reader while
//!   holding up event inserts; it fails and the next round tries again. Event
//!   inserts are the Analytics actor's batches and the engagement routes, not
//!   the claim or outcome path of a message.

use deadpool_postgres::{GenericClient, Pool};
use time::{Date, Duration, Month as CalMonth, OffsetDateTime, Time};

use crate::db::StoreError;

/// The parent table.
pub const PARENT: &str = "delivery_events";
/// The DEFAULT partition (rows of a month without a partition).
pub const DEFAULT_PARTITION: &str = "delivery_events_default";
/// How long creating a partition waits for its locks (the default partition,
/// `SHARE UPDATE EXCLUSIVE` on the parent: event inserts elsewhere go on).
const LOCK_TIMEOUT: &str = "5s";
/// How long dropping a partition waits for its lock: `DROP TABLE` of a
/// partition takes `ACCESS EXCLUSIVE` on the parent, and event inserts queue
/// behind a waiting request, so it gives up quickly (the next round retries).
const DROP_LOCK_TIMEOUT: &str = "1s";

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    /// 1..=12
    pub month: u8,
}

impl Month {
    /// The month `at` falls in, in UTC.
    pub fn of(at: OffsetDateTime) -> Month {
        let at = at.to_offset(time::UtcOffset::UTC);
        Month {
            year: at.year(),
            month: u8::from(at.month()),
        }
    }

    /// `n` months later (earlier when negative).
    pub fn plus(self, n: i32) -> Month {
        let index = self.year * 12 + i32::from(self.month) - 1 + n;
        Month {
            year: index.div_euclid(12),
            month: (index.rem_euclid(12) + 1) as u8,
        }
    }

    /// Its first instant.
    pub fn start(self) -> OffsetDateTime {
        let month = CalMonth::try_from(self.month).unwrap_or(CalMonth::January);
        let date = Date::from_calendar_date(self.year, month, 1).unwrap_or(Date::MIN);
        date.with_time(Time::MIDNIGHT).assume_utc()
    }

    /// The first instant after it.
    pub fn end(self) -> OffsetDateTime {
        self.plus(1).start()
    }

    /// Its partition's name.
    pub fn table(self) -> String {
        format!("{PARENT}_p{:04}{:02}", self.year, self.month)
    }

    /// The month of a partition name (`None` for the default partition or any
    /// other name).
    pub fn of_table(name: &str) -> Option<Month> {
        let digits = name.strip_prefix(PARENT)?.strip_prefix("_p")?;
        if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: i32 = digits[..4].parse().ok()?;
        let month: u8 = digits[4..].parse().ok()?;
        (1..=12).contains(&month).then_some(Month { year, month })
    }

    /// `start()` as a Postgres timestamptz literal (digits only: safe to
    /// splice into DDL, which takes no parameters).
    fn literal(start: OffsetDateTime) -> String {
        format!(
            "{:04}-{:02}-{:02} 00:00:00+00",
            start.year(),
            u8::from(start.month()),
            start.day()
        )
    }
}

/// What a round does to the partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Months to create, oldest first.
    pub create: Vec<Month>,
    /// Months to drop, oldest first.
    pub drop: Vec<Month>,
    /// Events older than this are past retention (the start of the oldest
    /// month kept); rows of the default partition before it are deleted.
    pub keep_from: OffsetDateTime,
}

/// The partitions to create and drop at `now`, given those that `existing`.
pub fn plan(now: OffsetDateTime, existing: &[Month], events_days: u32, ahead: u32) -> Plan {
    let keep_from = Month::of(now - Duration::days(i64::from(events_days)));
    let this = Month::of(now);
    let ahead = i32::try_from(ahead).unwrap_or(i32::MAX / 24);
    let create = (0..=ahead)
        .map(|n| this.plus(n))
        .filter(|m| !existing.contains(m))
        .collect();
    let mut drop: Vec<Month> = existing
        .iter()
        .copied()
        .filter(|m| *m < keep_from)
        .collect();
    drop.sort();
    Plan {
        create,
        drop,
        keep_from: keep_from.start(),
    }
}

/// The monthly partitions attached to `delivery_events` now.
pub async fn existing(client: &impl GenericClient) -> Result<Vec<Month>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT c.relname::text FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'delivery_events'::regclass",
        )
        .await?;
    let mut months: Vec<Month> = client
        .query(&stmt, &[])
        .await?
        .iter()
        .filter_map(|row| Month::of_table(row.get(0)))
        .collect();
    months.sort();
    Ok(months)
}

/// Creates `month`'s partition, moving its rows out of the default partition
/// first; returns how many rows moved. One transaction.
pub async fn create_month(pool: &Pool, month: Month) -> Result<u64, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let table = month.table();
    let (from, to) = (month.start(), month.end());
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';
         CREATE TABLE {table} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
         LOCK TABLE {DEFAULT_PARTITION} IN SHARE ROW EXCLUSIVE MODE;"
    ))
    .await?;
    let moved = tx
        .execute(
            &format!(
                "WITH moved AS (
                     DELETE FROM {DEFAULT_PARTITION}
                     WHERE created_at >= $1 AND created_at < $2
                     RETURNING *)
                 INSERT INTO {table} SELECT * FROM moved"
            ),
            &[&from, &to],
        )
        .await?;
    tx.batch_execute(&format!(
        "ALTER TABLE {PARENT} ATTACH PARTITION {table}
             FOR VALUES FROM ('{}') TO ('{}')",
        Month::literal(from),
        Month::literal(to)
    ))
    .await?;
    tx.commit().await?;
    Ok(moved)
}

/// Drops `month`'s partition with every event in it.
pub async fn drop_month(pool: &Pool, month: Month) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}';
         DROP TABLE IF EXISTS {};",
        month.table()
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes at most `batch` rows of the default partition older than `before`;
/// returns how many.
pub async fn delete_default_before(
    pool: &Pool,
    before: OffsetDateTime,
    batch: i64,
) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "DELETE FROM delivery_events_default WHERE ctid = ANY (ARRAY(
                 SELECT ctid FROM delivery_events_default WHERE created_at < $1 LIMIT $2))",
        )
        .await?;
    Ok(client.execute(&stmt, &[&before, &batch]).await?)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn m(year: i32, month: u8) -> Month {
        Month { year, month }
    }

    #[test]
    fn months_add_across_years_both_ways() {
        assert_eq!(m(2026, 12).plus(1), m(2027, 1));
        assert_eq!(m(2026, 1).plus(-1), m(2025, 12));
        assert_eq!(m(2026, 11).plus(14), m(2028, 1));
        assert_eq!(m(2026, 3).plus(-15), m(2024, 12));
        assert_eq!(m(2026, 5).plus(0), m(2026, 5));
    }

    #[test]
    fn a_month_is_its_utc_calendar_month() {
        assert_eq!(m(2027, 2).start(), datetime!(2027-02-01 00:00 UTC));
        assert_eq!(m(2027, 2).end(), datetime!(2027-03-01 00:00 UTC));
        assert_eq!(m(2026, 12).end(), datetime!(2027-01-01 00:00 UTC));
        // 23:30 on Jan 31 at UTC-2 is Feb 1 in UTC.
        assert_eq!(Month::of(datetime!(2027-01-31 23:30 -2)), m(2027, 2));
        assert_eq!(Month::of(datetime!(2027-02-01 00:00 UTC)), m(2027, 2));
        assert_eq!(
            Month::of(datetime!(2027-01-31 23:59:59.999 UTC)),
            m(2027, 1)
        );
    }

    #[test]
    fn table_names_round_trip_and_others_are_not_months() {
        assert_eq!(m(2026, 7).table(), "delivery_events_p202607");
        assert_eq!(Month::of_table("delivery_events_p202607"), Some(m(2026, 7)));
        assert_eq!(Month::of_table("delivery_events_default"), None);
        assert_eq!(Month::of_table("delivery_events_p202613"), None);
        assert_eq!(Month::of_table("delivery_events_p20261"), None);
        assert_eq!(Month::of_table("other_p202601"), None);
        assert_eq!(Month::literal(m(2026, 7).start()), "2026-07-01 00:00:00+00");
    }

    #[test]
    fn creates_this_month_through_ahead_that_are_missing() {
        let now = datetime!(2026-12-07 12:00 UTC);
        let plan = plan(now, &[m(2026, 12), m(2027, 2)], 400, 3);
        assert_eq!(plan.create, vec![m(2027, 1), m(2027, 3)]);
        assert!(plan.drop.is_empty());
    }

    #[test]
    fn drops_a_month_only_once_all_of_it_is_past_retention() {
        let existing: Vec<Month> = (0..16).map(|n| m(2025, 9).plus(n)).collect();
        // now - 400 days = 2025-10-31 12:00: October 2025 still has a day to keep.
        let now = datetime!(2026-12-05 12:00 UTC);
        let plan1 = plan(now, &existing, 400, 3);
        assert_eq!(plan1.drop, vec![m(2025, 9)]);
        assert_eq!(plan1.keep_from, datetime!(2025-10-01 00:00 UTC));
        // One day later, now - 400 days = 2025-11-01 12:00: October goes.
        let plan2 = plan(now + Duration::days(1), &existing, 400, 3);
        assert_eq!(plan2.drop, vec![m(2025, 9), m(2025, 10)]);
        // Exactly at the boundary: now - days = 2025-11-01 00:00, October is
        // all older.
        let plan3 = plan(datetime!(2026-12-06 00:00 UTC), &existing, 400, 3);
        assert_eq!(plan3.drop, vec![m(2025, 9), m(2025, 10)]);
        let plan4 = plan(datetime!(2026-12-05 23:59:59 UTC), &existing, 400, 3);
        assert_eq!(plan4.drop, vec![m(2025, 9)]);
    }

    #[test]
    fn the_current_month_is_never_dropped() {
        let now = datetime!(2027-03-01 00:00 UTC);
        let plan = plan(now, &[m(2027, 2), m(2027, 3)], 1, 1);
        assert_eq!(plan.drop, vec![]);
        let plan = plan_after(now + Duration::days(1), &[m(2027, 2), m(2027, 3)]);
        assert_eq!(plan.drop, vec![m(2027, 2)]);
        assert_eq!(plan.create, vec![m(2027, 4)]);
    }

    fn plan_after(now: OffsetDateTime, existing: &[Month]) -> Plan {
        plan(now, existing, 1, 1)
    }
}
