//! DKIM round trips: messages rendered by [`CampaignTemplate`] (so the headers
//! are the real ones), signed by [`sign()`], verified by `mail-auth`'s own
//! verifier reading the TXT records [`txt_value`] publishes (served from an
//! in-memory resolver cache: no DNS).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, Txt};

use super::*;
use crate::message::{CampaignTemplate, RenderContext};

const DOMAIN: &str = "sender.test";

/// One RSA key for the whole test binary (keygen is the slow part); the first
/// caller reports how long a debug-build keygen took.
fn rsa_key() -> &'static GeneratedKey {
    static KEY: OnceLock<GeneratedKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let started = Instant::now();
        let key = generate(DkimAlgorithm::RsaSha256).unwrap();
        eprintln!("RSA-2048 keygen took {:?}", started.elapsed());
        key
    })
}

/// The TXT records a receiver would find, keyed like `mail-auth`'s cache.
#[derive(Default)]
struct Published(Mutex<HashMap<Box<str>, Txt>>);

impl Published {
    fn publish(&self, selector: &str, key: &GeneratedKey) {
        let txt = txt_value(key.algorithm, &key.public_key_b64);
        let record = DomainKey::parse(txt.as_bytes()).expect("our TXT value parses");
        let name = format!("{selector}._domainkey.{DOMAIN}.");
        self.0
            .lock()
            .unwrap()
            .insert(name.into_boxed_str(), Txt::from(record));
    }
}

impl mail_auth::ResolverCache<Box<str>, Txt> for Published {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, _valid_until: Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

/// (result, selector, h=) of every DKIM-Signature in `message`, in order.
async fn verify(message: &[u8], published: &Published) -> Vec<(DkimResult, String, Vec<String>)> {
    // Never queried: every selector the tests sign with is in `published`.
    let authenticator = MessageAuthenticator::new_cloudflare().unwrap();
    let parsed = AuthenticatedMessage::parse(message).expect("message parses");
    authenticator
        .verify_dkim(Parameters::new(&parsed).with_txt_cache(published))
        .await
        .into_iter()
        .map(|out| {
            let signature = out.signature().expect("a signature");
            (
                out.result().clone(),
                signature.s.clone(),
                signature.h.clone(),
            )
        })
        .collect()
}

/// A realistic rendered message (~`body_bytes` of text body).
pub(crate) fn rendered(body_bytes: usize) -> Vec<u8> {
    let body = format!(
        "Hello {{{{ first_name }}}},\n\n{}\nBest,\nAlice",
        "Lorem ipsum dolor sit amet. ".repeat(body_bytes / 28)
    );
    let template = CampaignTemplate::compile(
        "alice@sender.test",
        Some("Alice Sender"),
        "Hi {{ first_name }}, about {{ company }}",
        &body,
        None,
    )
    .unwrap();
    let fields = serde_json::json!({"first_name": "Ann", "company": "Example Co"});
    let serde_json::Value::Object(fields) = fields else {
        unreachable!()
    };
    template
        .render(&RenderContext {
            recipient: "ann@example.com",
            fields: &fields,
            message_id: "0190abcd@sender.test",
            unsubscribe_url: "https://t.sender.test/u/tok123",
            unsubscribe_mailto: Some("unsub+tok123@sender.test"),
            feedback_id: "camp1:tenant1:penguin",
            tracking: None,
            thread: &[],
        })
        .unwrap()
}

/// Not a pass: `mail-auth` reports a bad signature as `Fail` and a body that no
/// longer matches `bh=` as `Neutral(FailedBodyHashMatch)`; receivers treat both
/// as unsigned.
fn assert_fails(result: &DkimResult) {
    let failed = match result {
        DkimResult::Fail(_) => true,
        DkimResult::Neutral(err) => err.to_string().to_lowercase().contains("body hash"),
        _ => false,
    };
    assert!(failed, "expected a failed verification, got {result:?}");
}

fn signer(selector: &str, key: &GeneratedKey) -> Arc<DkimSigner> {
    Arc::new(DkimSigner::new(DOMAIN, selector, key.algorithm, &key.private_pkcs8).unwrap())
}

fn header_block(message: &[u8]) -> &str {
    let text = std::str::from_utf8(message).unwrap();
    text.split_once("\r\n\r\n").unwrap().0
}

/// `message` with the first occurrence of `from` replaced by `to`.
fn replaced(message: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(message).unwrap();
    assert!(text.contains(from), "{from:?} not in the message");
    text.replacen(from, to, 1).into_bytes()
}

#[tokio::test]
async fn an_rsa_signature_verifies_with_mail_auth_and_covers_every_header() {
    let key = rsa_key();
    let published = Published::default();
    published.publish("s1", key);
    let message = rendered(2_000);
    let signed = sign(&message, &[signer("s1", key)]).unwrap();
    assert!(signed.ends_with(&message), "the message follows unchanged");
    let head = header_block(&signed);
    assert!(
        head.starts_with(
            "DKIM-Signature: v=1; a=rsa-sha256; s=s1; d=sender.test; c=relaxed/relaxed;"
        ),
        "{head}"
    );

    let results = verify(&signed, &published).await;
    assert_eq!(results.len(), 1);
    let (result, selector, mut h) = results.into_iter().next().unwrap();
    assert_eq!(result, DkimResult::Pass);
    assert_eq!(selector, "s1");
    let mut expected: Vec<String> = SIGNED_HEADERS.iter().map(|h| h.to_string()).collect();
    h.sort();
    expected.sort();
    assert_eq!(
        h, expected,
        "h= is exactly the signed headers a render produces"
    );
}

#[tokio::test]
async fn a_tampered_body_or_subject_fails() {
    let key = generate(DkimAlgorithm::Ed25519Sha256).unwrap();
    let published = Published::default();
    published.publish("ed1", &key);
    let signed = sign(&rendered(2_000), &[signer("ed1", &key)]).unwrap();
    assert_eq!(verify(&signed, &published).await[0].0, DkimResult::Pass);

    let body = replaced(&signed, "Lorem ipsum", "Lorem ipsun");
    assert_fails(&verify(&body, &published).await[0].0);
    let subject = replaced(&signed, "Subject: Hi Ann", "Subject: Hi Bob");
    assert_fails(&verify(&subject, &published).await[0].0);
    // Relaxed canonicalisation: re-folding whitespace is not tampering.
    let spaced = replaced(&signed, "Subject: Hi Ann", "Subject:   Hi  Ann");
    assert_eq!(verify(&spaced, &published).await[0].0, DkimResult::Pass);

    // RSA too.
    let rsa = rsa_key();
    published.publish("s1", rsa);
    let signed = sign(&rendered(2_000), &[signer("s1", rsa)]).unwrap();
    let body = replaced(&signed, "Best,", "Worst,");
    assert_fails(&verify(&body, &published).await[0].0);
}

#[tokio::test]
async fn a_key_other_than_the_published_one_fails() {
    let signing = generate(DkimAlgorithm::Ed25519Sha256).unwrap();
    let published_key = generate(DkimAlgorithm::Ed25519Sha256).unwrap();
    let published = Published::default();
    published.publish("ed1", &published_key);
    let signed = sign(&rendered(500), &[signer("ed1", &signing)]).unwrap();
    assert_fails(&verify(&signed, &published).await[0].0);
}

#[tokio::test]
async fn rsa_and_ed25519_both_sign_rsa_first_and_both_verify() {
    let rsa = rsa_key();
    let ed = generate(DkimAlgorithm::Ed25519Sha256).unwrap();
    let published = Published::default();
    published.publish("s1", rsa);
    published.publish("ed1", &ed);
    // Given Ed25519 first: RSA still signs (and appears) first.
    let signed = sign(&rendered(1_000), &[signer("ed1", &ed), signer("s1", rsa)]).unwrap();
    let head = header_block(&signed);
    let rsa_at = head.find("a=rsa-sha256").unwrap();
    let ed_at = head.find("a=ed25519-sha256").unwrap();
    assert!(rsa_at < ed_at, "{head}");
    assert_eq!(head.matches("DKIM-Signature:").count(), 2);

    let results = verify(&signed, &published).await;
    let mut passed: Vec<&str> = results
        .iter()
        .filter(|(result, _, _)| *result == DkimResult::Pass)
        .map(|(_, selector, _)| selector.as_str())
        .collect();
    passed.sort();
    assert_eq!(passed, ["ed1", "s1"], "{results:?}");
}

#[tokio::test]
async fn h_lists_only_the_headers_present_and_still_verifies() {
    let key = generate(DkimAlgorithm::Ed25519Sha256).unwrap();
    let published = Published::default();
    published.publish("ed1", &key);
    let message = concat!(
        "From: Alice <alice@sender.test>\r\n",
        "To: ann@example.com\r\n",
        "Subject: Hello\r\n",
        "Date: Sun, 6 Dec 2026 23:00:00 +0000\r\n",
        "Message-ID: <1@sender.test>\r\n",
        "X-Other: not signed\r\n",
        "\r\n",
        "Hello Ann\r\n"
    );
    let signed = sign(message.as_bytes(), &[signer("ed1", &key)]).unwrap();
    let results = verify(&signed, &published).await;
    let (result, _, mut h) = results.into_iter().next().unwrap();
    assert_eq!(result, DkimResult::Pass);
    h.sort();
    assert_eq!(h, ["Date", "From", "Message-ID", "Subject", "To"]);
    // The unsigned header may change without breaking the signature.
    let changed = replaced(&signed, "X-Other: not signed", "X-Other: changed");
    assert_eq!(verify(&changed, &published).await[0].0, DkimResult::Pass);
}

#[test]
fn keys_that_are_not_pkcs8_of_the_algorithm_are_clear_errors() {
    let rsa = rsa_key();
    let ed = generate(DkimAlgorithm::Ed25519Sha256).unwrap();
    let pkcs1 = mail_auth::dkim::generate::DkimKeyPair::generate_rsa(1024)
        .unwrap()
        .into_inner()
        .0;
    for (algorithm, bytes) in [
        (DkimAlgorithm::RsaSha256, &pkcs1[..]),
        (DkimAlgorithm::RsaSha256, b"not a key at all"),
        (DkimAlgorithm::RsaSha256, &ed.private_pkcs8[..]),
        (DkimAlgorithm::Ed25519Sha256, &rsa.private_pkcs8[..]),
        (DkimAlgorithm::Ed25519Sha256, b""),
    ] {
        let err = DkimSigner::new(DOMAIN, "s1", algorithm, bytes).unwrap_err();
        assert!(matches!(err, DkimError::InvalidKey { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("not a PKCS#8") && text.contains(algorithm.as_str()),
            "{text}"
        );
    }
}

#[test]
fn bad_names_and_messages_are_refused() {
    let ed = generate(DkimAlgorithm::Ed25519Sha256).unwrap();
    for (domain, selector) in [
        ("", "s1"),
        ("sender.test", ""),
        ("bad domain", "s1"),
        ("sender.test", "s;1"),
        ("a..b", "s1"),
        ("sender.test.", "s1"),
    ] {
        let err = DkimSigner::new(domain, selector, ed.algorithm, &ed.private_pkcs8).unwrap_err();
        assert!(
            matches!(err, DkimError::InvalidName { .. }),
            "{domain:?} {selector:?}: {err}"
        );
    }
    let signers = [signer("ed1", &ed)];
    let err = sign(
        b"To: ann@example.com\r\nSubject: x\r\n\r\nbody\r\n",
        &signers,
    )
    .unwrap_err();
    assert!(err.to_string().contains("no From header"), "{err}");
    let err = sign(&rendered(100), &[]).unwrap_err();
    assert!(err.to_string().contains("no DKIM key"), "{err}");
    let shown = format!("{:?}", signers[0]);
    assert!(
        shown.contains("ed1") && !shown.contains("private"),
        "{shown}"
    );
}

#[test]
fn rsa_public_keys_are_subject_public_key_info() {
    use base64::Engine as _;
    let key = rsa_key();
    let spki = base64::engine::general_purpose::STANDARD
        .decode(&key.public_key_b64)
        .unwrap();
    // SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { 0, RSAPublicKey } }
    assert_eq!(
        spki[..4],
        [0x30, 0x82, 0x01, 0x22],
        "a 2048-bit SPKI is 294 bytes"
    );
    assert_eq!(spki[4..19], keys_rsa_algorithm_id());
    assert!(
        key.public_key_b64
            .starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
    );
    assert_eq!(key.private_pkcs8[..2], [0x30, 0x82]);
}

fn keys_rsa_algorithm_id() -> [u8; 15] {
    [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ]
}

#[test]
fn signers_are_send_and_sync_and_keygen_is_bounded() {
    fn shareable<T: Send + Sync>() {}
    shareable::<DkimSigner>();
    let started = Instant::now();
    let _ = rsa_key();
    // Generous: the point is "not minutes" in debug builds (opt-level 3 for rsa).
    assert!(started.elapsed() < Duration::from_secs(60));
}
