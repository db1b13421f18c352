//! What a failed fault run leaves to read: each tenant's jobs per state (with
//! how many of the waiting ones are due) and what each of its IPs reserved in
//! the current UTC hour (`ip_hourly_usage`), so a stall can be told apart from
//! a used cap without the nodes; and beside them what Redis holds: the
//! tenant's three lists and in-flight set, and each IP's hour counter (the
//! run's IPs are on UTC), so a job lost from Redis or a counter ahead of
//! Postgres shows.

use std::fmt::Write;

use penguin_engine::queue::TenantKeys;
use penguin_engine::queue::counters::day_key;
use uuid::Uuid;

/// One line per tenant: `<tenant> jobs {state: n (due d)} reserved [ip: n
/// (redis r)]; redis lists h/n/l in-flight f`; the error itself when Postgres
/// cannot say, and `?` for what Redis cannot.
pub async fn snapshot(
    pg: &deadpool_postgres::Pool,
    redis: &penguin_engine::queue::RedisPool,
    tenants: &[Uuid],
) -> String {
    let read = async {
        let client = pg.get().await?;
        let jobs = client
            .query(
                "SELECT tenant_id, status, count(*), count(*) FILTER (WHERE run_at <= now())
                 FROM send_jobs WHERE tenant_id = ANY($1)
                 GROUP BY 1, 2 ORDER BY 1, 2",
                &[&tenants],
            )
            .await?;
        let usage = client
            .query(
                "SELECT i.tenant_id, host(i.address),
                        coalesce((SELECT u.reserved FROM ip_hourly_usage u
                                  WHERE u.tenant_id = i.tenant_id AND u.ip_id = i.id
                                    AND u.hour = date_trunc('hour', now())), 0),
                        i.id, (now() AT TIME ZONE 'UTC')::date,
                        extract(hour FROM now() AT TIME ZONE 'UTC')::int
                 FROM smtp_ips i WHERE i.tenant_id = ANY($1) ORDER BY 1, 2",
                &[&tenants],
            )
            .await?;
        let mut out = String::new();
        for tenant in tenants {
            let _ = write!(out, "\n  {tenant} jobs");
            for row in jobs.iter().filter(|r| r.get::<_, Uuid>(0) == *tenant) {
                let (status, n, due): (String, i64, i64) = (row.get(1), row.get(2), row.get(3));
                let _ = write!(out, " {status}: {n} (due {due})");
            }
            let _ = write!(out, "; reserved this hour");
            for row in usage.iter().filter(|r| r.get::<_, Uuid>(0) == *tenant) {
                let (ip, n): (String, i32) = (row.get(1), row.get(2));
                let key = day_key(*tenant, row.get(3), row.get(4));
                let field = format!("h{:02}", row.get::<_, i32>(5));
                let counter = redis_read(redis, redis::cmd("HGET").arg(key).arg(field)).await;
                let _ = write!(out, " {ip}: {n} (redis {counter})");
            }
            let keys = TenantKeys::new(*tenant);
            let mut lists = Vec::new();
            for list in &keys.lists {
                lists.push(redis_read(redis, redis::cmd("LLEN").arg(list)).await);
            }
            let inflight = redis_read(redis, redis::cmd("ZCARD").arg(&keys.inflight)).await;
            let _ = write!(
                out,
                "; redis lists {} in-flight {inflight}",
                lists.join("/")
            );
        }
        anyhow::Ok(out)
    };
    match read.await {
        Ok(text) => text,
        Err(err) => format!(" (Postgres could not say: {err:#})"),
    }
}

/// One number Redis answers to `command`: `?` when it cannot say, `-` when
/// absent.
async fn redis_read(redis: &penguin_engine::queue::RedisPool, command: &redis::Cmd) -> String {
    let Ok(mut connection) = redis.get().await else {
        return "?".into();
    };
    match command.query_async::<Option<i64>>(&mut connection).await {
        Ok(Some(n)) => n.to_string(),
        Ok(None) => "-".into(),
        Err(_) => "?".into(),
    }
}
