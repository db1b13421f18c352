//! The daily re-check of verified sending domains. One task per node
//! ([`DomainRechecker::start`], by whoever builds the [`crate::AppState`]); every
//! [`ROUND`] it claims the domains whose last DNS check is older than
//! `domains.recheck_hours` (a claim stamps them, so nodes never check a domain
//! twice) and verifies each again, at most [`BATCH`] a round. A domain that no
//! longer verifies turns `failed` with its checks (shown by the API) and counts
//! in `penguin_domain_checks_total{status="failed"}` ([`crate::domain_verify`]); its active keys keep
//! signing (they are what its DNS published). The gauge `penguin_sending_domains`
//! counts domains by status after each round. Each round also deletes the
//! rotated-out keys whose `domains.rotation_grace_hours` have passed.
//!
//! Cost follows work: one indexed claim and one indexed delete per round and node, whatever the number
//! of tenants or domains; nothing else while nothing is due.
//!
//! The task stops when its [`DomainRechecker`] is dropped.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use metrics::{Recorder, gauge};
use penguin_engine::store;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::domain_kit::DomainKit;

/// How often a node looks for domains due a re-check.
pub const ROUND: Duration = Duration::from_secs(60);
/// The most domains one round re-checks.
pub const BATCH: i64 = 50;
/// Sending domains by `status`, after the last re-check round.
pub const SENDING_DOMAINS: &str = "penguin_sending_domains";

/// Owns the re-check task; dropping it stops the task.
#[derive(Debug)]
pub struct DomainRechecker {
    task: JoinHandle<()>,
}

impl Drop for DomainRechecker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DomainRechecker {
    pub fn start(
        pg: Pool,
        kit: DomainKit,
        recheck_hours: u64,
        grace_hours: u64,
        recorder: Arc<dyn Recorder + Send + Sync>,
    ) -> DomainRechecker {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(ROUND);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut first = true;
            loop {
                tick.tick().await;
                let round = recheck_round(&pg, &kit, recheck_hours, grace_hours, first);
                first = false;
                let counts = crate::metrics::recorded(recorder.clone(), round).await;
                if let Err(error) = counts {
                    tracing::warn!(%error, "sending-domain re-check round failed");
                }
            }
        });
        DomainRechecker { task }
    }
}

/// One round: claims what is due, checks it, updates the gauge (after checks,
/// and on the first round).
pub async fn recheck_round(
    pg: &Pool,
    kit: &DomainKit,
    recheck_hours: u64,
    grace_hours: u64,
    first: bool,
) -> Result<usize, penguin_engine::db::StoreError> {
    let now = OffsetDateTime::now_utc();
    let before = now - time::Duration::hours(recheck_hours as i64);
    let due = store::domain_checks::claim_for_recheck(pg, before, BATCH, now).await?;
    let grace = time::Duration::hours(grace_hours as i64);
    for (tenant, id) in &due {
        let row = match store::domains::fetch(pg, Some(*tenant), *id).await {
            Ok(row) => row,
            Err(penguin_engine::db::StoreError::NotFound) => continue,
            Err(other) => return Err(other),
        };
        let outcome = crate::domain_verify::check(pg, kit.dns.as_ref(), &row, grace).await?;
        if outcome.status != "verified" {
            tracing::warn!(%tenant, domain_id = %id, domain = %row.domain,
                status = outcome.status, "sending domain no longer verifies");
        }
    }
    let pruned = store::domain_checks::prune_retired(pg, now).await?;
    if pruned > 0 {
        tracing::info!(
            keys = pruned,
            "rotated-out DKIM keys deleted after their grace"
        );
    }
    if first || !due.is_empty() {
        for (status, count) in store::domain_checks::status_counts(pg).await? {
            gauge!(SENDING_DOMAINS, "status" => status).set(count as f64);
        }
    }
    Ok(due.len())
}
