//! Every Postgres query of the engine, grouped by table. Functions take a pool or
//! a client and return [`crate::db::StoreError`]; callers never write SQL.
//!
//! - [`tenants`], [`ips`], [`campaigns`], [`leads`]: the control plane (API).
//! - [`fences`]: each partition's epoch (fencing token), raised on every takeover.
//! - [`due`]: which tenants of a node's partitions have work, in one query.
//! - [`backlog`]: the node's gauges: waiting jobs of its partitions, its IPs'
//!   sends today.
//! - [`ledger`]: the job ledger, the only writer of `send_jobs.status`: claims,
//!   outcomes, postpones, releases, recoveries and cancels, each a typed,
//!   fenced, batched transition.
//! - [`jobs`]: reads of the job states (counts) and campaign completion.
//! - [`events`]: delivery events and daily rollups, in batches; [`events_read`]
//!   pages them back for the API.
//! - [`usage`]: per-IP reservations per local hour, and the IP-local calendar.
//! - [`dkim_keys`]: re-sealing every DKIM key under the current master key
//!   (`penguin secrets rotate`).
//! - [`domain_checks`]: recording verifications of sending domains, the daily
//!   re-check's claims, pruning of rotated-out keys.
//! - [`domains`]: tenants' sending domains, their verification and DKIM keys
//!   (sealed), and which keys sign a From.
//! - [`suppressions`]: a tenant's suppression list (API and hard bounces):
//!   addresses and `@domain`s, for good or until `expires_at`;
//!   [`global_suppressions`]: the operator's list, for every tenant. Both are
//!   checked through the SQL function `penguin_suppression`.
//! - [`warmup`]: end-of-day warm-up verdicts (once per IP and day) and the end of
//!   automatic pauses.
//! - [`schedules`]: warm-up schedules (built-in and added by the operator).
//! - [`complaints`]: feedback-loop complaints: the job, the event, the rollup,
//!   the suppression; [`bounces`]: bounces reported after delivery (DSN): the
//!   job `sent → bounced`, the event, the rollups, the suppression.
//! - [`engagement`]: opens and clicks from the public tracking links.
//! - [`shaping_actions`]: suspensions and slow-downs in force on an IP's shaping
//!   units, with their rule (kept across Ip actor restarts, shown by the API).
//! - [`waiting`]: what a campaign's jobs wait for (send window, daily cap, IP
//!   pauses, allowances), for the API.
//! - [`replies`]: replies posted through the API: the lead's sequence stops,
//!   one `replied` (or `auto_replied`) event.
//! - [`step_stats`]: the per-step counts of a sequence campaign, for the API.
//! - [`webhooks`]: tenants' webhooks, their deliveries and attempts (API);
//!   [`webhook_outbox`]: the dispatcher's due deliveries, claims and results.
//! - [`retention`]: one retention round (issue 23), under a cluster-wide
//!   advisory lock: event partitions ahead and past `events_days`
//!   ([`partitions`]), finished campaigns' jobs and leads in bounded batches.
//! - [`audit`]: the audit log (admin changes, erasures), written and paged.
//! - [`erasure`]: erasing an address from one tenant (leads, jobs, event text),
//!   keeping it suppressed.
//! - [`storage`]: rows and bytes per table and partition, the oldest event day.
//! - [`stats`]: read-only statistics for the API: a campaign's recent activity
//!   and engagement, per-day rows per campaign, IP and tenant.

pub mod audit;
pub mod backlog;
pub mod bounces;
pub mod campaign_ips;
pub mod campaign_lists;
pub mod campaigns;
pub mod complaints;
pub mod dkim_keys;
pub mod domain_checks;
pub mod domains;
pub mod due;
pub mod engagement;
pub mod erasure;
pub mod events;
pub mod events_read;
pub mod fences;
pub mod global_suppressions;
pub mod ip_retire;
pub mod ip_state;
pub mod ips;
pub mod jobs;
pub mod leads;
pub mod ledger;
pub mod partitions;
pub mod replies;
pub mod retention;
pub mod routing;
pub mod scheduled;
pub mod schedules;
pub mod sequences;
pub mod shaping_actions;
pub mod stats;
pub mod step_stats;
pub mod storage;
pub mod suppressions;
pub mod tenants;
pub mod usage;
pub mod waiting;
pub mod warmup;
pub mod webhook_outbox;
pub mod webhooks;
