//! Real SMTP over loopback: [`SmtpConnection`] (bound to 127.0.0.2/127.0.0.3)
//! against the [`Sink`], with messages built by [`CampaignTemplate`].
//!
//! Covers: source IPs and Message-IDs as recorded, connection reuse, scripted
//! bounces/deferrals/delays/drops and what they do to the connection, the sink's
//! pipelining, dot-unstuffing and HTTP API, and a 2,000-message sanity run.
//! No fixed sleeps: every wait is on a reply or a deadline-bounded condition.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use penguin_config::SmtpTimeouts;
use penguin_engine::message::{CampaignTemplate, RenderContext, new_message_id};
use penguin_engine::route::Destination;
use penguin_engine::sink::{Rule, RuleStage, Sink, SinkConfig, SinkHandle, SinkStats};
use penguin_engine::smtp::{DeliveryOutcome, SmtpConnection, Stage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

const SOURCE_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const SOURCE_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const SENDER: &str = "alice@sender.test";

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

fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn start_sink(rules: Vec<Rule>) -> SinkHandle {
    Sink::start(SinkConfig {
        listen: loopback_any_port(),
        rules,
        http_listen: None,
    })
    .await
    .expect("sink starts")
}

fn destination(sink: &SinkHandle) -> Destination {
    Destination {
        host: sink.smtp_addr().ip().to_string(),
        port: sink.smtp_addr().port(),
    }
}

async fn connect(sink: &SinkHandle, source: IpAddr) -> SmtpConnection {
    SmtpConnection::connect(source, &destination(sink), "mta.sender.test", &timeouts())
        .await
        .expect("connects")
}

fn rule(pattern: &str, stage: RuleStage, reply: Option<&str>) -> Rule {
    Rule {
        recipient_pattern: pattern.into(),
        stage,
        reply: reply.map(str::to_owned),
        times: None,
        delay_ms: None,
        drop_connection: false,
    }
}

/// Builds a real campaign message for `recipient`; returns (Message-ID, bytes).
fn build_message(recipient: &str) -> (String, Vec<u8>) {
    let template = CampaignTemplate::compile(
        SENDER,
        Some("Alice"),
        "Hello {{ name }}",
        "Hi {{ name }},\n.a line starting with a dot\n..two dots\n",
        None,
    )
    .expect("template compiles");
    let mut fields = serde_json::Map::new();
    fields.insert("name".into(), "Bob".into());
    let message_id = new_message_id(Uuid::new_v4(), "sender.test");
    let body = template
        .render(&RenderContext {
            recipient,
            fields: &fields,
            message_id: &message_id,
            unsubscribe_url: "https://t.sender.test/u/x",
            unsubscribe_mailto: None,
            feedback_id: "c1:t1:penguin",
            tracking: None,
            thread: &[],
        })
        .expect("renders");
    (message_id, body)
}

#[tokio::test]
async fn many_messages_per_connection_with_source_ips_and_message_ids() {
    let sink = start_sink(Vec::new()).await;
    let mut sent_ids = Vec::new();
    let mut sizes = Vec::new();

    for (source, count) in [(SOURCE_A, 5), (SOURCE_B, 3)] {
        let mut conn = connect(&sink, source).await;
        for i in 0..count {
            let rcpt = format!("lead{i}@example.test");
            let (id, body) = build_message(&rcpt);
            let outcome = conn.send(SENDER, &rcpt, &body).await;
            assert!(outcome.is_sent(), "{outcome:?}");
            sent_ids.push((source, id, rcpt));
            sizes.push(body.len());
        }
        assert_eq!(conn.messages_sent(), count);
        assert!(conn.is_usable());
        conn.quit().await;
    }

    let stats = sink.stats();
    assert_eq!(stats.connections, 2);
    assert_eq!(stats.messages_accepted, 8);
    assert_eq!(stats.per_source_ip[&SOURCE_A], 5);
    assert_eq!(stats.per_source_ip[&SOURCE_B], 3);
    assert_eq!(stats.unique_message_ids, 8);
    assert_eq!(stats.duplicate_message_ids, 0);

    let received = sink.messages();
    assert_eq!(received.len(), 8);
    for (record, ((source, id, rcpt), size)) in received.iter().zip(sent_ids.iter().zip(sizes)) {
        assert_eq!(record.source_ip, *source);
        assert_eq!(record.message_id.as_deref(), Some(id.as_str()));
        assert_eq!(record.mail_from, SENDER);
        assert_eq!(record.rcpt_to, std::slice::from_ref(rcpt));
        // The sink unstuffs dots, so it counts exactly the bytes we built.
        assert_eq!(record.size, size);
    }
    assert!(
        received[..5]
            .iter()
            .all(|m| m.connection_id == received[0].connection_id)
    );
    assert!(
        received[5..]
            .iter()
            .all(|m| m.connection_id == received[5].connection_id)
    );
    assert_ne!(received[0].connection_id, received[5].connection_id);
    sink.shutdown().await;
}

#[tokio::test]
async fn scripted_550_bounces_and_the_connection_stays_usable() {
    let sink = start_sink(vec![rule(
        "*@bounce.test",
        RuleStage::Rcpt,
        Some("550 5.1.1 user unknown"),
    )])
    .await;
    let mut conn = connect(&sink, SOURCE_A).await;

    let (_, body) = build_message("nobody@bounce.test");
    let outcome = conn.send(SENDER, "nobody@bounce.test", &body).await;
    assert_eq!(
        outcome,
        DeliveryOutcome::Bounced {
            code: 550,
            enhanced: Some("5.1.1".into()),
            reply: "550 5.1.1 user unknown".into(),
            stage: Stage::RcptTo,
        }
    );
    assert!(outcome.is_hard_bounce());
    assert!(conn.is_usable());

    let (id, body) = build_message("someone@ok.test");
    assert!(conn.send(SENDER, "someone@ok.test", &body).await.is_sent());
    let stats = sink.stats();
    assert_eq!((stats.connections, stats.messages_accepted), (1, 1));
    assert_eq!(stats.rejected_5xx, 1);
    assert_eq!(sink.messages()[0].message_id.as_deref(), Some(id.as_str()));
    conn.quit().await;
    sink.shutdown().await;
}

#[tokio::test]
async fn a_450_the_first_time_then_250() {
    let mut defer_once = rule(
        "*@greylist.test",
        RuleStage::Rcpt,
        Some("450 4.2.0 greylisted"),
    );
    defer_once.times = Some(1);
    let sink = start_sink(vec![defer_once]).await;
    let mut conn = connect(&sink, SOURCE_A).await;
    let (_, body) = build_message("lead@greylist.test");

    let first = conn.send(SENDER, "lead@greylist.test", &body).await;
    assert!(first.is_deferred(), "{first:?}");
    assert_eq!(first.code(), Some(450));
    assert_eq!(first.enhanced(), Some("4.2.0"));
    assert_eq!(first.stage(), Some(Stage::RcptTo));
    assert!(conn.is_usable());

    let second = conn.send(SENDER, "lead@greylist.test", &body).await;
    assert!(second.is_sent(), "{second:?}");
    let stats = sink.stats();
    assert_eq!((stats.rejected_4xx, stats.messages_accepted), (1, 1));
    sink.shutdown().await;
}

#[tokio::test]
async fn a_reply_slower_than_data_end_timeout_is_deferred_at_data_end() {
    let mut slow = rule("*@slow.test", RuleStage::DataEnd, None);
    slow.delay_ms = Some(30_000);
    let sink = start_sink(vec![slow]).await;
    let short = SmtpTimeouts {
        data_end_ms: 200,
        ..timeouts()
    };
    let mut conn = SmtpConnection::connect(SOURCE_A, &destination(&sink), "mta.test", &short)
        .await
        .expect("connects");
    let (_, body) = build_message("lead@slow.test");

    let outcome = conn.send(SENDER, "lead@slow.test", &body).await;
    assert_eq!(outcome, DeliveryOutcome::timeout(Stage::DataEnd));
    assert_eq!(outcome.reply(), "timeout at data_end");
    assert!(!conn.is_usable());
    sink.shutdown().await;
}

#[tokio::test]
async fn a_drop_during_data_is_deferred_and_unusable() {
    let mut drop = rule("*@drop.test", RuleStage::DataEnd, None);
    drop.drop_connection = true;
    let sink = start_sink(vec![drop]).await;
    let mut conn = connect(&sink, SOURCE_B).await;
    let (_, body) = build_message("lead@drop.test");

    let outcome = conn.send(SENDER, "lead@drop.test", &body).await;
    assert!(outcome.is_deferred(), "{outcome:?}");
    assert_eq!(outcome.stage(), Some(Stage::DataEnd));
    assert_eq!(outcome.code(), None);
    assert!(!conn.is_usable());
    let stats = sink.stats();
    assert_eq!((stats.dropped_connections, stats.messages_accepted), (1, 0));
    sink.shutdown().await;
}

#[tokio::test]
async fn connection_refused_is_deferred_at_connect() {
    // A port that was just free: nothing listens there any more.
    let listener = tokio::net::TcpListener::bind(loopback_any_port())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let dest = Destination {
        host: addr.ip().to_string(),
        port: addr.port(),
    };
    let err = SmtpConnection::connect(SOURCE_A, &dest, "mta.test", &timeouts())
        .await
        .expect_err("nothing listens");
    assert!(err.is_deferred());
    assert_eq!(err.stage(), Some(Stage::Connect));
}

#[tokio::test]
async fn two_thousand_messages_over_four_connections() {
    const CONNECTIONS: usize = 4;
    const PER_CONNECTION: usize = 500;
    let sink = start_sink(Vec::new()).await;
    let dest = destination(&sink);

    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let dest = dest.clone();
        let source = if c % 2 == 0 { SOURCE_A } else { SOURCE_B };
        tasks.push(tokio::spawn(async move {
            let mut conn = SmtpConnection::connect(source, &dest, "mta.test", &timeouts())
                .await
                .expect("connects");
            let mut sent = 0;
            for i in 0..PER_CONNECTION {
                let rcpt = format!("lead{c}-{i}@example.test");
                let (_, body) = build_message(&rcpt);
                if conn.send(SENDER, &rcpt, &body).await.is_sent() {
                    sent += 1;
                }
            }
            conn.quit().await;
            sent
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await.expect("sender task");
    }

    let total = (CONNECTIONS * PER_CONNECTION) as u64;
    assert_eq!(sent, total);
    assert!(sink.wait_for_messages(total, Duration::from_secs(10)).await);
    let stats = sink.stats();
    assert_eq!(stats.messages_accepted, total);
    assert_eq!(stats.unique_message_ids, total);
    assert_eq!(stats.duplicate_message_ids, 0);
    assert_eq!(stats.connections, CONNECTIONS as u64);
    assert_eq!(stats.per_source_ip[&SOURCE_A], total / 2);
    assert!(sink.message_ids_seen_more_than_once().is_empty());
    sink.shutdown().await;
}

/// Reads from `stream` until the received text contains `needle`.
async fn read_until_contains(stream: &mut TcpStream, seen: &mut String, needle: &str) {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains(needle) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(n > 0, "EOF before {needle:?}; got {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test]
async fn sink_handles_pipelining_dot_unstuffing_and_duplicates() {
    let sink = start_sink(Vec::new()).await;
    let mut stream = TcpStream::connect(sink.smtp_addr()).await.unwrap();
    let mut seen = String::new();
    read_until_contains(&mut stream, &mut seen, "220 ").await;

    let body = "Message-ID: <dup@x.test>\r\nSubject: s\r\n\r\n..dot\r\nplain\r\n";
    let unstuffed_len = body.len() - 1;
    let transaction =
        format!("MAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\nDATA\r\n{body}.\r\n");
    // Everything in one write: EHLO plus two complete transactions, then QUIT.
    let script = format!("EHLO client.test\r\n{transaction}{transaction}QUIT\r\n");
    stream.write_all(script.as_bytes()).await.unwrap();
    read_until_contains(&mut stream, &mut seen, "221 ").await;

    assert!(seen.contains("250-PIPELINING\r\n"), "{seen}");
    assert_eq!(seen.matches("354 ").count(), 2, "{seen}");
    assert_eq!(seen.matches("250 2.0.0 OK queued").count(), 2, "{seen}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].size, unstuffed_len);
    assert_eq!(messages[0].rcpt_to, ["b@y.test"]);
    assert_eq!(sink.message_ids_seen_more_than_once(), ["dup@x.test"]);
    let stats = sink.stats();
    assert_eq!(
        (stats.unique_message_ids, stats.duplicate_message_ids),
        (1, 1)
    );
    assert_eq!(stats.per_source_ip[&IpAddr::from([127, 0, 0, 1])], 2);
    sink.shutdown().await;
}

/// A minimal HTTP/1.1 exchange; returns (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: sink\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("HTTP response in time")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    (status, body.to_owned())
}

#[tokio::test]
async fn http_api_scripts_rules_and_reports() {
    let sink = Sink::start(SinkConfig {
        listen: loopback_any_port(),
        rules: Vec::new(),
        http_listen: Some(loopback_any_port()),
    })
    .await
    .unwrap();
    let api = sink.http_addr().expect("HTTP enabled");

    let rules =
        r#"[{"recipient_pattern": "*@bounce.test", "stage": "rcpt", "reply": "550 5.1.1 no"}]"#;
    let (status, _) = http(api, "POST", "/rules", rules).await;
    assert_eq!(status, 200);
    let (status, body) = http(api, "POST", "/rules", r#"[{"recipient_pattern": "x"}]"#).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = http(
        api,
        "POST",
        "/rules",
        r#"[{"recipient_pattern": "x", "stage": "rcpt", "reply": "oops"}]"#,
    )
    .await;
    assert_eq!(status, 400);

    let mut conn = connect(&sink, SOURCE_A).await;
    let (_, body) = build_message("x@bounce.test");
    assert!(conn.send(SENDER, "x@bounce.test", &body).await.is_bounced());
    for i in 0..3 {
        let (_, body) = build_message("x@ok.test");
        assert!(conn.send(SENDER, "x@ok.test", &body).await.is_sent(), "{i}");
    }

    let (status, body) = http(api, "GET", "/stats", "").await;
    assert_eq!(status, 200);
    let stats: SinkStats = serde_json::from_str(&body).unwrap();
    assert_eq!((stats.messages_accepted, stats.rejected_5xx), (3, 1));

    let (status, body) = http(api, "GET", "/messages?after=1&limit=1", "").await;
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    assert_eq!(page["messages"][0]["seq"], 2);
    assert_eq!(page["messages"][0]["source_ip"], "127.0.0.2");
    assert_eq!(page["next_after"], 2);

    let (status, _) = http(api, "POST", "/reset", "").await;
    assert_eq!(status, 204);
    assert_eq!(sink.stats().messages_accepted, 0);
    conn.quit().await;
    sink.shutdown().await;
}
