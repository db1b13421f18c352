//! Unit tests of [`super`]: real-looking reports (RFC 5965 appendix B and the
//! shapes big feedback loops send), line endings, folding and the errors.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;

/// The example of RFC 5965 appendix B.2, with our own Message-ID, as the body of
/// a `multipart/report` (the HTTP header carries the boundary).
const REPORT_BODY: &str = "--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset=\"US-ASCII\"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.  For more information
about this format please see http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <bounce@sender.example>
Original-Rcpt-To: <user@example.com>
Received-Date: Thu, 8 Mar 2005 14:00:00 EDT
Source-IP: 192.0.2.1
Authentication-Results: mail.example.com;
               spf=fail smtp.mail=somespammer@example.com
Reported-Domain: example.net
Reported-Uri: http://example.net/earn_money.html

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: <somespammer@example.net>
Received: from mailserver.example.net
  (mailserver.example.net [192.0.2.1])
  by example.com with ESMTP id M63d4137594e46;
  Thu, 08 Mar 2005 14:00:00 -0400
To: <Undisclosed Recipients>
Subject: Earn money
MIME-Version: 1.0
Content-type: text/plain
Message-ID:
 <0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B@Mail.Sender.example>
Date: Thu, 02 Sep 2004 12:31:03 -0500

Spam Spam Spam
Message-ID: <not-this-one@body.example>
--part1_13d.2e68ed54_boundary--
";

const CONTENT_TYPE: &str =
    "multipart/report; report-type=feedback-report;\r\n\tboundary=\"part1_13d.2e68ed54_boundary\"";

const OUR_ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b@mail.sender.example";

#[test]
fn a_multipart_report_names_the_folded_message_id() {
    let report = parse(CONTENT_TYPE, REPORT_BODY.as_bytes()).unwrap();
    assert_eq!(report.message_id, OUR_ID);
    assert_eq!(report.feedback_type, "abuse");
    assert!(report.is_complaint());
}

#[test]
fn crlf_line_endings_read_the_same() {
    let crlf = REPORT_BODY.replace('\n', "\r\n");
    assert_eq!(
        parse(CONTENT_TYPE, crlf.as_bytes()).unwrap(),
        parse(CONTENT_TYPE, REPORT_BODY.as_bytes()).unwrap()
    );
}

#[test]
fn a_whole_feedback_email_as_message_rfc822() {
    let email = format!(
        "Return-Path: <fbl@provider.example>\r\nFrom: FBL <fbl@provider.example>\r\n\
         Message-ID: <the-report-itself@provider.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: {CONTENT_TYPE}\r\n\r\nThis is a MIME message.\r\n\r\n{}",
        REPORT_BODY.replace('\n', "\r\n")
    );
    let report = parse("message/rfc822", email.as_bytes()).unwrap();
    assert_eq!(
        report.message_id, OUR_ID,
        "the reported message, not the report"
    );
}

#[test]
fn rfc822_headers_only_base64_and_other_feedback_types() {
    let headers = "From: a@sender.example\r\nMessage-ID: <abc@sender.example>\r\n\r\n";
    let body = format!(
        "preamble\n--b\nContent-Type: text/plain\n\nA complaint.\n--b\n\
         Content-Type: message/feedback-report\n\nFeedback-Type: Fraud\nVersion: 1\n\n--b\n\
         Content-Type: text/rfc822-headers\nContent-Transfer-Encoding: base64\n\n{}\n--b--\nepilogue\n",
        STANDARD.encode(headers)
    );
    let report = parse("multipart/report; boundary=b", body.as_bytes()).unwrap();
    assert_eq!(report.message_id, "abc@sender.example");
    assert_eq!(report.feedback_type, "fraud");

    let not_spam = body.replace("Feedback-Type: Fraud", "Feedback-Type: not-spam");
    let report = parse("multipart/report; boundary=b", not_spam.as_bytes()).unwrap();
    assert!(!report.is_complaint());
}

#[test]
fn quoted_printable_headers_decode() {
    let body = "--b\nContent-Type: message/feedback-report\n\nVersion: 1\n\n--b\n\
                Content-Type: text/rfc822-headers\nContent-Transfer-Encoding: quoted-printable\n\n\
                Subject: caf=C3=A9\nMessage-ID: <qp-id@sender=\n.example>\n\n--b--\n";
    let report = parse("multipart/report; boundary=b", body.as_bytes()).unwrap();
    assert_eq!(report.message_id, "qp-id@sender.example");
    assert_eq!(report.feedback_type, "abuse", "the default");
}

#[test]
fn a_feedback_report_alone_with_the_original_headers() {
    let body = "Feedback-Type: abuse\r\nUser-Agent: Yahoo!-Mail-Feedback/2.0\r\nVersion: 1\r\n\r\n\
                Received: from x\r\nMessage-Id: <alone@sender.example>\r\n";
    let report = parse("message/feedback-report", body.as_bytes()).unwrap();
    assert_eq!(report.message_id, "alone@sender.example");
    let fields_only = "Feedback-Type: abuse\nVersion: 1\n";
    assert_eq!(
        parse("message/feedback-report", fields_only.as_bytes()),
        Err(ArfError::MissingMessageId)
    );
}

#[test]
fn errors_say_what_is_missing() {
    let no_id = REPORT_BODY.replace("Message-ID:\n <0190A1B2", "X-Old-Id:\n <0190A1B2");
    assert_eq!(
        parse(CONTENT_TYPE, no_id.as_bytes()),
        Err(ArfError::MissingMessageId)
    );
    assert_eq!(
        parse(
            "multipart/report; report-type=feedback-report",
            REPORT_BODY.as_bytes()
        ),
        Err(ArfError::MissingBoundary)
    );
    assert!(matches!(
        parse(
            "multipart/report; report-type=delivery-status; boundary=b",
            b""
        ),
        Err(ArfError::NotAReport(_))
    ));
    assert!(matches!(
        parse("text/plain", b"hello"),
        Err(ArfError::NotAReport(_))
    ));
    let no_original = REPORT_BODY.replace("message/rfc822", "text/plain");
    assert_eq!(
        parse(CONTENT_TYPE, no_original.as_bytes()),
        Err(ArfError::NoOriginalMessage)
    );
    let no_feedback = REPORT_BODY.replace("message/feedback-report", "text/plain");
    assert_eq!(
        parse(CONTENT_TYPE, no_feedback.as_bytes()),
        Err(ArfError::NoFeedbackPart)
    );
    let bad_base64 = "--b\nContent-Type: message/feedback-report\n\nVersion: 1\n\n--b\n\
                      Content-Type: text/rfc822-headers\nContent-Transfer-Encoding: base64\n\n!!!\n--b--\n";
    assert!(matches!(
        parse("multipart/report; boundary=b", bad_base64.as_bytes()),
        Err(ArfError::BadEncoding(_))
    ));
    let nested =
        format!("Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n{REPORT_BODY}");
    assert_eq!(
        parse("message/rfc822", nested.as_bytes()),
        Err(ArfError::TooDeep)
    );
}

#[test]
fn message_ids_are_normalised() {
    for (input, expected) in [
        ("<A@B.example>", "a@b.example"),
        ("  a@b  ", "a@b"),
        ("(comment) <x.y@z> (trailing)", "x.y@z"),
    ] {
        assert_eq!(normalize_message_id(input).unwrap(), expected, "{input}");
    }
    for bad in [
        "",
        "<>",
        "no-at-sign",
        "<a@b",
        "a b@c",
        "@b",
        "a@",
        "<a\r\n@b>",
    ] {
        assert!(normalize_message_id(bad).is_err(), "{bad:?}");
    }
}
