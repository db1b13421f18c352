//! Follow-up steps in the job ledger (issue 18), against real Postgres: the
//! write that records a step `sent` creates the lead's next step in the same
//! statement — due `delay_secs` after that write, threaded under the sent
//! step's Message-ID — and only then: not after a bounce, not for a stopped or
//! suppressed lead, not in a cancelled campaign, never twice for a replayed
//! outcome. A suppression added later stops the lead and cancels its waiting
//! follow-up (the `suppressions_stop_sequences` trigger).

use penguin_engine::domain::JobStatus;
use penguin_engine::store::ledger::{self, Outcome};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::fencing::{Fixture, fixture};

/// The jobs of the lead of `job`: `(step, status, run_at, thread, last_reply)` by step.
async fn lead_jobs(
    f: &Fixture,
    job: Uuid,
) -> Vec<(
    i32,
    String,
    OffsetDateTime,
    Option<Vec<String>>,
    Option<String>,
)> {
    f.env
        .psql(&format!(
            "SELECT j.step, j.status, j.run_at, j.thread, j.last_reply FROM send_jobs j
             WHERE j.lead_id = (SELECT lead_id FROM send_jobs WHERE id = '{job}')
             ORDER BY j.step"
        ))
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

fn outcome(f: &Fixture, job: Uuid, to: JobStatus, epoch: i64, claim: Uuid) -> Outcome {
    Outcome {
        to,
        message_id: Some(format!("{job}@fenced.test")),
        ..f.sent(job, epoch, claim)
    }
}

#[tokio::test]
async fn a_sent_step_creates_the_next_once_and_only_for_a_live_lead() {
    let f = fixture(6).await;
    let pg = &f.env.pg;
    // Three steps: step 2 two minutes after step 1, step 3 one minute after step 2.
    f.env
        .psql(&format!(
            "WITH c AS (UPDATE campaigns SET step_count = 3 WHERE id = '{c}')
             INSERT INTO campaign_steps (tenant_id, campaign_id, step, delay_secs, text_body)
             VALUES ('{t}', '{c}', 2, 120, 'two'), ('{t}', '{c}', 3, 60, 'three')",
            t = f.tenant,
            c = f.campaign
        ))
        .await;
    let [sent, bounced, stopped, suppressed, cancelled, replayed] = f.jobs[..] else {
        unreachable!()
    };
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let epoch = f.take("node-a", now).await.epoch;
    let claim = ledger::claim_sending(
        pg,
        f.tenant,
        epoch,
        &f.jobs.iter().map(|j| (*j, f.ip)).collect::<Vec<_>>(),
        &[f.campaign],
        now,
        None,
    )
    .await
    .unwrap();
    assert_eq!(claim.claimed.len(), 6);
    assert!(
        claim
            .claimed
            .iter()
            .all(|c| c.step == 1 && c.thread.is_empty())
    );
    f.env
        .psql(&format!(
            "UPDATE leads SET stopped_at = now(), stop_reason = 'replied'
             WHERE id = (SELECT lead_id FROM send_jobs WHERE id = '{stopped}')"
        ))
        .await;
    f.env
        .psql(&format!(
            "INSERT INTO suppressions (tenant_id, email, reason)
             SELECT tenant_id, email, 'manual' FROM leads
             WHERE id = (SELECT lead_id FROM send_jobs WHERE id = '{suppressed}')"
        ))
        .await;

    let batch = [
        outcome(&f, sent, JobStatus::Sent, epoch, claim.claim),
        outcome(&f, bounced, JobStatus::Bounced, epoch, claim.claim),
        outcome(&f, stopped, JobStatus::Sent, epoch, claim.claim),
        outcome(&f, suppressed, JobStatus::Sent, epoch, claim.claim),
        outcome(&f, replayed, JobStatus::Sent, epoch, claim.claim),
    ];
    let applied = ledger::record_outcomes(pg, &batch, now).await.unwrap();
    assert_eq!(applied.written, 5);
    assert_eq!(applied.follow_up_due, Some(now + Duration::seconds(120)));

    let jobs = lead_jobs(&f, sent).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(jobs[1].0, 2);
    assert_eq!(jobs[1].1, "pending");
    assert_eq!(
        jobs[1].2,
        now + Duration::seconds(120),
        "due after its delay"
    );
    assert_eq!(jobs[1].3, Some(vec![format!("{sent}@fenced.test")]));
    for (job, why) in [
        (bounced, "a bounce"),
        (stopped, "a stopped lead"),
        (suppressed, "a suppressed lead"),
    ] {
        assert_eq!(
            lead_jobs(&f, job).await.len(),
            1,
            "no follow-up after {why}"
        );
    }

    // The same outcome again (a retried batch): refused, nothing doubled.
    let again = ledger::record_outcomes(pg, &batch[4..], now).await.unwrap();
    assert_eq!((again.written, again.follow_up_due), (0, None));
    assert_eq!(lead_jobs(&f, replayed).await.len(), 2);

    // Step 2 claimed and sent: step 3 follows under both Message-IDs.
    let step2: Uuid = f
        .env
        .psql(&format!(
            "UPDATE send_jobs SET status = 'queued' WHERE step = 2
               AND lead_id = (SELECT lead_id FROM send_jobs WHERE id = '{sent}')
             RETURNING id"
        ))
        .await[0]
        .get(0);
    let later = now + Duration::seconds(120);
    let claim2 = ledger::claim_sending(
        pg,
        f.tenant,
        epoch,
        &[(step2, f.ip)],
        &[f.campaign],
        later,
        None,
    )
    .await
    .unwrap();
    assert_eq!(claim2.claimed.len(), 1);
    assert_eq!(claim2.claimed[0].step, 2);
    assert_eq!(
        claim2.claimed[0].thread,
        vec![format!("{sent}@fenced.test")]
    );
    let o2 = outcome(&f, step2, JobStatus::Sent, epoch, claim2.claim);
    let applied = ledger::record_outcomes(pg, &[o2], later).await.unwrap();
    assert_eq!(applied.follow_up_due, Some(later + Duration::seconds(60)));
    let jobs = lead_jobs(&f, sent).await;
    assert_eq!(jobs.len(), 3);
    assert_eq!(
        jobs[2].3,
        Some(vec![
            format!("{sent}@fenced.test"),
            format!("{step2}@fenced.test")
        ])
    );

    // A cancelled campaign gets no follow-up.
    f.env
        .psql(&format!(
            "UPDATE campaigns SET status = 'cancelled' WHERE id = '{}'",
            f.campaign
        ))
        .await;
    let o = outcome(&f, cancelled, JobStatus::Sent, epoch, claim.claim);
    let applied = ledger::record_outcomes(pg, &[o], now).await.unwrap();
    assert_eq!((applied.written, applied.follow_up_due), (1, None));
    assert_eq!(lead_jobs(&f, cancelled).await.len(), 1);
}

#[tokio::test]
async fn a_later_suppression_stops_the_lead_and_cancels_its_waiting_steps() {
    let f = fixture(2).await;
    let pg = &f.env.pg;
    f.env
        .psql(&format!(
            "WITH c AS (UPDATE campaigns SET step_count = 2 WHERE id = '{c}')
             INSERT INTO campaign_steps (tenant_id, campaign_id, step, delay_secs, text_body)
             VALUES ('{t}', '{c}', 2, 60, 'two')",
            t = f.tenant,
            c = f.campaign
        ))
        .await;
    let now = OffsetDateTime::now_utc();
    let epoch = f.take("node-a", now).await.epoch;
    let pairs: Vec<(Uuid, Uuid)> = f.jobs.iter().map(|j| (*j, f.ip)).collect();
    let claim = ledger::claim_sending(pg, f.tenant, epoch, &pairs, &[f.campaign], now, None)
        .await
        .unwrap();
    let batch: Vec<Outcome> = f
        .jobs
        .iter()
        .map(|j| outcome(&f, *j, JobStatus::Sent, epoch, claim.claim))
        .collect();
    ledger::record_outcomes(pg, &batch, now).await.unwrap();
    let [gone, kept] = f.jobs[..] else {
        unreachable!()
    };
    f.env
        .psql(&format!(
            "INSERT INTO suppressions (tenant_id, email, reason)
             SELECT tenant_id, email, 'unsubscribe' FROM leads
             WHERE id = (SELECT lead_id FROM send_jobs WHERE id = '{gone}')"
        ))
        .await;
    let jobs = lead_jobs(&f, gone).await;
    assert_eq!(jobs[1].1, "cancelled");
    assert_eq!(jobs[1].4.as_deref(), Some("sequence stopped: unsubscribe"));
    assert_eq!(jobs[0].1, "sent", "a step already sent stays as it was");
    let stop: Vec<(Option<String>,)> = f
        .env
        .psql(&format!(
            "SELECT stop_reason FROM leads WHERE id = (SELECT lead_id FROM send_jobs WHERE id = '{gone}')"
        ))
        .await
        .iter()
        .map(|r| (r.get(0),))
        .collect();
    assert_eq!(stop, vec![(Some("unsubscribe".to_string()),)]);
    assert_eq!(
        lead_jobs(&f, kept).await[1].1,
        "pending",
        "another lead goes on"
    );
}

#[tokio::test]
async fn a_stopped_lead_is_never_claimed_nor_retried() {
    let f = fixture(3).await;
    let pg = &f.env.pg;
    let [queued, in_flight, other] = f.jobs[..] else {
        unreachable!()
    };
    let now = OffsetDateTime::now_utc();
    let epoch = f.take("node-a", now).await.epoch;
    let claim = ledger::claim_sending(
        pg,
        f.tenant,
        epoch,
        &[(in_flight, f.ip)],
        &[f.campaign],
        now,
        None,
    )
    .await
    .unwrap();
    assert_eq!(claim.claimed.len(), 1);
    // A reply stops both leads: one job still queued in Redis, one in SMTP.
    f.env
        .psql(&format!(
            "UPDATE leads SET stopped_at = now(), stop_reason = 'replied'
             WHERE id IN (SELECT lead_id FROM send_jobs WHERE id IN ('{queued}', '{in_flight}'))"
        ))
        .await;
    let late = ledger::claim_sending(
        pg,
        f.tenant,
        epoch,
        &[(queued, f.ip), (other, f.ip)],
        &[f.campaign],
        now,
        None,
    )
    .await
    .unwrap();
    assert_eq!(late.claimed.len(), 1, "only the live lead's job: {late:?}");
    assert_eq!(late.stopped, 1);
    assert_eq!(lead_jobs(&f, queued).await[0].1, "cancelled");
    assert_eq!(
        lead_jobs(&f, queued).await[0].4.as_deref(),
        Some("sequence stopped: replied")
    );
    // The attempt under way is deferred (a 4xx): it ends cancelled, never retried.
    let deferred = Outcome {
        run_at: Some(now + Duration::minutes(5)),
        ..outcome(&f, in_flight, JobStatus::Deferred, epoch, claim.claim)
    };
    ledger::record_outcomes(pg, &[deferred], now).await.unwrap();
    assert_eq!(lead_jobs(&f, in_flight).await[0].1, "cancelled");
}
