//! The SMTP client side of delivery: one session per pooled connection and the
//! typed outcome of every attempt.
//!
//! - [`outcome`]: [`DeliveryOutcome`] and [`Stage`], pure reply classification
//!   (2xx sent, 4xx/timeouts/failures deferred, 5xx bounced, RFC 3463 codes).
//! - [`mod@classify`]: [`BounceClass`] of a non-sent outcome (invalid recipient,
//!   mailbox full, policy block, …) and whether it suppresses the address.
//! - [`transport`]: [`SmtpConnection`], a session bound to a source IP with a
//!   timeout per stage, STARTTLS ([`TlsMode`]) and PIPELINING when offered.
//! - [`tls`]: the rustls client (any certificate accepted, opportunistic TLS),
//!   [`MaybeTls`] and a server configuration helper for the sink.
//! - `connect`: the TCP connect to vetted addresses, and the waits bounded by
//!   an attempt deadline.
//! - [`wire`]: dot-stuffing, envelope checks and the buffered reply reader.
//!
//! Called by the IP actors; the loopback test server lives in [`crate::sink`].

pub mod classify;
mod connect;
pub mod outcome;
pub mod tls;
pub mod transport;
pub mod wire;

pub use classify::{BounceClass, classify, should_suppress};
pub use outcome::{DeliveryOutcome, Stage};
pub use tls::MaybeTls;
pub use transport::{SmtpConnection, TlsMode};
