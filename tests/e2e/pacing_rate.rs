//! `[limits] ip_messages_per_second`, measured where it matters: at the sink,
//! from the instants the sink saw each SMTP transaction begin (MAIL FROM). An IP
//! with more queued work than its rate allows sends at that rate, never faster;
//! while its health breakers are at a warning rate it sends at half the rate,
//! and back at the full rate once the warning clears (README "Limits", "Health
//! breakers").
//!
//! Tolerance: the pacer spaces transactions exactly 1/rate apart and saves no
//! credit, so over a window of W seconds the sink sees rate × W transactions up
//! to the jitter between a slot and its MAIL FROM reaching the sink (a few ms,
//! tens on a loaded machine): the mean rate over ≥ 3 s must be within ±10 % of
//! the promise, and no one-second window may hold more than rate + 2 (one for
//! the fencepost, one for that jitter). A pacer that ignored its rate, or a
//! warning that did not halve it (or halved it twice), is far outside.

use std::time::Duration;

use penguin_engine::sink::{ReceivedMessage, Rule, RuleStage};

use crate::support::rig::Rig;
use crate::support::wait_for;

const RATE: u32 = 20;
/// The mean rate over a window may be this far (as a share) from the promise.
const TOLERANCE: f64 = 0.10;
/// Transactions one second may hold beyond the rate (see the module doc).
const BURST: usize = 2;

/// The accepted messages, in the order their transactions began.
fn by_begin(mut messages: Vec<ReceivedMessage>) -> Vec<ReceivedMessage> {
    messages.sort_by_key(|m| m.transaction);
    messages
}

/// SMTP transactions per second the sink saw begin between the first and the
/// last of `messages` (accepted ones: the sink numbers every transaction, refused
/// ones included, so the numbers count the attempts in between).
fn attempt_rate(messages: &[ReceivedMessage]) -> f64 {
    let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
        panic!("no accepted message in the window");
    };
    let span_ms = (last.begun_at_ms - first.begun_at_ms).max(1) as f64;
    (last.transaction - first.transaction) as f64 * 1000.0 / span_ms
}

/// Most transactions begun within any one second, over `messages` (all accepted).
fn busiest_second(messages: &[ReceivedMessage]) -> usize {
    let mut times: Vec<i64> = messages.iter().map(|m| m.begun_at_ms).collect();
    times.sort_unstable();
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= 1000 {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

fn assert_rate(measured: f64, promised: f64, what: &str) {
    assert!(
        (measured - promised).abs() <= promised * TOLERANCE,
        "{what}: {measured:.2} transactions/s at the sink, promised {promised} ± {:.0} %",
        TOLERANCE * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ip_sends_at_its_messages_per_second() {
    let rig = Rig::start(|c| c.limits.ip_messages_per_second = RATE).await;
    // Five seconds of work at the rate, all queued at once.
    let leads: Vec<String> = (0..5 * RATE).map(|i| format!("r{i}@pace.test")).collect();
    let scenario = rig
        .campaign_with_leads(&leads.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    scenario.start().await.unwrap();
    rig.wait_for_jobs("sent", leads.len() as i64, Duration::from_secs(30))
        .await;

    let messages = by_begin(rig.sink.messages());
    assert_eq!(messages.len(), leads.len());
    assert!(
        messages
            .iter()
            .all(|m| m.source_ip.to_string() == "127.0.0.2"),
        "one IP sends"
    );
    let busiest = busiest_second(&messages);
    assert!(
        busiest <= RATE as usize + BURST,
        "{busiest} transactions began within one second, rate {RATE} + burst {BURST}"
    );
    // The first second holds connection set-up; the rate is measured after it.
    let start = messages[0].begun_at_ms + 1000;
    let window: Vec<ReceivedMessage> = messages
        .iter()
        .filter(|m| m.begun_at_ms >= start)
        .cloned()
        .collect();
    let rate = attempt_rate(&window);
    eprintln!(
        "{} messages after the first second at {rate:.2}/s; busiest second {busiest}",
        window.len()
    );
    assert_rate(rate, f64::from(RATE), "steady pace");
    rig.shutdown().await;
}

/// Healthy → 20/s; half the attempts deferred (a warning rate: 25 %, critical
/// raised out of reach) → 10/s; the sink stops deferring and the rolling window
/// moves past the deferrals (the engine's clock, moved by the test) → 20/s again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_health_warning_halves_the_pace_until_it_clears() {
    let (rig, clock) = Rig::start_with_clock(|c| {
        c.limits.ip_messages_per_second = RATE;
        c.health.min_sends = 20;
        c.health.window_secs = 60;
        c.health.deferral_warning = 0.25;
        c.health.deferral_critical = 0.95;
        // The Reaper counts `sending` time on the engine's clock, which this test
        // moves by 130 s while jobs wait for their slot: not long enough to
        // look stuck.
        c.queue.sending_timeout_ms = 600_000;
    })
    .await;
    let (min_sends, workers) = (
        u64::from(rig.config().health.min_sends),
        rig.config().delivery.connections_per_ip as u64,
    );
    rig.sink
        .set_rules(vec![Rule {
            recipient_pattern: "*@defer.test".into(),
            stage: RuleStage::Rcpt,
            reply: Some("451 4.3.0 temporary failure".into()),
            times: None,
            delay_ms: None,
            drop_connection: false,
        }])
        .unwrap();
    // Every other lead is deferred while the rule stands (the names sort in
    // that order, which is the order the jobs are created and fed in).
    let total = 160u64;
    let leads: Vec<String> = (0..total)
        .map(|i| match i % 2 {
            0 => format!("p{i:03}@defer.test"),
            _ => format!("p{i:03}@ok.test"),
        })
        .collect();
    let scenario = rig
        .campaign_with_leads(&leads.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    scenario.start().await.unwrap();

    // The warning is judged from `min_sends` attempts on; the transactions the
    // workers had begun or were given slots for on the old grid (one each) come
    // before the halved pace shows. Measure from well past that.
    let warned_from = min_sends + 2 * workers + 4;
    let warned_until = warned_from + 30;
    wait_for(
        "attempts during the warning",
        Duration::from_secs(30),
        || async { (rig.sink.stats().transactions_begun >= warned_until).then_some(()) },
    )
    .await;
    let warned: Vec<ReceivedMessage> = by_begin(rig.sink.messages())
        .into_iter()
        .filter(|m| (warned_from..=warned_until).contains(&m.transaction))
        .collect();
    let warned_rate = attempt_rate(&warned);

    // The warning clears: no more deferrals, and the window forgets the old ones.
    rig.sink.set_rules(vec![]).unwrap();
    clock.advance(Duration::from_secs(130));
    let cleared_at = rig.sink.stats().transactions_begun;
    wait_for(
        "every job sent or deferred",
        Duration::from_secs(30),
        || async {
            let counts = rig.job_counts().await;
            let done = counts.get("sent").copied().unwrap_or(0)
                + counts.get("deferred").copied().unwrap_or(0);
            (done as u64 == total).then_some(())
        },
    )
    .await;
    let recovered_from = cleared_at + 2 * workers + 4;
    let recovered: Vec<ReceivedMessage> = by_begin(rig.sink.messages())
        .into_iter()
        .filter(|m| m.transaction >= recovered_from)
        .collect();
    assert!(
        recovered.len() >= 40,
        "too little traffic after the warning ({})",
        recovered.len()
    );
    let recovered_rate = attempt_rate(&recovered);
    eprintln!(
        "warning: transactions {warned_from}..={warned_until} at {warned_rate:.2}/s; \
         cleared at {cleared_at}, {} after {recovered_from} at {recovered_rate:.2}/s",
        recovered.len()
    );
    assert_rate(warned_rate, f64::from(RATE) / 2.0, "during the warning");
    assert_rate(recovered_rate, f64::from(RATE), "after the warning cleared");
    rig.shutdown().await;
}
