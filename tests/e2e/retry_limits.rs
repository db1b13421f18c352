//! The retry schedule's limits and the server's say in it (README "Outcomes"),
//! on the engine's clock moved by the test: a deferred job is retried for at most
//! `[delivery.retry] max_age_secs` after its first attempt, then ends `failed`
//! with a delivery event naming the maximum age — whether its next retry would
//! land past the age, or it only comes due (a pause, a full allowance) after it,
//! in which case no SMTP attempt happens at all; and a "retry in N seconds" hint
//! in a 4xx reply sets the retry time instead of the backoff, the retry coming
//! when the clock reaches it and not before. (The maximum number of attempts is
//! `delivery_outcomes::a_job_deferred_past_the_maximum_attempts_fails_with_the_reason`.)

use std::time::Duration;

use penguin_engine::sink::{Rule, RuleStage};
use time::OffsetDateTime;

use crate::support::rig::Rig;
use crate::support::wait_for;

/// The maximum age in these scenarios: the first retry (300 s ± 10 %) and the
/// second (600 s ± 10 % later, at most 990 s after the first attempt) fit in it,
/// the third (1 200 s ± 10 % later) does not.
const MAX_AGE_SECS: u64 = 1000;

fn defer_rule(pattern: &str, reply: &str, times: Option<u32>) -> Rule {
    Rule {
        recipient_pattern: pattern.into(),
        stage: RuleStage::Rcpt,
        reply: Some(reply.into()),
        times,
        delay_ms: None,
        drop_connection: false,
    }
}

/// One job's schedule as Postgres holds it.
struct Job {
    status: String,
    attempts: i32,
    run_at: OffsetDateTime,
    /// `None` until the job's first claim.
    first_attempt_at: Option<OffsetDateTime>,
    last_reply: String,
}

async fn job(rig: &Rig, email: &str) -> Job {
    let rows = rig
        .env
        .psql(&format!(
            "SELECT j.status, j.attempts, j.run_at, j.first_attempt_at, coalesce(j.last_reply, '')
             FROM send_jobs j JOIN leads l ON l.id = j.lead_id WHERE l.email = '{email}'"
        ))
        .await;
    let row = &rows[0];
    Job {
        status: row.get(0),
        attempts: row.get(1),
        run_at: row.get(2),
        first_attempt_at: row.get(3),
        last_reply: row.get(4),
    }
}

/// Waits until the job is in `status` after `attempts` claims.
async fn wait_for_job(rig: &Rig, email: &str, status: &str, attempts: i32) -> Job {
    wait_for(
        &format!("{email} {status} after {attempts} attempts"),
        Duration::from_secs(30),
        || async {
            let job = job(rig, email).await;
            (job.status == status && job.attempts == attempts).then_some(job)
        },
    )
    .await
}

/// Seconds from the job's first attempt to its retry.
fn delay(job: &Job) -> f64 {
    (job.run_at - job.first_attempt_at.expect("attempted")).as_seconds_f64()
}

/// Waits for the `failed` delivery event of the only job and returns its reply.
async fn failed_event(rig: &Rig) -> String {
    wait_for("the failed event", Duration::from_secs(10), || async {
        let rows = rig
            .env
            .psql("SELECT coalesce(reply, '') FROM delivery_events WHERE kind = 'failed'")
            .await;
        rows.first().map(|r| r.get::<_, String>(0))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_that_would_land_past_the_maximum_age_fails_instead() {
    let (rig, clock) =
        Rig::start_with_clock(|c| c.delivery.retry.max_age_secs = MAX_AGE_SECS).await;
    rig.sink
        .set_rules(vec![defer_rule("*", "451 4.3.0 temporary failure", None)])
        .unwrap();
    let email = "old@age.test";
    let scenario = rig.campaign_with_leads(&[email]).await;
    scenario.start().await.unwrap();

    let first = wait_for_job(&rig, email, "deferred", 1).await;
    assert!(
        (270.0..=330.0).contains(&delay(&first)),
        "{}",
        delay(&first)
    );
    clock.set(first.run_at);
    let second = wait_for_job(&rig, email, "deferred", 2).await;
    assert!(
        delay(&second) <= MAX_AGE_SECS as f64,
        "the second retry fits in the maximum age: {}",
        delay(&second)
    );
    clock.set(second.run_at);

    let failed = wait_for_job(&rig, email, "failed", 3).await;
    assert!(
        failed.last_reply.contains("451 4.3.0")
            && failed.last_reply.contains("maximum message age"),
        "{}",
        failed.last_reply
    );
    let reply = failed_event(&rig).await;
    assert!(reply.contains("maximum message age"), "event: {reply}");
    assert_eq!(rig.sink.stats().rejected_4xx, 3, "three SMTP attempts");
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_due_only_after_the_maximum_age_fails_without_another_attempt() {
    let (rig, clock) =
        Rig::start_with_clock(|c| c.delivery.retry.max_age_secs = MAX_AGE_SECS).await;
    rig.sink
        .set_rules(vec![defer_rule("*", "451 4.3.0 temporary failure", None)])
        .unwrap();
    let email = "late@age.test";
    let scenario = rig.campaign_with_leads(&[email]).await;
    scenario.start().await.unwrap();
    let first = wait_for_job(&rig, email, "deferred", 1).await;

    // Nobody ran the retry in time (say the campaign was paused): when the job
    // is picked up, it is older than the maximum age.
    clock.set(first.first_attempt_at.unwrap() + Duration::from_secs(MAX_AGE_SECS + 1));
    let failed = wait_for(
        "the overdue job to be picked up and settle",
        Duration::from_secs(30),
        || async {
            let job = job(&rig, email).await;
            let settled = job.status != "queued" && job.status != "sending";
            (settled && (job.status != "deferred" || job.attempts > 1)).then_some(job)
        },
    )
    .await;
    assert_eq!(
        rig.sink.stats().rejected_4xx,
        1,
        "no SMTP attempt past the maximum age"
    );
    assert_eq!(failed.status, "failed", "{}", failed.last_reply);
    assert!(
        failed.last_reply.contains("maximum message age"),
        "{}",
        failed.last_reply
    );
    let reply = failed_event(&rig).await;
    assert!(reply.contains("maximum message age"), "event: {reply}");
    rig.shutdown().await;
}

/// The hint (40 s) is far from the backoff (300 s ± 10 %); a second job with a
/// shorter hint (20 s) proves the feeder ran after the clock moved to just before
/// the first one's retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_in_n_seconds_hint_sets_the_retry_time() {
    let (rig, clock) = Rig::start_with_clock(|_| {}).await;
    let (target, witness) = ("t@hint.test", "w@hint.test");
    rig.sink
        .set_rules(vec![
            defer_rule(
                target,
                "450 4.2.0 Greylisted, please retry in 40 seconds",
                Some(1),
            ),
            defer_rule(witness, "451 4.7.1 Greylisted for 20 seconds", Some(1)),
        ])
        .unwrap();
    let scenario = rig.campaign_with_leads(&[target, witness]).await;
    scenario.start().await.unwrap();
    let deferred = wait_for_job(&rig, target, "deferred", 1).await;
    let early = wait_for_job(&rig, witness, "deferred", 1).await;

    // The clock stood still during the attempt: the first attempt is the attempt
    // time. A hint is never shortened; its jitter adds at most 10 %.
    assert!(
        (40.0..=44.0).contains(&delay(&deferred)),
        "retry {} s after the attempt, the reply asked for 40",
        delay(&deferred)
    );
    assert!((20.0..=22.0).contains(&delay(&early)), "{}", delay(&early));

    clock.set(deferred.run_at - Duration::from_secs(1));
    wait_for_job(&rig, witness, "sent", 2).await;
    // Stable over several feeder passes (`queue.feed_idle_ms` apart).
    let mut stable = 0;
    wait_for(
        "the early retry to stay away",
        Duration::from_secs(10),
        || {
            let rig = &rig;
            stable += 1;
            let polls = stable;
            async move {
                let job = job(rig, target).await;
                assert_eq!(
                    (job.status.as_str(), job.attempts),
                    ("deferred", 1),
                    "retried before its time"
                );
                (polls >= 12).then_some(())
            }
        },
    )
    .await;
    assert_eq!(rig.sink.stats().rejected_4xx, 2);
    assert_eq!(rig.sink.stats().messages_accepted, 1, "only the witness");

    clock.set(deferred.run_at);
    wait_for_job(&rig, target, "sent", 2).await;
    let stats = rig.sink.stats();
    assert_eq!((stats.messages_accepted, stats.duplicate_messages), (2, 0));
    rig.shutdown().await;
}
