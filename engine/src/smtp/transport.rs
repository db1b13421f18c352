//! One SMTP client session bound to a source IP: connect, greeting, EHLO,
//! STARTTLS when offered (then EHLO again), then any number of MAIL/RCPT/DATA
//! transactions, then QUIT.
//!
//! Called by the IP actors' connection pools (one [`SmtpConnection`] per pooled
//! connection). mail-send only opens the TCP connection (bound to the source IP);
//! commands and replies go through our own buffered `ReplyReader`, which keeps
//! bytes past one reply for the next, so pipelined replies are never lost.
//!
//! Guarantees:
//! - every stage runs under its own timeout from [`SmtpTimeouts`] (STARTTLS and
//!   the TLS handshake under `tls_ms`); a failure comes back as a
//!   [`DeliveryOutcome`] naming the [`Stage`], never as a panic or a hang;
//! - an attempt deadline ([`SmtpConnection::set_deadline`], and the `deadline`
//!   of [`SmtpConnection::connect_to`]) bounds the sum of the stages: no stage
//!   waits past it, and one that would is deferred as "attempt deadline passed
//!   at <stage>" (the session then is unusable);
//! - connections go only to the addresses the caller resolved and vetted
//!   ([`SmtpConnection::connect_to`]; `crate::dns::addresses`): this module
//!   never asks the OS resolver;
//! - STARTTLS ([`TlsMode`], config `[delivery] tls`): `Opportunistic` upgrades
//!   when the server offers it; a server that refuses the command (e.g. 454)
//!   keeps the plain session; a failed handshake reconnects once in plain.
//!   `Required` never sends in plain: no STARTTLS, a refusal or a failed
//!   handshake is `Deferred` at [`Stage::Ehlo`] with a reply naming TLS.
//!   `Disabled` never upgrades. Any certificate is accepted (see
//!   [`super::tls`]); bytes buffered after the 220 to STARTTLS (plain-text
//!   injection) fail the upgrade;
//! - PIPELINING (when offered after the last EHLO): MAIL FROM and RCPT TO go in
//!   one write and both replies are read; each reply is still classified at its
//!   own stage, DATA waits for them;
//! - after a refused MAIL FROM, RCPT TO or DATA the transaction is reset (RSET) so
//!   the next message can use the same connection;
//! - after any I/O error, timeout, unparseable reply or 421 the connection is
//!   marked unusable ([`SmtpConnection::is_usable`]) and must be dropped: a late
//!   reply could otherwise be read as the answer to the next command;
//! - addresses with CR, LF, `<`, `>`, whitespace or control characters are refused
//!   locally (5.1.3 / 5.1.7) and never reach the wire, so no command injection;
//! - a UTF-8 (non-ASCII) sender or recipient goes only to a server that offers
//!   SMTPUTF8, with `SMTPUTF8` (and `BODY=8BITMIME` when offered) on MAIL FROM
//!   (RFC 6531); otherwise it is bounced locally with 553 5.6.7 and never
//!   reaches the wire. Messages themselves are 7-bit (see `crate::message`), so
//!   ASCII envelopes need no parameter.
//!
//! The session is generic over the stream (`AsyncRead + AsyncWrite`) so tests can
//! drive it over an in-memory pipe ([`SmtpConnection::handshake`]); the default,
//! [`MaybeTls`], is what [`SmtpConnection::connect`] opens. The connect-side
//! helpers (opening the TCP stream, bounding waits) are in `super::connect`.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use penguin_config::{DeliveryConfig, SmtpTimeouts};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::connect::{Limit, literal_addresses, open_tcp};
use super::outcome::{DeliveryOutcome, Stage};
pub use super::tls::MaybeTls;
use super::tls::{connector, server_name};
use super::wire::{Capabilities, ReadError, ReplyReader, dot_stuff, is_safe_address, is_safe_word};
use crate::route::Destination;

/// When [`SmtpConnection::connect_with_tls`] upgrades with STARTTLS; mirrors the
/// config's `[delivery] tls`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Upgrade when offered; plain otherwise (or after a failed handshake).
    #[default]
    Opportunistic,
    /// Never send in plain: defer instead.
    Required,
    /// Never upgrade.
    Disabled,
}

impl TlsMode {
    /// The mode `[delivery] tls` asks for.
    pub fn from_config(delivery: &DeliveryConfig) -> Self {
        if delivery.tls.required() {
            TlsMode::Required
        } else if delivery.tls.enabled() {
            TlsMode::Opportunistic
        } else {
            TlsMode::Disabled
        }
    }
}

/// One open SMTP session; see the module doc for its guarantees.
pub struct SmtpConnection<S: AsyncRead + AsyncWrite = MaybeTls> {
    stream: S,
    reader: ReplyReader,
    timeouts: SmtpTimeouts,
    capabilities: Capabilities,
    usable: bool,
    messages_sent: usize,
    /// The current attempt's deadline: no stage waits past it.
    deadline: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite> std::fmt::Debug for SmtpConnection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConnection")
            .field("usable", &self.usable)
            .field("messages_sent", &self.messages_sent)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

/// A STARTTLS attempt that did not end in a TLS session: the outcome, and the
/// plain session when it is still in sync (the server refused the command).
struct StartTlsFailure {
    outcome: DeliveryOutcome,
    plain: Option<SmtpConnection<MaybeTls>>,
}

impl SmtpConnection<MaybeTls> {
    /// Opens a TCP connection from `source` to `dest`, reads the greeting, says
    /// EHLO `helo` and upgrades with STARTTLS when offered
    /// ([`TlsMode::Opportunistic`]). `dest.host` must be an IP address literal
    /// (resolve names with `crate::dns`); see [`SmtpConnection::connect_to`].
    pub async fn connect(
        source: IpAddr,
        dest: &Destination,
        helo: &str,
        timeouts: &SmtpTimeouts,
    ) -> Result<Self, DeliveryOutcome> {
        Self::connect_with_tls(source, dest, helo, timeouts, TlsMode::Opportunistic).await
    }

    /// [`SmtpConnection::connect`] with an explicit STARTTLS policy; see the
    /// module doc.
    pub async fn connect_with_tls(
        source: IpAddr,
        dest: &Destination,
        helo: &str,
        timeouts: &SmtpTimeouts,
        tls: TlsMode,
    ) -> Result<Self, DeliveryOutcome> {
        let addrs = literal_addresses(dest)?;
        Self::connect_to(source, dest, &addrs, helo, timeouts, tls, None).await
    }

    /// Connects from `source` to the first of `addrs` (on `dest.port`) of the
    /// source's family that answers — the addresses of `dest.host` as the
    /// caller resolved and vetted them — then greeting, EHLO and STARTTLS per
    /// `tls`. Every wait, the connect included, ends by `deadline` when given;
    /// the session keeps it for its transactions until
    /// [`SmtpConnection::set_deadline`] changes it.
    pub async fn connect_to(
        source: IpAddr,
        dest: &Destination,
        addrs: &[IpAddr],
        helo: &str,
        timeouts: &SmtpTimeouts,
        tls: TlsMode,
        deadline: Option<Instant>,
    ) -> Result<Self, DeliveryOutcome> {
        let tcp = open_tcp(source, dest, addrs, timeouts, deadline).await?;
        let conn = Self::handshake_until(MaybeTls::Plain(tcp), helo, timeouts, deadline).await?;
        if tls == TlsMode::Disabled {
            return Ok(conn);
        }
        if !conn.capabilities.starttls {
            if tls == TlsMode::Required {
                conn.quit().await;
                return Err(tls_deferred(format!(
                    "TLS required but not offered by {}",
                    dest.host
                )));
            }
            return Ok(conn);
        }
        match conn.start_tls(&dest.host, helo).await {
            Ok(conn) => Ok(conn),
            Err(StartTlsFailure { outcome, plain }) => {
                if tls == TlsMode::Required {
                    if let Some(plain) = plain {
                        plain.quit().await;
                    }
                    return Err(outcome);
                }
                if let Some(plain) = plain {
                    return Ok(plain);
                }
                // Opportunistic and the handshake failed: once more, in plain.
                tracing::debug!(%dest, reply = outcome.reply(), "STARTTLS failed; reconnecting without TLS");
                let tcp = open_tcp(source, dest, addrs, timeouts, deadline).await?;
                Self::handshake_until(MaybeTls::Plain(tcp), helo, timeouts, deadline).await
            }
        }
    }

    /// True when the session runs over TLS (after STARTTLS).
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// STARTTLS, the TLS handshake (SNI `host`), then EHLO again.
    async fn start_tls(mut self, host: &str, helo: &str) -> Result<Self, StartTlsFailure> {
        let broken = |outcome| StartTlsFailure {
            outcome,
            plain: None,
        };
        let reply = match self
            .exchange(Stage::Ehlo, Some(b"STARTTLS\r\n"), self.timeouts.tls_ms)
            .await
        {
            Ok(reply) => reply,
            Err(outcome) => {
                return Err(broken(tls_deferred(format!(
                    "STARTTLS with {host} failed: {}",
                    outcome.reply()
                ))));
            }
        };
        if reply.code != 220 {
            let outcome = tls_deferred(format!("STARTTLS refused by {host}: {}", reply.line));
            if reply.code == 421 {
                return Err(broken(outcome));
            }
            return Err(StartTlsFailure {
                outcome,
                plain: Some(self),
            });
        }
        if !self.reader.is_empty() {
            return Err(broken(tls_deferred(format!(
                "STARTTLS with {host} failed: data after the 220 reply"
            ))));
        }
        let name = server_name(host).map_err(|err| broken(tls_deferred(err)))?;
        let MaybeTls::Plain(tcp) = self.stream else {
            return Err(broken(tls_deferred("STARTTLS on a TLS session".to_owned())));
        };
        let limit = Limit::new(self.timeouts.tls_ms, self.deadline);
        let tls = match tokio::time::timeout(limit.duration(), connector().connect(name, tcp)).await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                return Err(broken(tls_deferred(format!(
                    "TLS handshake with {host} failed: {err}"
                ))));
            }
            Err(_) => {
                return Err(broken(tls_deferred(format!(
                    "TLS handshake with {host} timed out"
                ))));
            }
        };
        let mut conn = SmtpConnection {
            stream: MaybeTls::Tls(Box::new(tls)),
            reader: ReplyReader::default(),
            timeouts: self.timeouts,
            capabilities: Capabilities::default(),
            usable: true,
            messages_sent: 0,
            deadline: self.deadline,
        };
        match conn.ehlo(helo).await {
            Ok(()) => Ok(conn),
            Err(outcome) => Err(broken(tls_deferred(format!(
                "EHLO over TLS with {host} failed: {}",
                outcome.reply()
            )))),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpConnection<S> {
    /// Starts a session on an already open stream: reads the greeting, then EHLO
    /// (falling back to HELO when the server does not know EHLO). No STARTTLS.
    pub async fn handshake(
        stream: S,
        helo: &str,
        timeouts: &SmtpTimeouts,
    ) -> Result<Self, DeliveryOutcome> {
        Self::handshake_until(stream, helo, timeouts, None).await
    }

    /// [`SmtpConnection::handshake`] with every wait ending by `deadline`, which
    /// the session keeps (see [`SmtpConnection::set_deadline`]).
    pub async fn handshake_until(
        stream: S,
        helo: &str,
        timeouts: &SmtpTimeouts,
        deadline: Option<Instant>,
    ) -> Result<Self, DeliveryOutcome> {
        let mut conn = SmtpConnection {
            stream,
            reader: ReplyReader::default(),
            timeouts: timeouts.clone(),
            capabilities: Capabilities::default(),
            usable: true,
            messages_sent: 0,
            deadline,
        };
        if !is_safe_word(helo) {
            return Err(local_refusal(Stage::Ehlo, "5.5.2", "invalid HELO name"));
        }

        let greeting = conn
            .exchange(Stage::Greeting, None, conn.timeouts.greeting_ms)
            .await?;
        if !(200..300).contains(&greeting.code) {
            return Err(refusal(Stage::Greeting, &greeting));
        }
        conn.ehlo(helo).await?;
        Ok(conn)
    }

    /// EHLO (HELO when the server does not know EHLO); records the capabilities.
    async fn ehlo(&mut self, helo: &str) -> Result<(), DeliveryOutcome> {
        let reply = self
            .exchange(
                Stage::Ehlo,
                Some(format!("EHLO {helo}\r\n").as_bytes()),
                self.timeouts.ehlo_ms,
            )
            .await?;
        if (200..300).contains(&reply.code) {
            self.capabilities = Capabilities::from_ehlo(&reply.message);
            return Ok(());
        }
        if !matches!(reply.code, 500 | 502) {
            return Err(refusal(Stage::Ehlo, &reply));
        }
        // 500/502: an old server without ESMTP. Everything we send is plain
        // SMTP, so HELO is enough.
        let reply = self
            .exchange(
                Stage::Ehlo,
                Some(format!("HELO {helo}\r\n").as_bytes()),
                self.timeouts.ehlo_ms,
            )
            .await?;
        if (200..300).contains(&reply.code) {
            self.capabilities = Capabilities::default();
            Ok(())
        } else {
            Err(refusal(Stage::Ehlo, &reply))
        }
    }

    /// Sets (or clears) the deadline of the attempt the session now serves: no
    /// stage of it waits past `deadline`, whatever its own timeout.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Whether the server offered PIPELINING in its last EHLO reply.
    pub fn pipelining(&self) -> bool {
        self.capabilities.pipelining
    }

    /// Sends one message to one recipient over this session. Never panics; every
    /// failure is an outcome. A refused MAIL/RCPT/DATA is followed by RSET.
    pub async fn send(&mut self, mail_from: &str, rcpt: &str, body: &[u8]) -> DeliveryOutcome {
        if !self.usable {
            return DeliveryOutcome::connection_failed(
                Stage::MailFrom,
                "connection is no longer usable",
            );
        }
        if !is_safe_address(mail_from) {
            return local_refusal(Stage::MailFrom, "5.1.7", "invalid sender address");
        }
        if !is_safe_address(rcpt) || rcpt.is_empty() {
            return local_refusal(Stage::RcptTo, "5.1.3", "invalid recipient address");
        }
        // RFC 6531: a UTF-8 address needs SMTPUTF8, and only a server offering
        // it may receive one. The To header then carries it in UTF-8 as well.
        let international = !(mail_from.is_ascii() && rcpt.is_ascii());
        let parameters = match (international, self.capabilities) {
            (false, _) => "",
            (true, caps) if !caps.smtputf8 => {
                let stage = if mail_from.is_ascii() {
                    Stage::RcptTo
                } else {
                    Stage::MailFrom
                };
                return DeliveryOutcome::Bounced {
                    code: 553,
                    enhanced: Some("5.6.7".to_owned()),
                    reply: "553 5.6.7 non-ASCII address and the server does not offer SMTPUTF8 \
                            (refused locally, not sent)"
                        .to_owned(),
                    stage,
                };
            }
            (true, caps) if caps.eight_bit_mime => " SMTPUTF8 BODY=8BITMIME",
            (true, _) => " SMTPUTF8",
        };

        let mail_command = format!("MAIL FROM:<{mail_from}>{parameters}\r\n");
        let rcpt_command = format!("RCPT TO:<{rcpt}>\r\n");
        if self.capabilities.pipelining {
            if let Some(outcome) = self.pipelined_envelope(&mail_command, &rcpt_command).await {
                return outcome;
            }
        } else {
            let steps = [
                (Stage::MailFrom, mail_command, self.timeouts.mail_from_ms),
                (Stage::RcptTo, rcpt_command, self.timeouts.rcpt_to_ms),
            ];
            for (stage, command, timeout_ms) in steps {
                match self
                    .exchange(stage, Some(command.as_bytes()), timeout_ms)
                    .await
                {
                    Ok(reply) if (200..300).contains(&reply.code) => {}
                    Ok(reply) => return self.refused(stage, &reply).await,
                    Err(outcome) => return outcome,
                }
            }
        }

        match self
            .exchange(Stage::Data, Some(b"DATA\r\n"), self.timeouts.data_ms)
            .await
        {
            Ok(reply) if reply.code == 354 => {}
            Ok(reply) => return self.refused(Stage::Data, &reply).await,
            Err(outcome) => return outcome,
        }

        let payload = dot_stuff(body);
        if let Err(outcome) = self
            .write(Stage::Data, &payload, self.timeouts.data_ms)
            .await
        {
            return outcome;
        }

        let reply = match self
            .exchange(Stage::DataEnd, None, self.timeouts.data_end_ms)
            .await
        {
            Ok(reply) => reply,
            Err(outcome) => return outcome,
        };
        let outcome = DeliveryOutcome::from_reply(Stage::DataEnd, &reply.line);
        if outcome.closes_connection() {
            self.usable = false;
        }
        if outcome.is_sent() {
            self.messages_sent += 1;
        }
        outcome
    }

    /// MAIL FROM and RCPT TO in one write, then both replies (RFC 2920). `None`
    /// when both were accepted; otherwise the outcome at the right stage, after
    /// RSET.
    async fn pipelined_envelope(
        &mut self,
        mail_command: &str,
        rcpt_command: &str,
    ) -> Option<DeliveryOutcome> {
        let batch = [mail_command.as_bytes(), rcpt_command.as_bytes()].concat();
        if let Err(outcome) = self
            .write(Stage::MailFrom, &batch, self.timeouts.mail_from_ms)
            .await
        {
            return Some(outcome);
        }
        let mail = match self
            .exchange(Stage::MailFrom, None, self.timeouts.mail_from_ms)
            .await
        {
            Ok(reply) => reply,
            Err(outcome) => return Some(outcome),
        };
        if !(200..300).contains(&mail.code) {
            let outcome = refusal(Stage::MailFrom, &mail);
            if outcome.closes_connection() {
                self.usable = false;
                return Some(outcome);
            }
            // The RCPT reply (most likely 503) is still owed: read it first.
            match self
                .exchange(Stage::RcptTo, None, self.timeouts.rcpt_to_ms)
                .await
            {
                Ok(rcpt) if rcpt.code == 421 => {
                    self.usable = false;
                    return Some(outcome);
                }
                Ok(_) => {}
                Err(_) => return Some(outcome),
            }
            return Some(self.refused(Stage::MailFrom, &mail).await);
        }
        let rcpt = match self
            .exchange(Stage::RcptTo, None, self.timeouts.rcpt_to_ms)
            .await
        {
            Ok(reply) => reply,
            Err(outcome) => return Some(outcome),
        };
        if (200..300).contains(&rcpt.code) {
            None
        } else {
            Some(self.refused(Stage::RcptTo, &rcpt).await)
        }
    }

    /// False after any I/O error, timeout, unparseable reply or 421: drop it.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// Messages the server accepted (2xx after the data) on this session.
    pub fn messages_sent(&self) -> usize {
        self.messages_sent
    }

    /// Says QUIT (when the session is still in sync) and closes the stream.
    /// Best effort: a server that does not answer costs at most one
    /// `mail_from_ms` timeout.
    pub async fn quit(mut self) {
        // QUIT belongs to no attempt: an attempt's passed deadline must not cut it.
        self.deadline = None;
        if self.usable {
            let _ = self
                .exchange(
                    Stage::MailFrom,
                    Some(b"QUIT\r\n"),
                    self.timeouts.mail_from_ms,
                )
                .await;
        }
        let _ = tokio::time::timeout(ms(self.timeouts.mail_from_ms), self.stream.shutdown()).await;
    }

    /// A refused MAIL/RCPT/DATA: classify, then RSET so the session stays usable
    /// (unless the server is closing it anyway).
    async fn refused(&mut self, stage: Stage, reply: &Reply) -> DeliveryOutcome {
        let outcome = refusal(stage, reply);
        if outcome.closes_connection() {
            self.usable = false;
            return outcome;
        }
        match self
            .exchange(
                Stage::MailFrom,
                Some(b"RSET\r\n"),
                self.timeouts.mail_from_ms,
            )
            .await
        {
            Ok(rset) if (200..300).contains(&rset.code) => {}
            // The transaction state is unknown: do not reuse the session.
            _ => self.usable = false,
        }
        outcome
    }

    /// Writes `bytes` and flushes within `timeout_ms`.
    async fn write(
        &mut self,
        stage: Stage,
        bytes: &[u8],
        timeout_ms: u64,
    ) -> Result<(), DeliveryOutcome> {
        let limit = Limit::new(timeout_ms, self.deadline);
        let stream = &mut self.stream;
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout(limit.duration(), write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(self.failed(stage, Failure::Io(err))),
            Err(_) => Err(self.failed(stage, limit.timed_out())),
        }
    }

    /// Sends `command` (if any) and reads one reply, all within `timeout_ms`.
    async fn exchange(
        &mut self,
        stage: Stage,
        command: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<Reply, DeliveryOutcome> {
        let limit = Limit::new(timeout_ms, self.deadline);
        let stream = &mut self.stream;
        let reader = &mut self.reader;
        let io = async {
            if let Some(command) = command {
                stream.write_all(command).await.map_err(Failure::Io)?;
                stream.flush().await.map_err(Failure::Io)?;
            }
            reader.read(stream).await.map_err(Failure::Read)
        };
        match tokio::time::timeout(limit.duration(), io).await {
            Ok(Ok(response)) => Ok(Reply::new(response.code, response.esc, response.message)),
            Ok(Err(failure)) => Err(self.failed(stage, failure)),
            Err(_) => Err(self.failed(stage, limit.timed_out())),
        }
    }

    /// Maps an I/O failure to an outcome; the session is out of sync after any,
    /// so it becomes unusable.
    fn failed(&mut self, stage: Stage, failure: Failure) -> DeliveryOutcome {
        self.usable = false;
        match failure {
            Failure::Timeout => DeliveryOutcome::timeout(stage),
            Failure::Deadline => DeliveryOutcome::deadline_passed(stage),
            Failure::Io(io) | Failure::Read(ReadError::Io(io)) => {
                DeliveryOutcome::connection_failed(stage, io)
            }
            Failure::Read(ReadError::Closed) => {
                DeliveryOutcome::connection_failed(stage, "connection closed")
            }
            Failure::Read(ReadError::Unparseable) => {
                DeliveryOutcome::connection_failed(stage, "unparseable reply")
            }
        }
    }
}

/// Why a command or reply did not go through.
pub(super) enum Failure {
    Timeout,
    /// The attempt deadline, not the stage's own timeout, ran out.
    Deadline,
    Io(io::Error),
    Read(ReadError),
}

/// A reply rebuilt as one line, e.g. `550 5.1.1 user unknown`, plus its text.
struct Reply {
    code: u16,
    line: String,
    /// The text after the codes (lines joined by LF), for EHLO keywords.
    message: String,
}

impl Reply {
    fn new(code: u16, esc: [u8; 3], message: String) -> Self {
        let line = if esc == [0, 0, 0] {
            format!("{code} {message}")
        } else {
            format!("{code} {}.{}.{} {message}", esc[0], esc[1], esc[2])
        };
        Reply {
            code,
            line,
            message,
        }
    }
}

/// A STARTTLS failure: deferred at EHLO (the session setup), the reply names TLS.
fn tls_deferred(reason: String) -> DeliveryOutcome {
    DeliveryOutcome::Deferred {
        code: None,
        enhanced: None,
        reply: reason.replace(['\r', '\n'], " "),
        stage: Stage::Ehlo,
    }
}

/// Classifies a reply that did not let the session go on. A 2xx can land here
/// (a 250 where DATA wants 354): that is a confused server, so Deferred, never
/// Sent.
fn refusal(stage: Stage, reply: &Reply) -> DeliveryOutcome {
    match DeliveryOutcome::from_reply(stage, &reply.line) {
        DeliveryOutcome::Sent { reply: line } => DeliveryOutcome::Deferred {
            code: Some(reply.code),
            enhanced: None,
            reply: format!("unexpected reply at {stage}: {line}"),
            stage,
        },
        outcome => outcome,
    }
}

/// A refusal we make ourselves without talking to the server.
fn local_refusal(stage: Stage, enhanced: &str, why: &str) -> DeliveryOutcome {
    DeliveryOutcome::Bounced {
        code: 501,
        enhanced: Some(enhanced.to_owned()),
        reply: format!("501 {enhanced} {why} (refused locally, not sent)"),
        stage,
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
