//! What stops a lead's sequence (issue 18), end to end on a moved clock: a
//! reply posted through `POST /v1/replies` between steps cancels that lead's
//! waiting follow-up (`sequence stopped: replied`), answers how many steps
//! will now never be sent, is idempotent, records exactly one `replied` event
//! counted on the replied step, and the lead gets nothing more while the
//! others go on; an auto-reply is recorded and stops nothing. A hard bounce on
//! step 1 creates no step 2 at all; a suppression added through the API
//! between steps cancels the waiting step 2 (`sequence stopped: manual`). A
//! stopped lead never reaches the sink again — the sink would accept it: the
//! bounce rule refuses the first RCPT only.

use std::time::Duration;

use penguin_engine::sink::{Rule, RuleStage};
use serde_json::{Value, json};

use crate::sequences::{Job, Sequences, jobs, latest_run_at};
use crate::support::wait_for_showing;

/// The one job of `email` at `step` among `jobs`.
fn job_of<'a>(jobs: &'a [Job], email: &str, step: i32) -> &'a Job {
    jobs.iter()
        .find(|j| j.email == email && j.step == step)
        .unwrap_or_else(|| panic!("no step {step} job of {email}: {jobs:#?}"))
}

/// `(stopped_at IS NOT NULL, stop_reason, replied_at IS NOT NULL)` of the lead `email`.
async fn lead_stop(seq: &Sequences, email: &str) -> (bool, Option<String>, bool) {
    let rows = seq
        .rig
        .env
        .psql(&format!(
            "SELECT stopped_at IS NOT NULL, stop_reason, replied_at IS NOT NULL
             FROM leads WHERE email = '{email}'"
        ))
        .await;
    (rows[0].get(0), rows[0].get(1), rows[0].get(2))
}

/// Delivery events of `kind` as `job_id` texts.
async fn events(seq: &Sequences, kind: &str) -> Vec<String> {
    seq.rig
        .env
        .psql(&format!(
            "SELECT job_id::text FROM delivery_events WHERE kind = '{kind}' ORDER BY id"
        ))
        .await
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn reply(seq: &Sequences, body: Value) -> Value {
    let answer = seq.api.post("/v1/replies", Some(&seq.token), &body).await;
    answer.expect(200).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_between_steps_stops_the_rest_of_that_leads_sequence() {
    let seq = Sequences::start().await;
    let steps = json!([
        { "delay_secs": 600, "text": "Following up.\n" },
        { "delay_secs": 600, "text": "Last one.\n" },
    ]);
    let (ann, bob, cat) = ("ann@seq1.test", "bob@seq2.test", "cat@seq3.test");
    let campaign = seq.start_campaign(steps, &[ann, bob, cat]).await;
    let firsts = seq.wait_step(campaign, 1, "sent", 3).await;
    let seconds = seq.wait_step(campaign, 2, "pending", 3).await;
    let ann_first = job_of(&firsts, ann, 1);
    let ann_id = ann_first.message_id.clone().expect("a Message-ID");

    // Ann replies to step 1, quoted as a mail client quotes it.
    let answer = reply(&seq, json!({ "message_id": format!("<{ann_id}>") })).await;
    assert_eq!(answer["stopped_steps"], json!(2), "{answer}");
    assert_eq!(answer["recorded"], json!(true), "{answer}");
    assert_eq!(answer["campaign_id"], json!(campaign.to_string()));
    assert_eq!(answer["job_id"], json!(ann_first.id.to_string()));
    // Again, bare: the same answer, nothing recorded.
    let again = reply(&seq, json!({ "message_id": ann_id })).await;
    assert_eq!(again["stopped_steps"], json!(2), "{again}");
    assert_eq!(again["recorded"], json!(false), "{again}");
    // Bob's auto-reply is recorded and stops nothing.
    let bob_id = job_of(&firsts, bob, 1).message_id.clone().unwrap();
    let auto = reply(&seq, json!({ "message_id": bob_id, "auto": true })).await;
    assert_eq!(auto["stopped_steps"], json!(0), "{auto}");
    // No such message of the tenant.
    let unknown = json!({ "message_id": "nobody@nowhere.test" });
    seq.api
        .post("/v1/replies", Some(&seq.token), &unknown)
        .await
        .assert_error(404, "not_found");

    let now = jobs(&seq.rig, campaign).await;
    let ann_second = job_of(&now, ann, 2);
    assert_eq!(ann_second.status, "cancelled");
    assert_eq!(
        ann_second.last_reply.as_deref(),
        Some("sequence stopped: replied")
    );
    assert_eq!(job_of(&now, bob, 2).status, "pending");
    assert_eq!(job_of(&now, cat, 2).status, "pending");
    assert_eq!(
        lead_stop(&seq, ann).await,
        (true, Some("replied".into()), true)
    );
    assert_eq!(lead_stop(&seq, bob).await, (false, None, false));

    // The others go on through steps 2 and 3; Ann gets nothing more.
    seq.set_clock(latest_run_at(&seconds));
    seq.wait_step(campaign, 2, "sent", 2).await;
    let thirds = seq.wait_step(campaign, 3, "pending", 2).await;
    seq.set_clock(latest_run_at(&thirds));
    seq.wait_step(campaign, 3, "sent", 2).await;
    seq.rig.wait_until_quiet().await;
    assert_eq!(seq.received(ann).len(), 1, "Ann got a step after replying");
    assert_eq!(seq.received(bob).len(), 3);
    assert_eq!(seq.received(cat).len(), 3);
    let ann_jobs: Vec<(i32, String)> = jobs(&seq.rig, campaign)
        .await
        .into_iter()
        .filter(|j| j.email == ann)
        .map(|j| (j.step, j.status))
        .collect();
    assert_eq!(
        ann_jobs,
        [(1, "sent".to_string()), (2, "cancelled".to_string())]
    );

    // One `replied` event, on the replied job, counted on its step.
    assert_eq!(events(&seq, "replied").await, [ann_first.id.to_string()]);
    assert_eq!(events(&seq, "auto_replied").await.len(), 1);
    wait_for_showing(
        "one reply counted on step 1",
        Duration::from_secs(30),
        || async {
            let shown = seq.campaign(campaign).await;
            let replied: Vec<Value> = shown["steps"]
                .as_array()
                .map(|s| s.iter().map(|s| s["replied"].clone()).collect())
                .unwrap_or_default();
            if replied == [json!(1), json!(0), json!(0)] {
                Ok(())
            } else {
                Err(shown)
            }
        },
    )
    .await;
    seq.rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hard_bounce_or_a_later_suppression_stops_the_next_step() {
    let seq = Sequences::start().await;
    let gone = "gone@bounce.test";
    // Refused once: a step 2 sent to it would be accepted and show.
    let bounce = Rule {
        recipient_pattern: gone.into(),
        stage: RuleStage::Rcpt,
        reply: Some(format!("550 5.1.1 <{gone}>: user unknown")),
        times: Some(1),
        delay_ms: None,
        drop_connection: false,
    };
    seq.rig.sink.set_rules(vec![bounce]).expect("a valid rule");
    let (ann, bob, cat) = ("ann@seq1.test", "bob@seq2.test", "cat@seq3.test");
    let steps = json!([{ "delay_secs": 600, "text": "Following up.\n" }]);
    let campaign = seq.start_campaign(steps, &[ann, bob, cat, gone]).await;
    seq.wait_step(campaign, 1, "sent", 3).await;
    seq.wait_step(campaign, 1, "bounced", 1).await;
    let seconds = seq.wait_step(campaign, 2, "pending", 3).await;
    assert!(
        seconds.iter().all(|j| j.email != gone),
        "a bounced lead got a step 2: {seconds:#?}"
    );
    wait_for_showing(
        "the bounced lead stopped",
        Duration::from_secs(30),
        || async {
            let stop = lead_stop(&seq, gone).await;
            if stop == (true, Some("hard_bounce".into()), false) {
                Ok(())
            } else {
                Err(stop)
            }
        },
    )
    .await;

    // Bob is suppressed by hand between the steps.
    seq.api.add_suppressions(&seq.token, &[bob], "manual").await;
    let now = jobs(&seq.rig, campaign).await;
    let bob_second = job_of(&now, bob, 2);
    assert_eq!(bob_second.status, "cancelled");
    assert_eq!(
        bob_second.last_reply.as_deref(),
        Some("sequence stopped: manual")
    );
    assert_eq!(
        lead_stop(&seq, bob).await,
        (true, Some("manual".into()), false)
    );

    seq.set_clock(latest_run_at(&seconds));
    let sent = seq.wait_step(campaign, 2, "sent", 2).await;
    assert_eq!(
        sent.iter().map(|j| j.email.as_str()).collect::<Vec<_>>(),
        [ann, cat]
    );
    seq.rig.wait_until_quiet().await;
    assert_eq!(seq.received(gone).len(), 0, "the bounced lead was sent to");
    assert_eq!(seq.received(bob).len(), 1, "the suppressed lead got step 2");
    assert_eq!(seq.received(ann).len(), 2);
    assert_eq!(seq.received(cat).len(), 2);
    let all = jobs(&seq.rig, campaign).await;
    let steps_of = |email: &str| -> Vec<(i32, String)> {
        all.iter()
            .filter(|j| j.email == email)
            .map(|j| (j.step, j.status.clone()))
            .collect()
    };
    assert_eq!(steps_of(gone), [(1, "bounced".to_string())]);
    assert_eq!(
        steps_of(bob),
        [(1, "sent".to_string()), (2, "cancelled".to_string())]
    );
    seq.rig.shutdown().await;
}
