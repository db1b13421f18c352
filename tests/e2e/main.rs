//! The end-to-end test binary `e2e`: real Postgres, Redis and a loopback SMTP
//! sink, one scenario per file. `support` is the harness (`TestEnv`, `wait_for`).
//!
//! Run one scenario: `bash scripts/test.sh --test e2e <scenario>`.

mod support;

mod campaign_retry;
mod campaign_scheduled;
mod delivery_exactly_once;
mod delivery_outcomes;
mod dkim_signing;
mod dns_zone;
mod faults_harness;
mod fencing;
mod foreign_smtp;
mod harness_smoke;
mod health_breakers;
mod hostile_injection;
mod hostile_listeners;
mod hostile_mx;
mod hostile_pause_pool;
mod hostile_pool_starvation;
mod hostile_secrets;
mod hostile_slowloris;
mod hostile_templates;
mod hostile_token_cap;
mod hostile_token_flood;
mod hostile_trickle_import;
mod idle_tenants;
mod ip_actor_killed;
mod ledger_by_key;
mod limits_leaked_reservations;
mod limits_no_carry_over;
mod limits_overflow;
mod limits_thirty_days;
mod migrations;
mod node_restart;
mod node_sigterm;
mod nodes_killed;
mod nodes_membership;
mod nodes_pause;
mod nodes_paused;
mod nodes_redis_flushed;
mod nodes_scaling;
mod pacing_rate;
mod partitions;
mod pause_resume;
mod queue_redis;
mod redis_flushed;
mod retry_limits;
mod rollups;
mod secrets_rotate;
mod shaping_actions;
mod shaping_sites_blocklist;
mod shaping_sites_greylist;
mod shaping_sites_providers;
mod shaping_sites_throttle;
mod slow_mx;
mod suppressed_at_send;
mod tracking;
mod unsubscribe;
mod urgent_lane;
mod warmup;

// The control API scenarios; their client lives in `support/api.rs`.
mod api_auth;
mod api_campaign_lists;
mod api_campaigns;
mod api_complaints;
mod api_domains;
mod api_events;
mod api_health;
mod api_hostile;
mod api_idempotency;
mod api_ips_limits;
mod api_leads;
mod api_leads_csv;
mod api_lifecycle;
mod api_openapi;
mod api_rls;
mod api_stats;
mod api_suppressions;
mod api_tenants_ips;
mod api_tokens;
mod api_warmup_schedules;
