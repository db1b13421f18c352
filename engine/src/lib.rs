//! Penguin Engine core: domain types, pure policy, and the adapters to the outside
//! world. No actors and no HTTP live here; `penguin-actors` drives these pieces.
//!
//! - [`domain`]: job/campaign states, priority bands, input validation.
//! - [`payload`]: the versioned bincode job payload kept in Redis.
//! - [`clock`]: time as a dependency, movable in tests.
//! - [`db`]: Postgres pool, migrations, SQLSTATE → [`db::StoreError`].
//! - [`store`]: every query, grouped by table.
//! - [`queue`]: Redis priority lists with reliable pop and in-flight deadlines.
//! - [`dns`]: MX resolution (hickory, TTL cache), a domain's destinations (at
//!   most 5 MX hosts) and their addresses, refused unless globally routable.
//! - [`provider`]: MX host → mailbox provider and its per-IP shaping limits.
//! - [`allowance`]: an IP's daily allowance spread over its active hours.
//! - [`health`]: bounce, complaint and deferral rates judged against thresholds.
//! - [`warmup`]: the end-of-day warm-up verdict (advance, hold, step back, re-warm).
//! - [`arf`]: feedback-loop reports (RFC 5965) → the complained-about Message-ID;
//!   [`dsn`]: delivery status notifications (RFC 3464) → the bounced Message-ID
//!   and its status; both read MIME with [`mime`].
//! - [`erasure`]: the keyed pseudonym of an erased address.
//! - [`tracking`]: signed unsubscribe, open and click tokens;
//!   [`tracking_html`]: the open pixel and click redirects in a message's HTML.
//! - [`webhook`]: webhook event kinds, URL and address checks, the signature.

pub mod allowance;
pub mod arf;
pub mod assignment;
pub mod clock;
pub mod control;
pub mod db;
pub mod db_tls;
pub mod dkim;
pub mod dns;
pub mod domain;
pub mod domain_check;
pub mod dsn;
pub mod erasure;
pub mod greylist;
pub mod health;
pub mod hex;
pub mod lease;
pub mod membership;
pub mod message;
pub mod mime;
pub mod partition;
pub mod payload;
pub mod provider;
pub mod queue;
pub mod readiness;
pub mod reply_rules;
pub mod retry;
pub mod route;
pub mod secrets;
pub mod sink;
pub mod site;
pub mod smtp;
pub mod store;
pub mod tracking;
pub mod tracking_html;
pub mod warmup;
pub mod webhook;
