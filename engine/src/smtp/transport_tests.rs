//! Unit tests of [`super::SmtpConnection`] over an in-memory duplex: a
//! scripted server answers (or stalls), and the tests judge the outcome, the
//! stage it names, whether the session stays usable, and what the client sent.

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
        tls_ms: ms,
    }
}

/// A scripted server on the other end of an in-memory pipe: answers each
/// line it reads with the next reply; `None` closes the pipe. Returns the
/// lines it read, in order.
async fn scripted(
    server: DuplexStream,
    greeting: &str,
    replies: Vec<Option<&'static str>>,
) -> Vec<String> {
    let (read, mut write) = tokio::io::split(server);
    let mut lines = BufReader::new(read).lines();
    let mut received = Vec::new();
    write.write_all(greeting.as_bytes()).await.unwrap();
    for reply in replies {
        match lines.next_line().await.unwrap() {
            Some(line) => received.push(line),
            None => return received,
        }
        match reply {
            Some(reply) => write.write_all(reply.as_bytes()).await.unwrap(),
            None => return received,
        }
    }
    received
}

/// A server that answers the first lines with `replies`, then reads on and
/// never answers again, keeping the connection open: a stall.
async fn stalling(server: DuplexStream, replies: Vec<&'static str>) {
    let (read, mut write) = tokio::io::split(server);
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 hi\r\n").await.unwrap();
    let mut replies = replies.into_iter();
    while let Ok(Some(_)) = lines.next_line().await {
        if let Some(reply) = replies.next() {
            write.write_all(reply.as_bytes()).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_stall_at_each_stage_defers_naming_that_stage() {
    let script: [&'static str; 4] = ["250 hi\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n"];
    let stages = [
        (0, Stage::Ehlo, "timeout at ehlo"),
        (1, Stage::MailFrom, "timeout at mail_from"),
        (2, Stage::RcptTo, "timeout at rcpt_to"),
        (3, Stage::Data, "timeout at data"),
        (4, Stage::DataEnd, "timeout at data_end"),
    ];
    for (answered, stage, reply) in stages {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(stalling(server, script[..answered].to_vec()));
        let outcome = match SmtpConnection::handshake(client, "me.test", &timeouts(100)).await {
            Err(outcome) => outcome,
            Ok(mut conn) => {
                let outcome = conn
                    .send("a@s.test", "b@r.test", b"Subject: x\r\n\r\nhi\r\n")
                    .await;
                assert!(
                    !conn.is_usable(),
                    "a stalled session is not reused ({stage:?})"
                );
                outcome
            }
        };
        assert!(outcome.is_deferred(), "{stage:?}: {outcome:?}");
        assert_eq!(outcome.stage(), Some(stage));
        assert_eq!(outcome.reply(), reply);
        server.abort();
    }
}

/// A server that refuses EHLO with 502 is greeted with HELO, and the session
/// works without ESMTP extensions.
#[tokio::test]
async fn ehlo_falls_back_to_helo() {
    let (client, server) = tokio::io::duplex(4096);
    let server = tokio::spawn(scripted(
        server,
        "220 old server\r\n",
        vec![Some("502 5.5.1 what?\r\n"), Some("250 hello\r\n")],
    ));
    let conn = SmtpConnection::handshake(client, "me.test", &timeouts(1000))
        .await
        .unwrap();
    assert!(conn.is_usable());
    assert!(!conn.pipelining(), "no extensions without EHLO");
    let received = server.await.unwrap();
    assert_eq!(
        received,
        ["EHLO me.test", "HELO me.test"],
        "HELO follows the refused EHLO"
    );
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
async fn pipelined_mail_refusal_names_mail_from_and_resets() {
    let (client, server) = tokio::io::duplex(4096);
    let server = tokio::spawn(scripted(
        server,
        "220 hi\r\n",
        vec![
            Some("250-hi\r\n250 PIPELINING\r\n"),
            Some("550 5.7.1 sender blocked\r\n"),
            Some("503 5.5.1 MAIL first\r\n"),
            Some("250 reset\r\n"),
        ],
    ));
    let mut conn = SmtpConnection::handshake(client, "me.test", &timeouts(1000))
        .await
        .unwrap();
    assert!(conn.pipelining());
    let outcome = conn.send("a@s.test", "b@r.test", b"x\r\n").await;
    assert!(outcome.is_bounced(), "{outcome:?}");
    assert_eq!(outcome.stage(), Some(Stage::MailFrom));
    assert_eq!(outcome.enhanced(), Some("5.7.1"));
    assert!(conn.is_usable());
    server.await.unwrap();
}

#[tokio::test]
async fn pipelined_mail_421_makes_the_session_unusable() {
    let (client, server) = tokio::io::duplex(4096);
    let server = tokio::spawn(scripted(
        server,
        "220 hi\r\n",
        vec![
            Some("250-hi\r\n250 PIPELINING\r\n"),
            Some("421 4.7.0 go away\r\n"),
        ],
    ));
    let mut conn = SmtpConnection::handshake(client, "me.test", &timeouts(1000))
        .await
        .unwrap();
    let outcome = conn.send("a@s.test", "b@r.test", b"x\r\n").await;
    assert!(outcome.is_deferred());
    assert_eq!(outcome.stage(), Some(Stage::MailFrom));
    assert!(!conn.is_usable());
    server.await.unwrap();
}

#[tokio::test]
async fn a_utf8_address_goes_with_smtputf8_when_offered() {
    let (client, server) = tokio::io::duplex(4096);
    let server = tokio::spawn(scripted(
        server,
        "220 hi\r\n",
        vec![
            Some("250-hi\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"),
            Some("250 ok\r\n"),
            Some("250 ok\r\n"),
            Some("354 go\r\n"),
            Some("250 queued\r\n"),
        ],
    ));
    let mut conn = SmtpConnection::handshake(client, "me.test", &timeouts(1000))
        .await
        .unwrap();
    let outcome = conn.send("a@s.test", "zoë@r.test", b"x\r\n").await;
    assert!(outcome.is_sent(), "{outcome:?}");
    drop(conn);
    let seen = server.await.unwrap();
    assert_eq!(seen[1], "MAIL FROM:<a@s.test> SMTPUTF8 BODY=8BITMIME");
    assert_eq!(seen[2], "RCPT TO:<zoë@r.test>");
}

#[tokio::test]
async fn a_utf8_address_without_smtputf8_is_refused_locally() {
    let (client, server) = tokio::io::duplex(4096);
    let server = tokio::spawn(scripted(
        server,
        "220 hi\r\n",
        vec![Some("250-hi\r\n250 8BITMIME\r\n"), Some("250 ok\r\n")],
    ));
    let mut conn = SmtpConnection::handshake(client, "me.test", &timeouts(1000))
        .await
        .unwrap();
    let outcome = conn.send("a@s.test", "zoë@r.test", b"x\r\n").await;
    assert!(outcome.is_bounced(), "{outcome:?}");
    assert_eq!(outcome.enhanced(), Some("5.6.7"));
    assert_eq!(outcome.stage(), Some(Stage::RcptTo));
    // An ASCII envelope on the same session carries no parameter.
    let outcome = conn.send("a@s.test", "b@r.test", b"x\r\n").await;
    assert!(
        outcome.is_deferred(),
        "the script ends after MAIL: {outcome:?}"
    );
    drop(conn);
    let seen = server.await.unwrap();
    assert_eq!(seen, vec!["EHLO me.test", "MAIL FROM:<a@s.test>"]);
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
