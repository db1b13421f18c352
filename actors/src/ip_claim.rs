//! How an Ip actor claims a granted batch: `queued → sending` in Postgres under
//! this node's epoch of the tenant (a fenced claim changes nothing) with a fresh
//! claim id, usage recorded in the same transaction, the batch acknowledged in
//! Redis, and each claimed job handed to a delivery worker once, with the claim
//! id its outcome must carry and its attempt deadline (`[delivery]
//! attempt_timeout_ms` from just before the claim, which is no later than the
//! `updated_at` the Reaper's `queue.sending_timeout_ms` counts from); suppressed
//! addresses are recorded instead of sent.

use penguin_engine::db::StoreError;
use penguin_engine::queue::Popped;
use penguin_engine::store::events::Event;
use penguin_engine::store::fences::Epoch;
use penguin_engine::store::ledger::{self, ClaimedJob};
use uuid::Uuid;

use crate::allowance::Grant;
use crate::analytics;
use crate::delivery::Work;
use crate::ip::IpState;

impl IpState {
    /// Claims the granted jobs `sending` (recording their usage), hands them to
    /// the workers, and returns how many were claimed (`None` if the claim failed).
    pub(crate) async fn claim(&mut self, batch: Vec<Popped>, grant: &Grant) -> Option<u32> {
        let tenant = self.spec.tenant_id;
        let pairs: Vec<(Uuid, Uuid)> = batch
            .iter()
            .map(|p| (p.payload.job_id(), self.spec.id))
            .collect();
        let mut campaigns: Vec<Uuid> = batch.iter().map(|p| p.payload.job().campaign_id).collect();
        campaigns.sort_unstable();
        campaigns.dedup();
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_millis(self.ctx.config.delivery.attempt_timeout_ms);
        let (claim, epoch) = match self
            .claim_fenced(&pairs, &campaigns, grant, batch.len())
            .await
        {
            Claimed::Yes(claim, epoch) => (claim, epoch),
            Claimed::No => {
                let ports = self.ports.as_ref();
                self.allowance.unused(ports, &self.spec, grant, 0).await;
                self.return_credit(batch.len());
                return None;
            }
            // The claim may have committed before its connection broke: the
            // reservations stay (never give back a send that may happen); a
            // later short grant compares with Postgres and resets.
            Claimed::Unknown => {
                self.allowance.in_doubt(grant.n);
                self.return_credit(batch.len());
                return None;
            }
        };
        let claimed_n = claim.claimed.len() as u32;
        let ports = self.ports.as_ref();
        self.allowance
            .unused(ports, &self.spec, grant, claimed_n)
            .await;
        if batch.is_empty() {
            return Some(claimed_n);
        }
        // Postgres now holds the truth for every offered job: drop them from Redis.
        let raws: Vec<&[u8]> = batch.iter().map(|p| p.raw.as_slice()).collect();
        if let Err(err) = self.ports.ack(tenant, &raws).await {
            tracing::warn!(error = %err, "acknowledging jobs in redis failed");
        }
        if !claim.suppressed.is_empty() {
            self.record_suppressed(&batch, &claim.suppressed);
        }
        // One send per claimed job: a job can sit in the batch twice (a stale Redis
        // copy next to its re-fed one after Redis lost state), and Postgres claims
        // it once — so the first copy takes the claim and any other is dropped.
        let claim_id = claim.claim;
        let mut claimed: std::collections::HashMap<Uuid, ClaimedJob> =
            claim.claimed.into_iter().map(|c| (c.job, c)).collect();
        let mut unclaimed = 0;
        for popped in batch {
            let job = popped.payload.into_job();
            match (claimed.remove(&job.job_id), &self.work) {
                (Some(claimed), Some(work)) => {
                    let work_item = Work {
                        job,
                        first_attempt: claimed.first_attempt,
                        step: claimed.step,
                        thread: claimed.thread,
                        hour_start: grant.mark.hour_start,
                        fence: epoch,
                        claim: claim_id,
                        deadline,
                    };
                    let priority = work_item.job.priority;
                    if work.push(priority, work_item).is_err() {
                        unclaimed += 1;
                    }
                }
                _ => unclaimed += 1,
            }
        }
        self.return_credit(unclaimed);
        Some(claimed_n)
    }

    /// `claim_sending` under this node's epoch of the tenant: [`Claimed::No`]
    /// when fenced (another node took the tenant over), [`Claimed::Unknown`]
    /// when Postgres failed.
    async fn claim_fenced(
        &self,
        pairs: &[(Uuid, Uuid)],
        campaigns: &[Uuid],
        grant: &Grant,
        offered: usize,
    ) -> Claimed {
        let tenant = self.spec.tenant_id;
        let Some(epoch) = self.ctx.fence(tenant) else {
            return Claimed::No;
        };
        let now = self.ctx.clock.now();
        let mark = Some(grant.mark);
        let claimed = self
            .ports
            .claim_sending(tenant, epoch, pairs, campaigns, now, mark)
            .await;
        match claimed {
            Ok(claim) if claim.fenced => {
                tracing::warn!(ip = %self.spec.address, "claim refused: the tenant's epoch moved on");
                self.ctx.metrics.fenced("claim", offered);
                Claimed::No
            }
            Ok(claim) => Claimed::Yes(claim, epoch),
            Err(err) => {
                tracing::warn!(ip = %self.spec.address, error = %err, "claiming jobs failed");
                match err {
                    // No connection, or the server refused the transaction:
                    // nothing was committed.
                    StoreError::Pool(_) => Claimed::No,
                    StoreError::Db(ref db) if db.code().is_some() => Claimed::No,
                    _ => Claimed::Unknown,
                }
            }
        }
    }

    /// Jobs the claim found on the suppression list: already terminal in Postgres;
    /// record the event.
    fn record_suppressed(&self, batch: &[Popped], suppressed: &[Uuid]) {
        let now = self.ctx.clock.now();
        let mut seen = std::collections::HashSet::new();
        let events = batch
            .iter()
            .map(|p| p.payload.job())
            .filter(|job| suppressed.contains(&job.job_id) && seen.insert(job.job_id))
            .map(|job| {
                self.ctx.metrics.message("suppressed");
                Event {
                    tenant_id: job.tenant_id,
                    campaign_id: job.campaign_id,
                    job_id: job.job_id,
                    ip_id: Some(self.spec.id),
                    kind: "suppressed".into(),
                    smtp_code: None,
                    enhanced_code: None,
                    class: None,
                    provider: None,
                    reply: Some("address is on the tenant's suppression list".into()),
                    at: now,
                    step: 1,
                }
            })
            .collect();
        analytics::record(&self.ctx, events);
    }
}

/// What became of a claim.
enum Claimed {
    Yes(ledger::SendingClaim, Epoch),
    /// Nothing was claimed (no lease, or the epoch moved on).
    No,
    /// Postgres failed: the transaction may or may not have committed.
    Unknown,
}
