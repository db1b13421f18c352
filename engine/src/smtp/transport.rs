//! One SMTP client session bound to a source IP: connect, greeting, EHLO, then any
//! number of MAIL/RCPT/DATA transactions, then QUIT.
//!
//! Called by the IP actors' connection pools (one [`SmtpConnection`] per pooled
//! connection). Built on mail-send's [`SmtpClient`], one command at a time (no
//! pipelining, so its one-reply-per-read parser is exact).
//!
//! Guarantees:
//! - every stage runs under its own timeout from [`SmtpTimeouts`]; a failure comes
//!   back as a [`DeliveryOutcome`] naming the [`Stage`], never as a panic or a hang;
//! - after a refused MAIL FROM, RCPT TO or DATA the transaction is reset (RSET) so
//!   the next message can use the same connection;
//! - after any I/O error, timeout, unparseable reply or 421 the connection is
//!   marked unusable ([`SmtpConnection::is_usable`]) and must be dropped: a late
//!   reply could otherwise be read as the answer to the next command;
//! - addresses with CR, LF, `<`, `>`, whitespace or control characters are refused
//!   locally (5.1.3 / 5.1.7) and never reach the wire, so no command injection.
//!
//! Plain TCP only for now: STARTTLS (when the server offers it) comes in a later
//! issue. The session is generic over the stream (`AsyncRead + AsyncWrite`) so
//! tests can drive it over an in-memory pipe; [`SmtpConnection::connect`] is the
//! TCP entry point.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_send::SmtpClient;
use penguin_config::SmtpTimeouts;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::outcome::{DeliveryOutcome, Stage};
use super::wire::{dot_stuff, is_safe_address, is_safe_word};
use crate::route::Destination;

/// One open SMTP session; see the module doc for its guarantees.
pub struct SmtpConnection<S: AsyncRead + AsyncWrite = TcpStream> {
    client: SmtpClient<S>,
    timeouts: SmtpTimeouts,
    usable: bool,
    messages_sent: usize,
}

impl<S: AsyncRead + AsyncWrite> std::fmt::Debug for SmtpConnection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConnection")
            .field("usable", &self.usable)
            .field("messages_sent", &self.messages_sent)
            .finish_non_exhaustive()
    }
}

impl SmtpConnection<TcpStream> {
    /// Opens a TCP connection from `source` to `dest`, reads the greeting and says
    /// EHLO `helo`. Host names are looked up within the connect timeout; only
    /// addresses of the source's family are tried, in order.
    pub async fn connect(
        source: IpAddr,
        dest: &Destination,
        helo: &str,
        timeouts: &SmtpTimeouts,
    ) -> Result<Self, DeliveryOutcome> {
        let limit = ms(timeouts.connect_ms);
        let deadline = Instant::now() + limit;
        let addrs = match tokio::time::timeout(
            limit,
            tokio::net::lookup_host((dest.host.as_str(), dest.port)),
        )
        .await
        {
            Ok(Ok(addrs)) => addrs.filter(|a| a.is_ipv4() == source.is_ipv4()),
            Ok(Err(err)) => return Err(DeliveryOutcome::connection_failed(Stage::Connect, err)),
            Err(_) => return Err(DeliveryOutcome::timeout(Stage::Connect)),
        };

        let mut last_failure = None;
        for addr in addrs {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(DeliveryOutcome::timeout(Stage::Connect));
            }
            match SmtpClient::connect_using(source, addr, remaining).await {
                Ok(client) => {
                    // Commands are small and we wait for each reply: no Nagle delay.
                    let _ = client.stream.set_nodelay(true);
                    return Self::handshake(client.stream, helo, timeouts).await;
                }
                Err(mail_send::Error::Timeout) => {
                    return Err(DeliveryOutcome::timeout(Stage::Connect));
                }
                Err(err) => last_failure = Some(describe_connect_error(addr, err)),
            }
        }
        Err(DeliveryOutcome::connection_failed(
            Stage::Connect,
            last_failure
                .unwrap_or_else(|| format!("no {} address for {dest}", family_name(source))),
        ))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpConnection<S> {
    /// Starts a session on an already open stream: reads the greeting, then EHLO
    /// (falling back to HELO when the server does not know EHLO).
    pub async fn handshake(
        stream: S,
        helo: &str,
        timeouts: &SmtpTimeouts,
    ) -> Result<Self, DeliveryOutcome> {
        let mut conn = SmtpConnection {
            client: SmtpClient {
                stream,
                timeout: ms(timeouts.greeting_ms),
            },
            timeouts: timeouts.clone(),
            usable: true,
            messages_sent: 0,
        };
        if !is_safe_word(helo) {
            return Err(local_refusal(Stage::Ehlo, "5.5.2", "invalid HELO name"));
        }

        let greeting = conn
            .read_reply(Stage::Greeting, conn.timeouts.greeting_ms)
            .await?;
        if !(200..300).contains(&greeting.code) {
            return Err(refusal(Stage::Greeting, &greeting));
        }

        conn.client.timeout = ms(conn.timeouts.ehlo_ms);
        match conn.client.ehlo(helo).await {
            Ok(_capabilities) => Ok(conn),
            // 500/502: an old server without ESMTP. Everything we send is plain
            // SMTP, so HELO is enough.
            Err(mail_send::Error::UnexpectedReply(reply)) if matches!(reply.code, 500 | 502) => {
                let reply = conn
                    .command(
                        Stage::Ehlo,
                        format!("HELO {helo}\r\n"),
                        conn.timeouts.ehlo_ms,
                    )
                    .await?;
                if (200..300).contains(&reply.code) {
                    Ok(conn)
                } else {
                    Err(refusal(Stage::Ehlo, &reply))
                }
            }
            Err(err) => Err(conn.failed(Stage::Ehlo, err)),
        }
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

        let steps = [
            (
                Stage::MailFrom,
                format!("MAIL FROM:<{mail_from}>\r\n"),
                self.timeouts.mail_from_ms,
            ),
            (
                Stage::RcptTo,
                format!("RCPT TO:<{rcpt}>\r\n"),
                self.timeouts.rcpt_to_ms,
            ),
        ];
        for (stage, command, timeout_ms) in steps {
            match self.command(stage, command, timeout_ms).await {
                Ok(reply) if (200..300).contains(&reply.code) => {}
                Ok(reply) => return self.refused(stage, &reply).await,
                Err(outcome) => return outcome,
            }
        }

        match self
            .command(Stage::Data, "DATA\r\n", self.timeouts.data_ms)
            .await
        {
            Ok(reply) if reply.code == 354 => {}
            Ok(reply) => return self.refused(Stage::Data, &reply).await,
            Err(outcome) => return outcome,
        }

        let payload = dot_stuff(body);
        let write = async {
            self.client.stream.write_all(&payload).await?;
            self.client.stream.flush().await
        };
        match tokio::time::timeout(ms(self.timeouts.data_ms), write).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return self.failed(Stage::Data, err.into()),
            Err(_) => return self.failed(Stage::Data, mail_send::Error::Timeout),
        }

        let reply = match self
            .read_reply(Stage::DataEnd, self.timeouts.data_end_ms)
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
        if self.usable {
            self.client.timeout = ms(self.timeouts.mail_from_ms);
            let _ = self.client.cmd(b"QUIT\r\n").await;
        }
        let _ = self.client.stream.shutdown().await;
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
            .command(Stage::MailFrom, "RSET\r\n", self.timeouts.mail_from_ms)
            .await
        {
            Ok(rset) if (200..300).contains(&rset.code) => {}
            // The transaction state is unknown: do not reuse the session.
            _ => self.usable = false,
        }
        outcome
    }

    /// Sends one command and reads its reply within `timeout_ms`.
    async fn command(
        &mut self,
        stage: Stage,
        command: impl AsRef<[u8]>,
        timeout_ms: u64,
    ) -> Result<Reply, DeliveryOutcome> {
        self.client.timeout = ms(timeout_ms);
        match self.client.cmd(command).await {
            Ok(response) => Ok(Reply::new(response.code, response.esc, &response.message)),
            Err(err) => Err(self.failed(stage, err)),
        }
    }

    /// Reads one reply (greeting, end of data) within `timeout_ms`.
    async fn read_reply(
        &mut self,
        stage: Stage,
        timeout_ms: u64,
    ) -> Result<Reply, DeliveryOutcome> {
        match tokio::time::timeout(ms(timeout_ms), self.client.read()).await {
            Ok(Ok(response)) => Ok(Reply::new(response.code, response.esc, &response.message)),
            Ok(Err(err)) => Err(self.failed(stage, err)),
            Err(_) => Err(self.failed(stage, mail_send::Error::Timeout)),
        }
    }

    /// Maps a mail-send error to an outcome; anything but a well-formed reply
    /// leaves the session out of sync, so it becomes unusable.
    fn failed(&mut self, stage: Stage, err: mail_send::Error) -> DeliveryOutcome {
        if let mail_send::Error::UnexpectedReply(response) = &err {
            let reply = Reply::new(response.code, response.esc, &response.message);
            let outcome = refusal(stage, &reply);
            if outcome.closes_connection() {
                self.usable = false;
            }
            return outcome;
        }
        self.usable = false;
        match err {
            mail_send::Error::Timeout => DeliveryOutcome::timeout(stage),
            mail_send::Error::Io(io) => DeliveryOutcome::connection_failed(stage, io),
            // mail-send reports EOF as an unparseable reply.
            mail_send::Error::UnparseableReply => {
                DeliveryOutcome::connection_failed(stage, "connection closed or unparseable reply")
            }
            other => DeliveryOutcome::connection_failed(stage, other),
        }
    }
}

/// A reply rebuilt as one line, e.g. `550 5.1.1 user unknown`.
struct Reply {
    code: u16,
    line: String,
}

impl Reply {
    fn new(code: u16, esc: [u8; 3], message: &str) -> Self {
        let line = if esc == [0, 0, 0] {
            format!("{code} {message}")
        } else {
            format!("{code} {}.{}.{} {message}", esc[0], esc[1], esc[2])
        };
        Reply { code, line }
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

fn describe_connect_error(addr: SocketAddr, err: mail_send::Error) -> String {
    match err {
        mail_send::Error::Io(io) => format!("{addr}: {io}"),
        other => format!("{addr}: {other}"),
    }
}

fn family_name(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

    fn timeouts(ms: u64) -> SmtpTimeouts {
        SmtpTimeouts {
            connect_ms: ms,
            greeting_ms: ms,
            ehlo_ms: ms,
            mail_from_ms: ms,
            rcpt_to_ms: ms,
            data_ms: ms,
            data_end_ms: ms,
        }
    }

    /// A scripted server on the other end of an in-memory pipe: answers each
    /// line it reads with the next reply; `None` closes the pipe.
    async fn scripted(server: DuplexStream, greeting: &str, replies: Vec<Option<&'static str>>) {
        let (read, mut write) = tokio::io::split(server);
        let mut lines = BufReader::new(read).lines();
        write.write_all(greeting.as_bytes()).await.unwrap();
        for reply in replies {
            if lines.next_line().await.unwrap().is_none() {
                return;
            }
            match reply {
                Some(reply) => write.write_all(reply.as_bytes()).await.unwrap(),
                None => return,
            }
        }
    }

    #[tokio::test]
    async fn ehlo_falls_back_to_helo() {
        let (client, server) = tokio::io::duplex(4096);
        let server = tokio::spawn(scripted(
            server,
            "220 old server\r\n",
            vec![Some("502 5.5.1 what?\r\n"), Some("250 hello\r\n")],
        ));
        let conn = SmtpConnection::handshake(client, "me.test", &timeouts(1000)).await;
        assert!(conn.unwrap().is_usable());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn greeting_421_is_deferred_at_greeting() {
        let (client, server) = tokio::io::duplex(4096);
        let server = tokio::spawn(scripted(server, "421 4.3.2 busy\r\n", vec![]));
        let err = SmtpConnection::handshake(client, "me.test", &timeouts(1000))
            .await
            .unwrap_err();
        assert_eq!(err.stage(), Some(Stage::Greeting));
        assert_eq!(err.code(), Some(421));
        assert_eq!(err.enhanced(), Some("4.3.2"));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn silent_greeting_times_out() {
        let (client, _server) = tokio::io::duplex(4096);
        let err = SmtpConnection::handshake(client, "me.test", &timeouts(50))
            .await
            .unwrap_err();
        assert_eq!(err.reply(), "timeout at greeting");
    }

    #[tokio::test]
    async fn rcpt_421_makes_the_session_unusable_without_rset() {
        let (client, server) = tokio::io::duplex(4096);
        let server = tokio::spawn(scripted(
            server,
            "220 hi\r\n",
            vec![
                Some("250 hi\r\n"),
                Some("250 ok\r\n"),
                Some("421 4.7.0 [TSS04] later\r\n"),
            ],
        ));
        let mut conn = SmtpConnection::handshake(client, "me.test", &timeouts(1000))
            .await
            .unwrap();
        let outcome = conn
            .send("a@s.test", "b@r.test", b"Subject: x\r\n\r\nhi\r\n")
            .await;
        assert_eq!(outcome.stage(), Some(Stage::RcptTo));
        assert!(outcome.is_deferred());
        assert!(!conn.is_usable());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_250_instead_of_354_is_deferred_not_sent() {
        let (client, server) = tokio::io::duplex(4096);
        let server = tokio::spawn(scripted(
            server,
            "220 hi\r\n",
            vec![
                Some("250 hi\r\n"),
                Some("250 ok\r\n"),
                Some("250 ok\r\n"),
                Some("250 2.0.0 ok?\r\n"),
                Some("250 reset\r\n"),
            ],
        ));
        let mut conn = SmtpConnection::handshake(client, "me.test", &timeouts(1000))
            .await
            .unwrap();
        let outcome = conn.send("a@s.test", "b@r.test", b"x\r\n").await;
        assert!(outcome.is_deferred(), "{outcome:?}");
        assert_eq!(outcome.stage(), Some(Stage::Data));
        assert_eq!(outcome.code(), Some(250));
        assert!(conn.is_usable());
        assert_eq!(conn.messages_sent(), 0);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn injected_recipient_is_refused_locally() {
        let (client, server) = tokio::io::duplex(4096);
        let server = tokio::spawn(scripted(server, "220 hi\r\n", vec![Some("250 hi\r\n")]));
        let mut conn = SmtpConnection::handshake(client, "me.test", &timeouts(1000))
            .await
            .unwrap();
        let outcome = conn.send("a@s.test", "b@r.test>\r\nDATA", b"x").await;
        assert!(outcome.is_bounced());
        assert_eq!(outcome.enhanced(), Some("5.1.3"));
        assert!(conn.is_usable());
        assert_eq!(conn.messages_sent(), 0);
        server.await.unwrap();
    }
}
