//! Every Postgres query of the engine, grouped by table. Functions take a pool or
//! a client and return [`crate::db::StoreError`]; callers never write SQL.
//!
//! - [`tenants`], [`ips`], [`campaigns`], [`leads`]: the control plane (API).
//! - [`jobs`]: the send-job state machine (feeder claims, sending claims, batched
//!   conditional transitions, reaper returns).
//! - [`events`]: delivery events and daily rollups, in batches.

pub mod campaigns;
pub mod events;
pub mod ips;
pub mod jobs;
pub mod leads;
pub mod routing;
pub mod tenants;
