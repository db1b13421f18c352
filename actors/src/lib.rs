//! Penguin Engine's supervision tree (ractor), one actor per file.
//!
//! ```text
//! EngineSupervisor            supervisor.rs   starts/restarts everything below, owns shutdown
//! ├── Cluster                 cluster.rs      membership, partition shares and leases, takeovers (takeover.rs), hand-offs (handoff.rs), control notifications (control_channel.rs)
//! ├── Feeder                  feeder.rs       tenants with due work per partition; due jobs Postgres → Redis lists; the urgent lane
//! ├── Reaper                  reaper.rs       expired in-flight, stale `sending`, Redis loss, completion
//! ├── TenantSupervisor        tenant_supervisor.rs
//! │   └── Tenant(t)           tenant.rs       while t has work: pops its lists by priority, routes jobs to IPs with credit (tenant_ports.rs: Redis, pools, Postgres)
//! ├── IpSupervisor            ip_supervisor.rs
//! │   └── Ip(a)               ip.rs           claims `queued → sending` (ip_claim.rs), feeds its delivery workers (ip_ports.rs: Postgres, Redis)
//! │       └── workers         delivery.rs     SMTP connections bound to the IP, report outcomes
//! ├── WarmupSupervisor        warmup_supervisor.rs
//! │   └── Warmup(s)           warmup.rs       per schedule: day-end verdicts, end of health pauses
//! ├── Analytics               analytics.rs    delivery events and daily rollups, batched
//! ├── Webhooks                webhooks.rs     the webhook outbox of owned partitions: signed POSTs (webhook_send.rs), retries
//! ├── Gauges                  gauges.rs       every queue.gauges_refresh_ms: backlog, per-IP and pool gauges (metrics_node.rs)
//! ├── Retention               retention.rs    every retention.interval_ms, one node at a time: event partitions, finished campaigns' jobs and leads
//! └── StatusWriter            status_writer.rs job outcomes through the ledger (engine::store::ledger), one statement per batch
//! ```
//!
//! Shared, read-mostly state lives in [`context::EngineContext`]; actors find each
//! other through [`directory::Directory`], which supervisors keep current across
//! restarts. Hot paths only `cast`; the producers bound their own output (credits per
//! IP, the Redis window per tenant) so no mailbox grows without limit.

pub mod allowance;
pub mod analytics;
pub mod breaker;
pub mod campaigns;
pub mod children;
pub mod cluster;
pub mod context;
mod control_channel;
pub mod db_timing;
pub mod delivery;
pub mod directory;
#[cfg(test)]
mod fakes;
pub mod feeder;
pub mod gauges;
pub mod greylist;
pub mod handoff;
pub mod ip;
mod ip_claim;
pub mod ip_ports;
pub mod ip_supervisor;
pub mod metrics;
pub mod metrics_node;
pub mod outcome;
pub mod pacer;
pub mod priority_queue;
pub mod ready;
pub mod reaper;
pub mod render;
pub mod retention;
pub mod shaping;
pub mod shaping_log;
pub mod shaping_rate;
pub mod signers;
pub mod status_writer;
pub mod supervisor;
mod takeover;
pub mod tenant;
pub mod tenant_ports;
pub mod tenant_supervisor;
pub mod warmup;
pub mod warmup_supervisor;
mod webhook_send;
pub mod webhooks;

pub use supervisor::{EngineDeps, EngineHandle, start_engine};
