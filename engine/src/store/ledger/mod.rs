//! The job ledger: every write of a `send_jobs` status, as one typed transition
//! per kind (DESIGN.md §2). No other module writes `send_jobs.status`; callers
//! (Feeder, Ip and Tenant actors, StatusWriter, Reaper, takeovers, the API's
//! campaign cancel) go through these functions, so the state machine, its
//! fencing and its batching can be read, changed and measured in one place.
//!
//! | kind | from → to | function | caller |
//! |---|---|---|---|
//! | Claim | `pending\|deferred → queued` | [`claim_due`], [`claim_due_urgent`] | Feeder |
//! | Claim | `queued → sending\|suppressed\|cancelled` (a stopped lead; and not running, outside the send window or over the daily cap → `pending`) | [`claim_sending`] | Ip actor |
//! | Outcome | `sending → sent\|deferred\|bounced\|failed\|suppressed\|pending`; a sequence step `sent` creates the lead's next step (`pending`, due after its delay) | [`record_outcomes`] | StatusWriter |
//! | Postpone | `queued → pending` until a later `run_at` | [`postpone_queued`] | Tenant actor |
//! | Release | `sending → pending` for claims never attempted | [`release_sending`] | hand-off, takeover |
//! | Recover | `sending → pending` (stale, one IP's, all on takeover), `queued → pending` (Redis lost) | [`release_stale_sending`], [`release_sending_on_ip`], [`recover_on_takeover`], [`release_queued`] | Reaper, Ip actor, Feeder, fences |
//! | Cancel | `pending\|deferred\|queued → cancelled` | [`cancel_unsent`] | API |
//! | Retry | `failed → pending` (not suppressed), a fresh attempt budget | [`requeue_failed`] | API |
//! | Reroute | `pending` waiting for a later `run_at` → due now | [`reroute_waiting`] | API (new IP pool) |
//! | Late bounce | `sent → bounced` (a DSN after the 250) | [`bounce_sent`] | API (`POST /v1/bounces`) |
//! | Stop | one lead's `pending\|deferred\|queued → cancelled` (its sequence stopped) | [`stop_lead_jobs`] | API (`POST /v1/replies`); a suppression: the trigger of `V16__sequences.sql` |
//!
//! A cancelled campaign never gets a job back: every transition that returns a
//! `sending` job to the backlog (an outcome `deferred` or `pending`, a release,
//! a recovery) writes `cancelled` instead when the job's campaign is cancelled
//! (`pending_unless_cancelled!`). A job whose attempt was under way when the
//! campaign was cancelled thus ends with its real outcome when it left (`sent`,
//! `bounced`, `failed`) and `cancelled` otherwise; the API's cancel sweeps once
//! more after the campaign's attempts drained, for a write that raced its commit.
//!
//! Every transition is a conditional statement (`WHERE status = …`), so a
//! stale or duplicated request changes nothing, and takes a batch of jobs (or
//! all matching jobs of a tenant) in one statement.
//!
//! A transition of jobs named by id finds them by primary key, and its status
//! test is written `(status = '…') IS TRUE` on purpose: no partial index
//! predicate matches that form, so the planner cannot pick `send_jobs_in_flight`
//! (or `send_jobs_campaign_status`) instead. Its statistics see few `queued`
//! and `sending` rows (most jobs are pending or final when `ANALYZE` runs), so
//! with a plain `status = 'sending'` the cached plans read every in-flight job
//! of the tenant for each batch: 1,088 rows read and joined to `leads` for an
//! 8-job claim (`auto_explain` during `penguin bench`), and a bitmap scan of the
//! tenant's `sending` jobs per outcome. BENCHMARKS.md, "Where the time goes".
//!
//! Every write of a node carries the token of the tenant's partition it holds
//! (its fencing token, [`crate::store::fences`]). Claims, releases, postpones
//! and recoveries first lock the partition's fence row `FOR SHARE` with that token
//! ([`crate::store::fences::hold`]) and change nothing when it moved on; an
//! outcome must match the epoch its job was claimed under (`fence`) and the
//! claim id that claim stamped (`claim`, [`ClaimId`]): the epoch guards
//! against another node, the claim id against a reclaim on this node (the
//! Reaper returned the job past `queue.sending_timeout_ms`, it was claimed
//! again, then the first attempt ended). The recovery on takeover runs inside
//! the takeover's own transaction, which raises the epoch; a cancel runs in the
//! API's transaction under the campaign row lock, which every claim holds
//! `FOR SHARE`.

/// SQL: the status a `sending` job of `send_jobs j` returns to the backlog
/// with: `pending`, or `cancelled` when its campaign was cancelled (its attempt
/// never left, or left a 4xx: nothing more will be tried).
macro_rules! pending_unless_cancelled {
    () => {
        "CASE WHEN EXISTS (SELECT 1 FROM campaigns c
                           WHERE c.tenant_id = j.tenant_id AND c.id = j.campaign_id
                             AND c.status = 'cancelled')
              THEN 'cancelled' ELSE 'pending' END"
    };
}

mod cancel;
mod claim;
mod gate;
mod late_bounce;
mod outcome;
mod recover;
mod reroute;
mod retry;
mod stop;

pub use cancel::cancel_unsent;
pub use claim::{
    ClaimId, ClaimedJob, SendingClaim, UsageMark, claim_due, claim_due_urgent, claim_sending,
};
pub use late_bounce::{BouncedLate, bounce_sent};
pub use outcome::{Applied, Outcome, record_outcomes};
pub use recover::{
    postpone_queued, recover_on_takeover, release_queued, release_sending, release_sending_on_ip,
    release_stale_sending,
};
pub use reroute::reroute_waiting;
pub use retry::requeue_failed;
pub use stop::stop_lead_jobs;
