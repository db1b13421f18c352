use super::*;

/// A Postfix bounce as it arrives: CRLF, a quoted boundary, the original's
/// headers as `text/rfc822-headers`.
const POSTFIX: &str = "Content-Type: multipart/report; report-type=delivery-status;\r\n\
 boundary=\"B1\"\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n--B1\r\n\
Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
I'm sorry to have to inform you that your message could not\r\nbe delivered.\r\n\r\n--B1\r\n\
Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n\
Reporting-MTA: dns; mx.example.net\r\nX-Postfix-Queue-ID: 4F1\r\n\
Arrival-Date: Mon,  7 Dec 2026 06:00:00 +0000 (UTC)\r\n\r\n\
Final-Recipient: rfc822; Ann@Example.net\r\nOriginal-Recipient: rfc822;ann@example.net\r\n\
Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mailstore.example.net\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <ann@example.net>: Recipient address rejected:\r\n\x20   User unknown in virtual mailbox table\r\n\r\n--B1\r\n\
Content-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n\
From: sales@sender.example\r\nTo: ann@example.net\r\n\
Message-ID: <0190F0C4-AAAA-7BBB-8CCC-DDDDEEEEFFFF@sender.example>\r\nSubject: Hi\r\n\r\n--B1--\r\n";

fn split(report: &str) -> (&str, &str) {
    let (headers, body) = report.split_once("\r\n\r\n").unwrap();
    (headers.trim_start_matches("Content-Type: "), body)
}

#[test]
fn a_postfix_bounce_names_its_message_and_a_permanent_failure() {
    let (ct, body) = split(POSTFIX);
    let report = parse(&ct.replace("\r\n", ""), body.as_bytes()).unwrap();
    assert_eq!(
        report.message_id,
        "0190f0c4-aaaa-7bbb-8ccc-ddddeeeeffff@sender.example"
    );
    assert_eq!(report.recipients.len(), 1);
    let r = &report.recipients[0];
    assert_eq!(r.final_recipient.as_deref(), Some("ann@example.net"));
    assert_eq!(r.action, "failed");
    assert_eq!(r.status, "5.1.1");
    assert_eq!(r.verdict(), Verdict::Permanent);
    assert_eq!(r.smtp_code(), Some(550));
    assert!(r.diagnostic.as_deref().unwrap().contains("User unknown"));
    assert_eq!(r.remote_mta.as_deref(), Some("mailstore.example.net"));
    assert_eq!(r.class(), BounceClass::InvalidRecipient);
    assert!(r.is_hard());
}

fn report(status_block: &str, original: &str) -> String {
    format!(
        "--b\nContent-Type: text/plain\n\nsorry\n--b\nContent-Type: message/delivery-status\n\n\
         Reporting-MTA: dns; mx.example.net\n\n{status_block}\n--b\n{original}\n--b--\n"
    )
}

const CT: &str = "multipart/report; report-type=delivery-status; boundary=b";
const HEADERS: &str = "Content-Type: text/rfc822-headers\n\nMessage-ID: <m1@x.example>\n";

#[test]
fn a_delay_is_transient_and_a_policy_bounce_is_not_hard() {
    let delayed = report(
        "Final-Recipient: rfc822; a@b.example\nAction: delayed\nStatus: 4.4.1\n\
         Diagnostic-Code: smtp; 451 4.4.1 try later",
        HEADERS,
    );
    let r = &parse(CT, delayed.as_bytes()).unwrap().recipients[0];
    assert_eq!(r.verdict(), Verdict::Transient);
    assert!(!r.is_hard());

    let blocked = report(
        "Final-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.7.1\n\
         Diagnostic-Code: smtp; 554 5.7.1 Service unavailable; blocked using zen.example",
        HEADERS,
    );
    let r = &parse(CT, blocked.as_bytes()).unwrap().recipients[0];
    assert_eq!(r.verdict(), Verdict::Permanent);
    assert!(!r.is_hard(), "a block list says nothing about the address");

    let expired = report("Action: failed\nStatus: 4.4.7", HEADERS);
    let r = &parse(CT, expired.as_bytes()).unwrap().recipients[0];
    assert_eq!(r.verdict(), Verdict::Permanent, "failed is final");
    assert!(!r.is_hard());
    assert_eq!(r.smtp_code(), None);

    let delivered = report("Action: delivered\nStatus: 2.0.0", HEADERS);
    let r = &parse(CT, delivered.as_bytes()).unwrap().recipients[0];
    assert_eq!(r.verdict(), Verdict::Success);
}

#[test]
fn the_original_may_be_a_whole_message_base64_and_the_report_wrapped() {
    use base64::Engine;
    let original = base64::engine::general_purpose::STANDARD
        .encode("Message-ID: <m2@x.example>\nSubject: hi\n\nbody\n");
    let inner = report(
        "Action: failed\nStatus: 5.2.1",
        &format!("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n{original}"),
    );
    let wrapped = format!("From: MAILER-DAEMON@mx.example.net\nContent-Type: {CT}\n\n{inner}");
    let report = parse("message/rfc822", wrapped.as_bytes()).unwrap();
    assert_eq!(report.message_id, "m2@x.example");
    assert!(report.recipients[0].is_hard(), "5.2.1 disabled mailbox");
}

#[test]
fn several_recipients_are_kept_in_order() {
    let two = report(
        "Final-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 5.1.1\n\n\
         Final-Recipient: rfc822; b@x.example\nAction: delayed\nStatus: 4.2.2",
        HEADERS,
    );
    let report = parse(CT, two.as_bytes()).unwrap();
    let who: Vec<_> = report
        .recipients
        .iter()
        .map(|r| r.final_recipient.clone().unwrap())
        .collect();
    assert_eq!(who, ["a@x.example", "b@x.example"]);
}

#[test]
fn what_is_missing_or_wrong_is_said() {
    let cases: Vec<(&str, String, DsnError)> = vec![
        (
            "text/plain",
            "x".into(),
            DsnError::NotAReport("text/plain".into()),
        ),
        (
            "multipart/report; report-type=feedback-report; boundary=b",
            "".into(),
            DsnError::NotAReport("multipart/report; report-type=feedback-report".into()),
        ),
        (
            "multipart/report; report-type=delivery-status",
            "".into(),
            DsnError::MissingBoundary,
        ),
        (
            CT,
            format!("--b\n{HEADERS}\n--b--\n"),
            DsnError::NoStatusPart,
        ),
        (
            CT,
            report("Reporting-MTA: dns; x", HEADERS),
            DsnError::NoRecipient,
        ),
        (
            CT,
            report("Action: failed\nStatus: 5.1", HEADERS),
            DsnError::BadStatus("5.1".into()),
        ),
        (
            CT,
            report("Action: failed\nStatus: 5.1.1", ""),
            DsnError::NoOriginalMessage,
        ),
        (
            CT,
            report(
                "Action: failed\nStatus: 5.1.1",
                "Content-Type: text/rfc822-headers\n\nSubject: x\n",
            ),
            DsnError::MissingMessageId,
        ),
    ];
    for (ct, body, want) in cases {
        assert_eq!(
            parse(ct, body.as_bytes()).unwrap_err(),
            want,
            "{ct} {body:?}"
        );
    }
    let bad_id = report(
        "Action: failed\nStatus: 5.1.1",
        "Content-Type: text/rfc822-headers\n\nMessage-ID: <no at sign>\n",
    );
    assert!(matches!(
        parse(CT, bad_id.as_bytes()).unwrap_err(),
        DsnError::BadMessageId(_)
    ));
}

#[test]
fn hostile_values_are_cut_and_stripped() {
    let long = "x".repeat(5_000);
    let body = report(
        &format!("Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 {long}\x07"),
        HEADERS,
    );
    let r = &parse(CT, body.as_bytes()).unwrap().recipients[0];
    let diagnostic = r.diagnostic.as_deref().unwrap();
    assert!(diagnostic.len() <= MAX_VALUE);
    assert!(!diagnostic.chars().any(char::is_control));

    let many: Vec<String> = (0..500)
        .map(|i| format!("Final-Recipient: rfc822; r{i}@x.example\nAction: failed\nStatus: 5.1.1"))
        .collect();
    let body = report(&many.join("\n\n"), HEADERS);
    assert_eq!(
        parse(CT, body.as_bytes()).unwrap().recipients.len(),
        MAX_RECIPIENTS
    );

    let mut nested = report("Action: failed\nStatus: 5.1.1", HEADERS);
    for _ in 0..4 {
        nested = format!("Content-Type: message/rfc822\n\n{nested}");
    }
    assert_eq!(
        parse("message/rfc822", nested.as_bytes()).unwrap_err(),
        DsnError::TooDeep
    );
}

#[test]
fn a_flood_of_empty_blocks_is_read_a_bounded_number_of_times() {
    // 200,000 blocks without Action: each is skipped, and the reading stops at
    // MAX_BLOCKS instead of walking (and re-trimming) the rest every time.
    let flood = "X-Filler: 1\n\n".repeat(200_000);
    let body = report(&format!("{flood}Action: failed\nStatus: 5.1.1"), HEADERS);
    assert_eq!(
        parse(CT, body.as_bytes()).unwrap_err(),
        DsnError::NoRecipient
    );
}
