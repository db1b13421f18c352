//! State changes the engine itself makes to an IP: the health breaker's pause.
//! (Operators pause and resume through the API; the Warmup actor moves warm-up
//! days and ends automatic pauses.)

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// Pauses an active IP until `until` because of its health, and lowers its rate
/// factor to at most `resume_factor` for when it resumes. Returns whether the IP
/// was active (a paused IP keeps its operator's reason).
pub async fn pause_for_health(
    pool: &Pool,
    tenant: Uuid,
    ip: Uuid,
    why: &str,
    until: OffsetDateTime,
    resume_factor: f64,
) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "UPDATE smtp_ips
             SET status = 'paused', status_reason = $3, paused_until = $4,
                 rate_factor = least(rate_factor, $5::float8::real)
             WHERE tenant_id = $1 AND id = $2 AND status = 'active'",
        )
        .await?;
    let reason = format!("health: {why}");
    let changed = client
        .execute(&stmt, &[&tenant, &ip, &reason, &until, &resume_factor])
        .await?;
    Ok(changed == 1)
}
