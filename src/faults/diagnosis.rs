//! What a failed fault run leaves to read: each tenant's jobs per state (with
//! how many of the waiting ones are due) and what each of its IPs reserved in
//! the current UTC hour (`ip_hourly_usage`), so a stall can be told apart from
//! a used cap without the nodes.

use std::fmt::Write;

use uuid::Uuid;

/// One line per tenant: `<tenant> jobs {state: n (due d)} reserved [ip: n]`;
/// the error itself when Postgres cannot say.
pub async fn snapshot(pg: &deadpool_postgres::Pool, tenants: &[Uuid]) -> String {
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
                                    AND u.hour = date_trunc('hour', now())), 0)
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
                let _ = write!(out, " {ip}: {n}");
            }
        }
        anyhow::Ok(out)
    };
    match read.await {
        Ok(text) => text,
        Err(err) => format!(" (Postgres could not say: {err:#})"),
    }
}
