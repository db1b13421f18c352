//! A sequence campaign's lifecycle acts on every step (issue 18), on a moved
//! clock: leads imported into a running sequence campaign start at step 1 in a
//! thread of their own; a paused campaign's due follow-ups stay `pending` in
//! Postgres and none reaches the sink; resume sends them; cancel cancels every
//! waiting step, so no job is left pending, queued or deferred and nothing
//! more is sent once the later steps come due.

use serde_json::json;

use crate::sequences::{Sequences, jobs, latest_run_at};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_pause_resume_and_cancel_act_on_every_step() {
    let seq = Sequences::start().await;
    let steps = json!([
        { "delay_secs": 600, "text": "Following up.\n" },
        { "delay_secs": 600, "text": "Once more.\n" },
    ]);
    let campaign = seq
        .start_campaign(steps, &["ann@seq1.test", "bob@seq2.test"])
        .await;
    seq.wait_step(campaign, 2, "pending", 2).await;

    // Leads imported into the running campaign start at step 1, threadless.
    let late = ["cat@seq3.test", "dan@seq4.test"];
    seq.import(campaign, &late).await;
    let firsts = seq.wait_step(campaign, 1, "sent", 4).await;
    seq.wait_step(campaign, 2, "pending", 4).await;
    for email in late {
        let job = firsts.iter().find(|j| j.email == email).expect("step 1");
        assert_eq!(job.thread, None, "{email}");
        let received = seq.received(email);
        assert_eq!(received.len(), 1, "{email}");
        assert_eq!(received[0].message_id, job.message_id, "{email}");
    }

    // Paused: due follow-ups stay in Postgres.
    assert_eq!(
        seq.api.action_ok(&seq.token, campaign, "pause").await,
        "paused"
    );
    let seconds = seq.wait_step(campaign, 2, "pending", 4).await;
    seq.set_clock(latest_run_at(&seconds));
    seq.feeder_rounds(2).await;
    seq.rig.wait_until_quiet().await;
    assert_eq!(seq.accepted(), 4, "a paused campaign sent a follow-up");
    seq.wait_step(campaign, 2, "pending", 4).await;

    // Resumed: they go, and the next step waits.
    assert_eq!(
        seq.api.action_ok(&seq.token, campaign, "resume").await,
        "running"
    );
    seq.wait_step(campaign, 2, "sent", 4).await;
    let thirds = seq.wait_step(campaign, 3, "pending", 4).await;
    assert_eq!(seq.accepted(), 8);

    // Cancelled: every waiting step ends cancelled, none is left to run.
    assert_eq!(
        seq.api.action_ok(&seq.token, campaign, "cancel").await,
        "cancelled"
    );
    let cancelled = seq.wait_step(campaign, 3, "cancelled", 4).await;
    assert_eq!(
        cancelled
            .iter()
            .map(|j| j.email.as_str())
            .collect::<Vec<_>>(),
        [
            "ann@seq1.test",
            "bob@seq2.test",
            "cat@seq3.test",
            "dan@seq4.test"
        ]
    );
    let left: i64 = seq
        .rig
        .env
        .psql(&format!(
            "SELECT count(*) FROM send_jobs WHERE campaign_id = '{campaign}'
             AND status IN ('pending', 'queued', 'deferred', 'sending')"
        ))
        .await[0]
        .get(0);
    assert_eq!(left, 0, "jobs left waiting after cancel");
    seq.set_clock(latest_run_at(&thirds));
    seq.feeder_rounds(2).await;
    seq.rig.wait_until_quiet().await;
    assert_eq!(seq.accepted(), 8, "a cancelled step was sent");
    assert_eq!(jobs(&seq.rig, campaign).await.len(), 12);
    seq.rig.shutdown().await;
}
