//! Criterion micro-benchmarks of the per-message hot path that runs without I/O:
//! payload encode/decode (every job crosses Redis once), message rendering
//! (every attempt renders its campaign template), and link tracking over a
//! hostile HTML part full of `<script>` elements (the scan must stay linear), and
//! DKIM signing of a rendered 10 KB message (every message is signed once per
//! key, issue 16). The end-to-end throughput
//! benchmark is `penguin bench` (see BENCHMARKS.md).
//!
//! Run: `cargo bench --bench engine`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use penguin_engine::dkim::{self, DkimAlgorithm, DkimSigner};
use penguin_engine::message::{CampaignTemplate, RenderContext, new_message_id};
use penguin_engine::payload::{JobPayload, JobV1};
use penguin_engine::tracking_html::HtmlTracking;
use uuid::Uuid;

fn payload(c: &mut Criterion) {
    let job = JobPayload::V1(JobV1 {
        job_id: Uuid::new_v4(),
        tenant_id: Uuid::new_v4(),
        campaign_id: Uuid::new_v4(),
        priority: 100,
        recipient: "ann.lead@example-company.com".into(),
        fields_json: r#"{"first_name":"Ann","company":"Example Co","title":"CTO"}"#.into(),
        attempts: 0,
        due_ms: 1_700_000_000_000,
    });
    let bytes = job.encode().unwrap();
    c.bench_function("payload_encode", |b| {
        b.iter(|| black_box(&job).encode().unwrap())
    });
    c.bench_function("payload_decode", |b| {
        b.iter(|| JobPayload::decode(black_box(&bytes)).unwrap())
    });
}

fn render(c: &mut Criterion) {
    let body = format!(
        "Hello {{{{first_name}}}},\n\n{}\nBest,\nPenguin",
        "Lorem ipsum dolor sit amet. ".repeat(350)
    );
    let template = CampaignTemplate::compile(
        "hello@sender.test",
        Some("Sender"),
        "Hi {{first_name}}, a question about {{company}}",
        &body,
        None,
    )
    .unwrap();
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"first_name":"Ann","company":"Example Co"}"#).unwrap();
    let job = Uuid::new_v4();
    let message_id = new_message_id(job, "sender.test");
    c.bench_function("render_10kb_message", |b| {
        b.iter(|| {
            template
                .render(&RenderContext {
                    recipient: "ann@example.com",
                    fields: &fields,
                    message_id: &message_id,
                    unsubscribe_url: "https://t.sender.test/u/token",
                    unsubscribe_mailto: None,
                    feedback_id: "c:t:penguin",
                    tracking: None,
                    thread: &[],
                })
                .unwrap()
        })
    });
}

/// 5,000 `<script>`/`<style>` elements (310 KB) between tracked links: the
/// scan used to lowercase the rest of the document at each of them.
fn tracking_scripts(c: &mut Criterion) {
    let html = "<p><a href=\"https://example.com/x\">x</a></p><SCRIPT>var a = 1;</SCRIPT><style>p{}</style>"
        .repeat(2_500);
    let tracking = HtmlTracking {
        base_url: "https://t.sender.test",
        secret: "0123456789abcdef0123456789abcdef",
        tenant: Uuid::new_v4(),
        job: Uuid::new_v4(),
        opens: true,
        clicks: true,
    };
    let mut group = c.benchmark_group("tracking");
    group.sample_size(10);
    group.bench_function("html_5000_scripts", |b| {
        b.iter(|| tracking.apply(black_box(&html)))
    });
    group.finish();
}

/// One signature per algorithm over a rendered ~10 KB message, and the
/// RSA + Ed25519 double signature (what a domain with `ed25519` enabled costs).
fn dkim_sign(c: &mut Criterion) {
    let body = format!(
        "Hello {{{{first_name}}}},\n\n{}\nBest,\nPenguin",
        "Lorem ipsum dolor sit amet. ".repeat(350)
    );
    let template = CampaignTemplate::compile(
        "hello@sender.test",
        Some("Sender"),
        "Hi {{first_name}}, a question about {{company}}",
        &body,
        None,
    )
    .unwrap();
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"first_name":"Ann","company":"Example Co"}"#).unwrap();
    let message_id = new_message_id(Uuid::new_v4(), "sender.test");
    let message = template
        .render(&RenderContext {
            recipient: "ann@example.com",
            fields: &fields,
            message_id: &message_id,
            unsubscribe_url: "https://t.sender.test/u/token",
            unsubscribe_mailto: None,
            feedback_id: "c:t:penguin",
            tracking: None,
            thread: &[],
        })
        .unwrap();
    let signer = |algorithm| {
        let key = dkim::generate(algorithm).unwrap();
        Arc::new(DkimSigner::new("sender.test", "s1", algorithm, &key.private_pkcs8).unwrap())
    };
    let rsa = signer(DkimAlgorithm::RsaSha256);
    let ed25519 = signer(DkimAlgorithm::Ed25519Sha256);
    let mut group = c.benchmark_group("dkim_sign");
    for (name, signers) in [
        ("rsa_sha256_10kb", vec![rsa.clone()]),
        ("ed25519_sha256_10kb", vec![ed25519.clone()]),
        ("rsa_and_ed25519_10kb", vec![rsa, ed25519]),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| dkim::sign(black_box(&message), &signers).unwrap())
        });
    }
    group.finish();
    let mut group = c.benchmark_group("dkim_keygen");
    group.sample_size(10);
    group.bench_function("rsa_2048", |b| {
        b.iter(|| dkim::generate(DkimAlgorithm::RsaSha256).unwrap())
    });
    group.finish();
}

criterion_group!(benches, payload, render, tracking_scripts, dkim_sign);
criterion_main!(benches);
