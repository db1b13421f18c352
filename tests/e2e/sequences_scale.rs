//! Follow-ups go through the same machinery as first steps (issue 18):
//!
//! - The IP allowance: on an IP allowed 2 messages an hour (moved clock),
//!   step 1 and step 2 of three leads together never pass 2 in any hour at
//!   the sink, even with follow-ups due; the rest go in the next hours.
//! - A node killed (SIGKILL) while step 1 and then step 2 sends are under way,
//!   and restarted, loses and doubles no step: every (lead, step) is one job,
//!   `sent`, and reached the sink under exactly one Message-ID (a follow-up is
//!   created by the write that records its previous step, so a crash can
//!   neither lose nor repeat it). A Message-ID may arrive again only for a
//!   transaction under way at a kill (as in `nodes_killed`): at most once more
//!   per kill it was under way at.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::campaign_daily_cap::{feeder_rounds, sent, warm_ip};
use crate::sequences::{jobs, leads_of, sequence_body};
use crate::support::api::ApiClient;
use crate::support::cluster::{
    job_of, jobs_received, node_config, sending_jobs, shares, slow_smtp,
};
use crate::support::limits::LimitsRig;
use crate::support::node_process::NodeProcess;
use crate::support::rig::Rig;
use crate::support::{wait_for, wait_for_showing};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_ups_share_the_ips_hourly_allowance_with_first_steps() {
    // 48 a day over 24 active hours: 2 an hour.
    let rig = LimitsRig::start(|c| c.limits.warm_daily_volume = 48).await;
    let ip = warm_ip(&rig).await;
    let midnight = rig.now();
    let at = |secs: u64| midnight + Duration::from_secs(secs);
    rig.set_clock(at(1));
    let steps = json!([{ "delay_secs": 60, "text": "Following up, {{first_name}}.\n" }]);
    let answer = rig
        .api
        .create_campaign_with(&rig.token, &sequence_body(&[ip], steps))
        .await;
    answer.expect(201);
    let campaign = answer.id();
    let emails = ["ann@cap1.test", "bob@cap2.test", "cat@cap3.test"];
    rig.api
        .add_leads(&rig.token, campaign, leads_of(&emails))
        .await
        .expect(200);
    rig.api.action_ok(&rig.token, campaign, "start").await;

    // Hour 0: two first steps; their follow-ups come due within the hour and
    // wait, like the third lead's first step, for the IP's next hour.
    rig.settle(&sent(2), "hour 0").await;
    wait_for_showing(
        "two follow-ups waiting",
        Duration::from_secs(30),
        || async {
            let all = jobs(&rig.rig, campaign).await;
            let waiting = all.iter().filter(|j| j.step == 2 && j.status == "pending");
            if waiting.count() == 2 {
                Ok(())
            } else {
                Err(all)
            }
        },
    )
    .await;
    rig.set_clock(at(600));
    feeder_rounds(&rig, 2).await;
    rig.settle(&sent(2), "hour 0 with follow-ups due").await;

    rig.set_clock(at(3600 + 1));
    rig.settle(&sent(4), "hour 1").await;
    rig.set_clock(at(3600 + 600));
    feeder_rounds(&rig, 2).await;
    rig.settle(&sent(4), "hour 1 with the rest due").await;

    // Hour 2: the last two (a first step sent now has its follow-up due
    // within the hour).
    rig.set_clock(at(7200 + 1));
    rig.rig.wait_until_quiet().await;
    rig.set_clock(at(7200 + 600));
    rig.settle(&sent(6), "hour 2").await;

    let all = jobs(&rig.rig, campaign).await;
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|j| j.status == "sent"), "{all:#?}");
    for email in emails {
        let received = crate::sequences::received(&rig.rig, email);
        assert_eq!(received.len(), 2, "{email}: both steps once");
    }
    let hours: Vec<i32> = rig
        .rig
        .env
        .psql("SELECT reserved FROM ip_hourly_usage ORDER BY day, hour")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(hours.iter().all(|n| *n <= 2), "per hour: {hours:?}");
    rig.rig.shutdown().await;
}

/// Jobs of `campaign` per `(step, status)`.
async fn step_counts(rig: &Rig, campaign: Uuid) -> BTreeMap<(i32, String), usize> {
    let mut counts = BTreeMap::new();
    for job in jobs(rig, campaign).await {
        *counts.entry((job.step, job.status)).or_default() += 1;
    }
    counts
}

/// Kills node-b once the sink holds `at_least` messages and restarts it at
/// once; returns the jobs whose transaction may have been under way at the
/// kill (every job of `tenant` still `sending` right after it, whichever node
/// claimed it) and that the sink had received: the only ones that may arrive
/// twice.
async fn kill_at(
    rig: &Rig,
    node: &mut Option<NodeProcess>,
    (tenant, campaign): (Uuid, Uuid),
    at_least: u64,
) -> HashSet<String> {
    wait_for_showing(
        &format!("{at_least} messages at the sink"),
        Duration::from_secs(30),
        || async {
            if rig.sink.stats().messages_accepted >= at_least {
                Ok(())
            } else {
                Err(step_counts(rig, campaign).await)
            }
        },
    )
    .await;
    let victim = node.take().expect("a running node");
    victim.signal("KILL");
    // Dropping waits until the process is gone: nothing it does can follow.
    drop(victim);
    let unrecorded = sending_jobs(&rig.env, &[tenant.to_string()]).await;
    *node = Some(NodeProcess::start(&node_config(rig, "node-b")).await);
    let received = jobs_received(rig.sink.messages(), |_| true);
    unrecorded.intersection(&received).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_between_steps_loses_and_doubles_no_step() {
    const LEADS: u64 = 30;
    let rig = Rig::start(|c| {
        c.node.id = "node-a".into();
        c.node.heartbeat_ms = 200;
        c.node.lease_ttl_ms = 3_000;
        // The node processes run on the wall clock: step 2 is due a second
        // after step 1.
        c.sequences.min_delay_secs = 1;
    })
    .await;
    slow_smtp(&rig, 20);
    let api = ApiClient::new(&rig.node().api_url());
    let scenario = rig
        .scenario_on(
            vec![vec!["127.0.0.2"]],
            0,
            &["node-a", "node-b"],
            &["node-b"],
        )
        .await;
    let tenant = &scenario.tenants[0];
    let mut node_b = Some(NodeProcess::start(&node_config(&rig, "node-b")).await);
    wait_for(
        "node-b owns the tenant",
        Duration::from_secs(30),
        || async { (shares(&api).await.get("node-b") == Some(&1)).then_some(()) },
    )
    .await;

    let mut body = sequence_body(
        &[tenant.ips[0].0],
        json!([{ "delay_secs": 1, "text": "Again.\n" }]),
    );
    body["from"] = json!("hello@e2e-1.test");
    let answer = api.create_campaign_with(&tenant.token, &body).await;
    answer.expect(201);
    let campaign = answer.id();
    let emails: Vec<String> = (0..LEADS)
        .map(|i| format!("lead{i}@kill{}.test", i % 5))
        .collect();
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    api.add_leads(&tenant.token, campaign, leads_of(&emails))
        .await
        .expect(200);
    api.action_ok(&tenant.token, campaign, "start").await;

    // Killed while step 1 goes out, and again while step 2 does.
    // A job under way at both kills (resent after the first, still in SMTP
    // at the second) may arrive three times.
    let kills = [
        kill_at(&rig, &mut node_b, (tenant.id, campaign), LEADS / 3).await,
        kill_at(&rig, &mut node_b, (tenant.id, campaign), LEADS + LEADS / 2).await,
    ];

    let all = wait_for_showing(
        "every step of every lead sent",
        Duration::from_secs(60),
        || async {
            let all = jobs(&rig, campaign).await;
            let sent = all.iter().filter(|j| j.status == "sent").count() as u64;
            if sent == 2 * LEADS {
                Ok(all)
            } else {
                Err(step_counts(&rig, campaign).await)
            }
        },
    )
    .await;
    rig.wait_until_quiet().await;
    assert_eq!(
        jobs(&rig, campaign).await,
        all,
        "jobs changed after the end"
    );
    assert_eq!(all.len() as u64, 2 * LEADS, "one job per (lead, step)");

    // Per (lead, step): one job, its Message-ID at the sink, no other.
    let by_job: HashMap<String, (&str, i32)> = all
        .iter()
        .map(|j| (j.id.to_string(), (j.email.as_str(), j.step)))
        .collect();
    let mut ids: HashMap<(&str, i32), HashSet<String>> = HashMap::new();
    let messages = rig.sink.messages();
    for message in &messages {
        let id = message.message_id.clone().expect("a Message-ID");
        let (email, step) = by_job
            .get(job_of(&id))
            .copied()
            .unwrap_or_else(|| panic!("{id} at the sink is no job of the campaign"));
        assert_eq!(message.rcpt_to, [email.to_string()], "{id}");
        ids.entry((email, step)).or_default().insert(id);
    }
    for job in &all {
        let key = (job.email.as_str(), job.step);
        let expected = HashSet::from([job.message_id.clone().expect("sent")]);
        assert_eq!(ids.get(&key), Some(&expected), "{key:?} at the sink");
        if job.step == 2 {
            let first = all
                .iter()
                .find(|j| j.email == job.email && j.step == 1)
                .expect("step 1");
            assert_eq!(job.thread, first.message_id.clone().map(|id| vec![id]));
        }
    }
    let copies = messages.len() as u64 - 2 * LEADS;
    let under_way: usize = kills.iter().map(HashSet::len).sum();
    assert!(
        copies as usize <= under_way,
        "{copies} copies, {under_way} transactions under way at the kills"
    );
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for message in &messages {
        *seen
            .entry(job_of(message.message_id.as_deref().unwrap_or_default()))
            .or_default() += 1;
    }
    for (job, n) in seen {
        let kills_under_way = kills.iter().filter(|k| k.contains(job)).count();
        assert!(
            n <= 1 + kills_under_way,
            "job {job} arrived {n} times, under way at {kills_under_way} kills"
        );
    }
    eprintln!("2 kills: {copies} copies of {under_way} under way");
    drop(node_b);
    rig.shutdown().await;
}
