//! STARTTLS and PIPELINING in [`SmtpConnection`] over real loopback TCP: the
//! sink with a self-signed certificate (rcgen), the three [`TlsMode`]s, the
//! fallback after a failed handshake, and pipelined MAIL+RCPT (one write, both
//! replies, right stage for 250/550). No fixed sleeps.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use penguin_config::SmtpTimeouts;
use penguin_engine::route::Destination;
use penguin_engine::sink::{Rule, RuleStage, Sink, SinkConfig, SinkHandle};
use penguin_engine::smtp::tls::server_config;
use penguin_engine::smtp::{SmtpConnection, Stage, TlsMode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedReadHalf;

const SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const SENDER: &str = "alice@sender.test";
const BODY: &[u8] = b"Subject: hi\r\nMessage-ID: <m@sender.test>\r\n\r\nhello\r\n";

fn timeouts() -> SmtpTimeouts {
    SmtpTimeouts {
        connect_ms: 5_000,
        greeting_ms: 5_000,
        ehlo_ms: 5_000,
        mail_from_ms: 5_000,
        rcpt_to_ms: 5_000,
        data_ms: 5_000,
        data_end_ms: 5_000,
        tls_ms: 5_000,
    }
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("self-signed certificate");
    let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    server_config(chain, key).expect("server config")
}

fn sink_config(rules: Vec<Rule>) -> SinkConfig {
    SinkConfig {
        rules,
        ..SinkConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

async fn tls_sink(rules: Vec<Rule>) -> SinkHandle {
    Sink::start_with_tls(sink_config(rules), tls_config())
        .await
        .expect("sink starts")
}

fn destination(addr: SocketAddr) -> Destination {
    Destination {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

async fn connect(addr: SocketAddr, tls: TlsMode) -> SmtpConnection {
    SmtpConnection::connect_with_tls(SOURCE, &destination(addr), "mta.test", &timeouts(), tls)
        .await
        .expect("connects")
}

#[tokio::test]
async fn messages_to_a_tls_sink_arrive_over_tls() {
    let sink = tls_sink(Vec::new()).await;
    // The default `connect` is opportunistic.
    let mut conn = SmtpConnection::connect(
        SOURCE,
        &destination(sink.smtp_addr()),
        "mta.test",
        &timeouts(),
    )
    .await
    .expect("connects");
    assert!(conn.is_tls());
    assert!(
        conn.pipelining(),
        "capabilities come from the EHLO over TLS"
    );
    for i in 0..3 {
        let outcome = conn.send(SENDER, &format!("r{i}@dest.test"), BODY).await;
        assert!(outcome.is_sent(), "{outcome:?}");
    }
    conn.quit().await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 3);
    assert!(messages.iter().all(|m| m.tls));
    let stats = sink.stats();
    assert_eq!(stats.tls_messages, 3);
    assert_eq!(stats.connections, 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn required_tls_with_a_tls_sink_sends() {
    let sink = tls_sink(Vec::new()).await;
    let mut conn = connect(sink.smtp_addr(), TlsMode::Required).await;
    assert!(conn.is_tls());
    assert!(conn.send(SENDER, "r@dest.test", BODY).await.is_sent());
    assert_eq!(sink.stats().tls_messages, 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn required_tls_without_starttls_defers_and_sends_nothing() {
    let sink = Sink::start(sink_config(Vec::new()))
        .await
        .expect("sink starts");
    let addr = sink.smtp_addr();
    let err = SmtpConnection::connect_with_tls(
        SOURCE,
        &destination(addr),
        "mta.test",
        &timeouts(),
        TlsMode::Required,
    )
    .await
    .expect_err("no plain fallback");
    assert!(err.is_deferred(), "{err:?}");
    assert_eq!(err.stage(), Some(Stage::Ehlo));
    assert_eq!(
        err.reply(),
        format!("TLS required but not offered by {}", addr.ip())
    );
    assert_eq!(sink.stats().messages_accepted, 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn disabled_tls_stays_plain_even_when_offered() {
    let sink = tls_sink(Vec::new()).await;
    let mut conn = connect(sink.smtp_addr(), TlsMode::Disabled).await;
    assert!(!conn.is_tls());
    assert!(conn.send(SENDER, "r@dest.test", BODY).await.is_sent());
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert!(!messages[0].tls);
    assert_eq!(sink.stats().tls_messages, 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn plain_sink_and_opportunistic_tls_sends_in_plain() {
    let sink = Sink::start(sink_config(Vec::new()))
        .await
        .expect("sink starts");
    let mut conn = connect(sink.smtp_addr(), TlsMode::Opportunistic).await;
    assert!(!conn.is_tls());
    assert!(conn.send(SENDER, "r@dest.test", BODY).await.is_sent());
    assert!(!sink.messages()[0].tls);
    sink.shutdown().await;
}

/// Offers STARTTLS and answers 220, then sends garbage instead of a TLS
/// handshake: right after the 220 (`inject`, as a plain-text injection would)
/// or after the client's hello.
async fn broken_tls_server(inject: bool) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 broken ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-broken\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
                        "STARTTLS" => {
                            let _ = write.write_all(b"220 go ahead\r\n").await;
                            if !inject {
                                // Wait for the ClientHello.
                                let _ = lines.get_mut().fill_buf().await;
                            }
                            let _ = write.write_all(b"this is not TLS\r\n\r\n").await;
                            return;
                        }
                        "QUIT" => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn failed_handshake_reconnects_in_plain_when_opportunistic() {
    for inject in [false, true] {
        let (addr, server) = broken_tls_server(inject).await;
        let err = SmtpConnection::connect_with_tls(
            SOURCE,
            &destination(addr),
            "mta.test",
            &timeouts(),
            TlsMode::Required,
        )
        .await
        .expect_err("required TLS never falls back");
        assert!(err.is_deferred());
        assert_eq!(err.stage(), Some(Stage::Ehlo));
        let why = if inject {
            "STARTTLS with 127.0.0.1 failed: data after the 220 reply"
        } else {
            "TLS handshake with 127.0.0.1 failed"
        };
        assert!(err.reply().starts_with(why), "{}", err.reply());

        // Opportunistic: one more connection, which stays plain (the server
        // offers STARTTLS again, but the transport does not retry it).
        let conn = connect(addr, TlsMode::Opportunistic).await;
        assert!(!conn.is_tls());
        assert!(conn.is_usable());
        conn.quit().await;
        server.abort();
    }
}

async fn next_line(reader: &mut BufReader<OwnedReadHalf>, line: &mut String) -> String {
    line.clear();
    reader.read_line(line).await.unwrap();
    line.trim_end().to_owned()
}

/// A server that checks MAIL and RCPT arrive in one read, answers them in one
/// write, and rejects the first recipient.
#[tokio::test]
async fn pipelined_mail_and_rcpt_arrive_together_and_keep_their_stages() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = String::new();
        write.write_all(b"220 scripted\r\n").await.unwrap();
        assert!(next_line(&mut reader, &mut line).await.starts_with("EHLO "));
        write
            .write_all(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            .await
            .unwrap();
        let mut together = 0;
        for (rcpt_reply, expect_rset) in [
            (&b"550 5.1.1 no such user\r\n"[..], true),
            (b"250 2.1.5 ok\r\n", false),
        ] {
            assert!(
                next_line(&mut reader, &mut line)
                    .await
                    .starts_with("MAIL FROM:")
            );
            // RCPT was in the same read as MAIL: already buffered.
            if reader.buffer().starts_with(b"RCPT TO:") {
                together += 1;
            }
            assert!(
                next_line(&mut reader, &mut line)
                    .await
                    .starts_with("RCPT TO:")
            );
            let mut replies = b"250 2.1.0 ok\r\n".to_vec();
            replies.extend_from_slice(rcpt_reply);
            write.write_all(&replies).await.unwrap();
            if expect_rset {
                assert_eq!(next_line(&mut reader, &mut line).await, "RSET");
                write.write_all(b"250 2.0.0 reset\r\n").await.unwrap();
            } else {
                assert_eq!(next_line(&mut reader, &mut line).await, "DATA");
                write.write_all(b"354 go\r\n").await.unwrap();
                while next_line(&mut reader, &mut line).await != "." {}
                write.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
            }
        }
        assert_eq!(next_line(&mut reader, &mut line).await, "QUIT");
        write.write_all(b"221 bye\r\n").await.unwrap();
        together
    });

    let mut conn = connect(addr, TlsMode::Opportunistic).await;
    assert!(conn.pipelining());
    let rejected = conn.send(SENDER, "nobody@dest.test", BODY).await;
    assert!(rejected.is_bounced(), "{rejected:?}");
    assert_eq!(rejected.stage(), Some(Stage::RcptTo));
    assert_eq!(rejected.enhanced(), Some("5.1.1"));
    assert!(conn.is_usable());
    let sent = conn.send(SENDER, "somebody@dest.test", BODY).await;
    assert!(sent.is_sent(), "{sent:?}");
    assert_eq!(conn.messages_sent(), 1);
    conn.quit().await;
    let together = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server finishes")
        .expect("server assertions hold");
    assert_eq!(together, 2, "MAIL and RCPT came in one read each time");
}

#[tokio::test]
async fn pipelined_sends_to_the_sink_classify_250_and_550_at_rcpt() {
    let bounce = Rule {
        recipient_pattern: "*@bounce.test".into(),
        stage: RuleStage::Rcpt,
        reply: Some("550 5.1.1 no such user".into()),
        times: None,
        delay_ms: None,
        drop_connection: false,
    };
    for tls in [TlsMode::Disabled, TlsMode::Required] {
        let sink = tls_sink(vec![bounce.clone()]).await;
        let mut conn = connect(sink.smtp_addr(), tls).await;
        assert!(conn.pipelining());
        for (i, rcpt) in ["a@ok.test", "b@bounce.test", "c@ok.test", "d@bounce.test"]
            .iter()
            .enumerate()
        {
            let outcome = conn.send(SENDER, rcpt, BODY).await;
            if rcpt.ends_with("@bounce.test") {
                assert!(outcome.is_bounced(), "{i}: {outcome:?}");
                assert_eq!(outcome.stage(), Some(Stage::RcptTo));
                assert_eq!(outcome.code(), Some(550));
            } else {
                assert!(outcome.is_sent(), "{i}: {outcome:?}");
            }
            assert!(conn.is_usable());
        }
        assert_eq!(conn.messages_sent(), 2);
        conn.quit().await;
        let stats = sink.stats();
        assert_eq!(stats.messages_accepted, 2);
        assert_eq!(stats.rejected_5xx, 2);
        assert_eq!(stats.connections, 1);
        assert_eq!(
            stats.tls_messages,
            if tls == TlsMode::Required { 2 } else { 0 }
        );
        sink.shutdown().await;
    }
}
