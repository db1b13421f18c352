//! A slow MX never gets a message twice, and a late outcome never lands on a
//! newer claim. With `queue.sending_timeout_ms` short and the Reaper running, an
//! MX that stalls each recipient's first RCPT longer than the timeout sees every
//! lead delivered exactly once: the attempt deadline (`[delivery]
//! attempt_timeout_ms`, validated below the sending timeout with a margin) ends
//! the stalled attempt — deferred, its outcome written under its own claim —
//! before the Reaper could return the job, and the retry delivers it. Against
//! real Postgres, the store refuses an outcome whose claim id is not the job's
//! current one even under the same epoch: the Reaper returned the job, it was
//! claimed again, and then the first attempt ended.

use std::time::Duration;

use penguin_engine::sink::{Rule, RuleStage};
use penguin_engine::store::ledger;
use time::OffsetDateTime;

use crate::support::rig::Rig;

/// Each recipient's first RCPT is answered only after this long: past both the
/// attempt deadline and the sending timeout.
const STALL_MS: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalling_mx_gets_every_lead_exactly_once() {
    let rig = Rig::start(|c| {
        c.queue.sending_timeout_ms = 3_000;
        c.delivery.attempt_timeout_ms = 1_500;
        c.delivery.retry.base_delay_secs = 1;
        c.delivery.retry.max_delay_secs = 1;
        c.delivery.idle_timeout_ms = 300;
    })
    .await;
    assert!(
        rig.config().queue.reaper_interval_ms <= 200,
        "the Reaper runs"
    );
    rig.sink
        .set_rules(vec![Rule {
            recipient_pattern: "*".into(),
            stage: RuleStage::Rcpt,
            reply: None,
            times: Some(1),
            delay_ms: Some(STALL_MS),
            drop_connection: false,
        }])
        .unwrap();
    let leads: Vec<String> = (0..6).map(|n| format!("slow{n}@slow.test")).collect();
    let leads: Vec<&str> = leads.iter().map(String::as_str).collect();
    let scenario = rig.campaign_with_leads(&leads).await;
    scenario.start().await.unwrap();
    rig.wait_until_done(&scenario, Duration::from_secs(60))
        .await;
    // Stalled sessions answer after STALL_MS: a first attempt still running by
    // then would deliver a second copy. Wait until every session is closed (idle
    // ones after 300 ms), or a copy too many arrived.
    crate::support::wait_for(
        "every session closed, or a second copy",
        Duration::from_secs(30),
        || async {
            let stats = rig.sink.stats();
            (stats.open_connections == 0 || stats.messages_accepted > leads.len() as u64)
                .then_some(())
        },
    )
    .await;

    let stats = rig.sink.stats();
    assert_eq!(
        (stats.messages_accepted, stats.duplicate_messages),
        (leads.len() as u64, 0),
        "every lead delivered exactly once"
    );
    assert!(
        rig.sink.message_ids_seen_more_than_once().is_empty(),
        "no Message-ID twice"
    );
    let rows = rig
        .env
        .psql("SELECT status, attempts, coalesce(last_reply, ''), claim IS NOT NULL FROM send_jobs")
        .await;
    assert_eq!(rows.len(), leads.len());
    for row in &rows {
        let (status, attempts, reply, claimed): (String, i32, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(status, "sent", "{reply}");
        assert!(claimed);
        assert!(
            reply.starts_with("250"),
            "the last outcome is the retry's: {reply}"
        );
        assert_eq!(
            attempts, 2,
            "the stalled attempt ended by its deadline, then the retry sent"
        );
    }
    crate::support::wait_for(
        "one sent and one deferred event per job",
        Duration::from_secs(10),
        || async {
            let rows = rig
                .env
                .psql(
                    "SELECT count(*) FILTER (WHERE kind = 'sent'),
                        count(*) FILTER (WHERE kind = 'deferred'
                                           AND reply = 'attempt deadline passed at rcpt_to'),
                        count(*)
                 FROM delivery_events",
                )
                .await;
            let (sent, deferred, all): (i64, i64, i64) =
                (rows[0].get(0), rows[0].get(1), rows[0].get(2));
            let n = leads.len() as i64;
            (sent == n && deferred == n && all == 2 * n).then_some(())
        },
    )
    .await;
    rig.shutdown().await;
}

/// The store's half, step by step: same node, same epoch, a reclaim after the
/// Reaper — only the current claim's outcome is written.
#[tokio::test]
async fn a_late_outcome_of_a_reclaimed_job_changes_nothing() {
    let f = crate::fencing::fixture(1).await;
    let pg = &f.env.pg;
    let job = f.jobs[0];
    let now = OffsetDateTime::now_utc();
    let epoch = f.take("node-a", now).await.epoch;

    let first = f.claim(epoch, job).await;
    assert_eq!(first.claimed.len(), 1);
    // The attempt outlives queue.sending_timeout_ms: the Reaper returns the job,
    // the Feeder queues it again and it is claimed again, by the same node.
    let later = now + Duration::from_secs(3_600);
    assert_eq!(
        ledger::release_stale_sending(pg, &[epoch], later, later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        ledger::claim_due(pg, f.tenant, epoch, 10, later)
            .await
            .unwrap()
            .len(),
        1
    );
    let second = f.claim(epoch, job).await;
    assert_eq!(second.claimed.len(), 1);
    assert_ne!(first.claim, second.claim, "every claim has its own id");

    // The first attempt ends now: its outcome is refused, the job still belongs
    // to the second claim, and an abandoned-job release of the first claim does
    // nothing either.
    let late = ledger::record_outcomes(pg, &[f.sent(job, epoch, first.claim)], later)
        .await
        .unwrap();
    assert_eq!(late.written, 0, "a late outcome of an old claim");
    assert_eq!(f.status(job).await, ("sending".into(), epoch));
    assert_eq!(
        ledger::release_sending(pg, f.tenant, epoch, &[(job, first.claim)], later)
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(f.status(job).await.0, "sending");

    // The second attempt's outcome is written.
    let current = ledger::record_outcomes(pg, &[f.sent(job, epoch, second.claim)], later)
        .await
        .unwrap();
    assert_eq!(current.written, 1);
    assert_eq!(f.status(job).await.0, "sent");
}
