//! The connect side of [`super::SmtpConnection`]: opening the TCP stream from a
//! source IP to addresses the caller already resolved, and bounding every wait
//! by the stage's timeout and the attempt's deadline.
//!
//! Guarantees: no name is ever looked up here (the OS resolver is never asked;
//! `crate::dns::addresses` resolves and vets MX addresses with hickory); only
//! addresses of the source's family are tried, in the given order, all within
//! one `connect_ms` (and the deadline); a wait cut short by the deadline says so
//! ([`Limit::timed_out`]), so the outcome reads "attempt deadline passed".

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_send::SmtpClient;
use penguin_config::SmtpTimeouts;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::outcome::{DeliveryOutcome, Stage};
use super::transport::Failure;
use crate::route::Destination;

/// How long one wait may last: a stage's own timeout, cut to what is left of
/// the attempt's deadline.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limit {
    duration: Duration,
    /// The deadline, not the stage timeout, sets `duration`.
    by_deadline: bool,
}

impl Limit {
    pub(super) fn new(timeout_ms: u64, deadline: Option<Instant>) -> Self {
        let own = Duration::from_millis(timeout_ms);
        match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                Limit {
                    duration: own.min(left),
                    by_deadline: left < own,
                }
            }
            None => Limit {
                duration: own,
                by_deadline: false,
            },
        }
    }

    pub(super) fn duration(self) -> Duration {
        self.duration
    }

    /// What running out of this limit means.
    pub(super) fn timed_out(self) -> Failure {
        if self.by_deadline {
            Failure::Deadline
        } else {
            Failure::Timeout
        }
    }

    fn timeout_outcome(self, stage: Stage) -> DeliveryOutcome {
        if self.by_deadline {
            DeliveryOutcome::deadline_passed(stage)
        } else {
            DeliveryOutcome::timeout(stage)
        }
    }
}

/// The address of a destination given as an IP literal (`[v6]` brackets
/// allowed). A host name is refused: names are resolved (and vetted) by the
/// caller, never here.
pub(super) fn literal_addresses(dest: &Destination) -> Result<Vec<IpAddr>, DeliveryOutcome> {
    let literal = dest
        .host
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(ip) => Ok(vec![ip]),
        Err(_) => Err(DeliveryOutcome::connection_failed(
            Stage::Connect,
            format!(
                "{} is a host name: resolve it first (crate::dns::addresses)",
                dest.host
            ),
        )),
    }
}

/// Opens the TCP connection from `source` to the first of `addrs` (on
/// `dest.port`) of the source's family that answers, all within the connect
/// timeout and the deadline.
pub(super) async fn open_tcp(
    source: IpAddr,
    dest: &Destination,
    addrs: &[IpAddr],
    timeouts: &SmtpTimeouts,
    deadline: Option<Instant>,
) -> Result<TcpStream, DeliveryOutcome> {
    let limit = Limit::new(timeouts.connect_ms, deadline);
    let until = Instant::now() + limit.duration();
    let mut last_failure = None;
    let same_family = addrs.iter().filter(|a| a.is_ipv4() == source.is_ipv4());
    for ip in same_family {
        let addr = SocketAddr::new(*ip, dest.port);
        let remaining = until.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(limit.timeout_outcome(Stage::Connect));
        }
        match SmtpClient::connect_using(source, addr, remaining).await {
            Ok(client) => {
                // Commands are small and we wait for each reply: no Nagle delay.
                let _ = client.stream.set_nodelay(true);
                return Ok(client.stream);
            }
            Err(mail_send::Error::Timeout) => {
                return Err(limit.timeout_outcome(Stage::Connect));
            }
            Err(err) => last_failure = Some(describe_connect_error(addr, err)),
        }
    }
    Err(DeliveryOutcome::connection_failed(
        Stage::Connect,
        last_failure.unwrap_or_else(|| format!("no {} address for {dest}", family_name(source))),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_near_deadline_cuts_the_stage_timeout_and_says_so() {
        let soon = Instant::now() + Duration::from_millis(100);
        let limit = Limit::new(60_000, Some(soon));
        assert!(limit.duration() <= Duration::from_millis(100));
        assert_eq!(
            limit.timeout_outcome(Stage::DataEnd).reply(),
            "attempt deadline passed at data_end"
        );
        let limit = Limit::new(50, Some(Instant::now() + Duration::from_secs(60)));
        assert_eq!(limit.duration(), Duration::from_millis(50));
        assert_eq!(
            limit.timeout_outcome(Stage::Data).reply(),
            "timeout at data"
        );
        let passed = Limit::new(50, Some(Instant::now() - Duration::from_millis(1)));
        assert!(passed.duration().is_zero());
    }

    /// A server that greets, accepts EHLO and MAIL FROM, then never answers.
    async fn stall_at_rcpt(server: tokio::io::DuplexStream) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (read, mut write) = tokio::io::split(server);
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 hi\r\n").await.unwrap();
        let mut replies = ["250 hi\r\n", "250 ok\r\n"].into_iter();
        while let Ok(Some(_)) = lines.next_line().await {
            if let Some(reply) = replies.next() {
                write.write_all(reply.as_bytes()).await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn the_attempt_deadline_bounds_the_stage_timeouts() {
        let timeouts = SmtpTimeouts {
            connect_ms: 60_000,
            greeting_ms: 60_000,
            ehlo_ms: 60_000,
            mail_from_ms: 60_000,
            rcpt_to_ms: 60_000,
            data_ms: 60_000,
            data_end_ms: 60_000,
            tls_ms: 60_000,
        };
        let (client, server) = tokio::io::duplex(4096);
        let server = tokio::spawn(stall_at_rcpt(server));
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut conn = super::super::SmtpConnection::handshake_until(
            client,
            "me.test",
            &timeouts,
            Some(deadline),
        )
        .await
        .unwrap();
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            conn.send("a@s.test", "b@r.test", b"x\r\n"),
        )
        .await
        .expect("the deadline, not the 60 s stage timeout, ends the stall");
        assert!(outcome.is_deferred());
        assert_eq!(outcome.stage(), Some(Stage::RcptTo));
        assert_eq!(outcome.reply(), "attempt deadline passed at rcpt_to");
        assert!(!conn.is_usable());
        server.abort();
    }

    #[test]
    fn host_names_are_never_resolved_here() {
        let named = Destination {
            host: "mx.example.test".into(),
            port: 25,
        };
        let err = literal_addresses(&named).unwrap_err();
        assert!(err.is_deferred());
        assert!(err.reply().contains("mx.example.test"), "{err:?}");
        let v6 = Destination {
            host: "[::1]".into(),
            port: 25,
        };
        assert_eq!(
            literal_addresses(&v6).unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
    }
}
