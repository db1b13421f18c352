//! Unit tests of [`super::judge`]: what a fault run is judged by, from made-up
//! sink records and job rows, so each rule of the module doc is pinned by a case
//! where it decides the verdict (lost, waiting, none due, copies under way or not,
//! unexpected messages, per-IP caps, recovery), and the text and JSON forms.

use std::collections::HashSet;
use std::net::IpAddr;

use penguin_engine::sink::ReceivedMessage;
use uuid::Uuid;

use super::*;

/// Unix ms when the made-up campaigns started (an hour boundary: 2026-12-06 10:00 UTC).
const START: i64 = 1_796_551_200_000;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn job(status: &str, waits: bool) -> JobRow {
    JobRow {
        id: Uuid::new_v4(),
        status: status.into(),
        waits,
    }
}

/// A message for `job` from `source`, in transaction `transaction`, begun
/// `after_ms` after the start.
fn message(job: Uuid, source: IpAddr, transaction: u64, after_ms: i64) -> ReceivedMessage {
    ReceivedMessage {
        seq: transaction,
        connection_id: 1,
        source_ip: source,
        message_id: Some(format!("{job}@example.test")),
        mail_from: "sender@example.test".into(),
        rcpt_to: vec![format!("{job}@rcpt.test")],
        size: 1_000,
        tls: false,
        transaction,
        begun_at_ms: START + after_ms,
    }
}

/// Each job's message once, from 127.0.0.2, one transaction each, 10 ms apart.
fn once_each(jobs: &[JobRow]) -> Vec<ReceivedMessage> {
    jobs.iter()
        .enumerate()
        .map(|(i, j)| message(j.id, ip(2), i as u64 + 1, i as i64 * 10))
        .collect()
}

fn inputs<'a>(
    jobs: &'a [JobRow],
    messages: &'a [ReceivedMessage],
    faults: Vec<FaultRecord>,
) -> Inputs<'a> {
    Inputs {
        nodes: 3,
        tenants: 2,
        jobs,
        messages,
        faults,
        ip_hourly_cap: 0,
        ip_daily_volume: 0,
        elapsed_ms: 12_345,
        started_ms: START,
    }
}

/// A kill of `node` that hit while `transactions` had begun, with `unrecorded`
/// left `sending`, on `ips`, from `from_ms` to `to_ms` after the start.
fn kill(
    transactions: u64,
    unrecorded: &[Uuid],
    ips: &[IpAddr],
    from_ms: i64,
    to_ms: i64,
) -> FaultRecord {
    FaultRecord {
        kind: FaultKind::Kill,
        node: Some("n1".into()),
        at_ms: from_ms as u64,
        lasted_ms: (to_ms - from_ms) as u64,
        progress: transactions,
        under_way: 0,
        recovery_ms: None,
        detail: FaultDetail {
            started_ms: START + from_ms,
            ended_ms: START + to_ms,
            transactions,
            unrecorded: unrecorded.iter().copied().collect(),
            ips: ips.iter().copied().collect::<HashSet<_>>(),
        },
    }
}

#[test]
fn a_message_id_names_its_job() {
    let id = Uuid::new_v4();
    assert_eq!(job_of(&format!("{id}@example.test")), Some(id));
    assert_eq!(job_of(&id.to_string()), Some(id));
    assert_eq!(job_of("not-a-uuid@example.test"), None);
    assert_eq!(job_of(""), None);
}

#[test]
fn every_job_received_once_passes() {
    let jobs = [job("sent", false), job("sent", false), job("sent", false)];
    let messages = once_each(&jobs);
    let report = judge(inputs(&jobs, &messages, vec![]));
    assert_eq!(report.jobs, 3);
    assert_eq!(report.delivered, 3);
    assert_eq!(
        (report.lost, report.copies, report.copies_allowed),
        (0, 0, 0)
    );
    assert_eq!((report.waiting, report.unexpected), (0, 0));
    assert_eq!(report.states, BTreeMap::from([("sent".to_string(), 3)]));
    assert_eq!(report.failures, Vec::<String>::new());
    assert_eq!(
        (report.nodes, report.tenants, report.elapsed_ms),
        (3, 2, 12_345)
    );
}

#[test]
fn a_job_recorded_sent_whose_message_never_arrived_is_lost() {
    let jobs = [job("sent", false), job("sent", false)];
    let messages = once_each(&jobs[..1]);
    let report = judge(inputs(&jobs, &messages, vec![]));
    assert_eq!((report.delivered, report.lost), (1, 1));
    assert_eq!(report.failures, ["1 jobs lost"]);
}

#[test]
fn jobs_with_no_message_due_are_not_lost() {
    let jobs = [
        job("bounced", false),
        job("failed", false),
        job("suppressed", false),
        job("cancelled", false),
    ];
    let report = judge(inputs(&jobs, &[], vec![]));
    assert_eq!((report.lost, report.waiting, report.delivered), (0, 0, 0));
    assert_eq!(report.failures, Vec::<String>::new());
}

#[test]
fn a_job_that_waits_is_not_lost_but_one_that_should_have_gone_is() {
    let jobs = [
        job("pending", true),
        job("queued", true),
        job("deferred", true),
        // Due, nothing holds it back, never sent: lost.
        job("pending", false),
        // Waits, but a node sent it before the run ended: delivered, not waiting.
        job("pending", true),
    ];
    let messages = once_each(&jobs[4..]);
    let report = judge(inputs(&jobs, &messages, vec![]));
    assert_eq!(report.waiting, 3);
    assert_eq!(report.lost, 1);
    assert_eq!(report.delivered, 1);
    assert_eq!(report.failures, ["1 jobs lost"]);
}

#[test]
fn a_terminal_state_does_not_wait_even_when_its_ips_are_capped() {
    // `waits` only counts for jobs that could still be sent.
    let jobs = [job("sent", true)];
    let report = judge(inputs(&jobs, &[], vec![]));
    assert_eq!((report.waiting, report.lost), (0, 1));
}

#[test]
fn a_copy_under_way_at_a_kill_is_allowed() {
    let jobs = [job("sent", false), job("sent", false)];
    let (a, b) = (jobs[0].id, jobs[1].id);
    // `a` began before the kill (transaction 1 ≤ 2) and was left `sending`;
    // its copy came after the restart.
    let messages = [
        message(a, ip(2), 1, 0),
        message(b, ip(2), 2, 10),
        message(a, ip(2), 3, 900),
    ];
    let faults = vec![kill(2, &[a], &[ip(2)], 100, 500)];
    let report = judge(inputs(&jobs, &messages, faults));
    assert_eq!((report.copies, report.copies_allowed), (1, 1));
    assert_eq!(report.faults[0].under_way, 1);
    assert!(report.unexplained_copies.is_empty());
    assert_eq!(report.delivered, 2);
    assert_eq!(report.failures, Vec::<String>::new());
}

#[test]
fn a_copy_no_fault_explains_fails_and_is_listed() {
    let jobs = [job("sent", false), job("sent", false)];
    let (a, b) = (jobs[0].id, jobs[1].id);
    let messages = [
        message(a, ip(2), 1, 0),
        message(b, ip(3), 2, 10),
        message(b, ip(3), 3, 20),
        message(b, ip(2), 4, 30),
    ];
    let report = judge(inputs(&jobs, &messages, vec![]));
    assert_eq!((report.copies, report.copies_allowed), (2, 0));
    assert_eq!(report.delivered, 2, "a copied job is delivered once");
    assert_eq!(report.lost, 0);
    assert_eq!(report.unexplained_copies.len(), 1);
    assert_eq!(report.unexplained_copies[0].job, b);
    assert_eq!(
        report.unexplained_copies[0].copies,
        [(ip(3), 10), (ip(3), 20), (ip(2), 30)]
    );
    assert_eq!(
        report.failures,
        [
            "2 copies of messages that were not under way on a node hit by a fault",
            "2 copies, more than the 0 transactions under way at the faults",
        ]
    );
}

#[test]
fn a_job_left_sending_whose_transaction_began_after_the_fault_was_not_under_way() {
    let jobs = [job("sent", false)];
    let a = jobs[0].id;
    // Both transactions began after the fault's mark (2 and 3 > 1).
    let messages = [message(a, ip(2), 2, 600), message(a, ip(2), 3, 700)];
    let faults = vec![kill(1, &[a], &[ip(2)], 100, 500)];
    let report = judge(inputs(&jobs, &messages, faults));
    assert_eq!(report.faults[0].under_way, 0);
    assert_eq!((report.copies, report.copies_allowed), (1, 0));
    assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
}

#[test]
fn a_job_under_way_but_recorded_before_the_fault_was_not_under_way() {
    // Its transaction began before the kill, but its outcome was written: it is
    // not among the jobs left `sending`, so no copy of it is allowed.
    let jobs = [job("sent", false), job("sent", false)];
    let (a, b) = (jobs[0].id, jobs[1].id);
    let messages = [message(a, ip(2), 1, 0), message(a, ip(2), 2, 800)];
    let faults = vec![kill(1, &[b], &[ip(2)], 100, 500)];
    let report = judge(inputs(&jobs, &messages, faults));
    assert_eq!(report.faults[0].under_way, 0);
    assert_eq!(report.copies, 1);
    assert_eq!(report.lost, 1, "b never arrived");
    assert!(!report.failures.is_empty());
}

#[test]
fn messages_naming_no_job_of_the_run_are_unexpected() {
    let jobs = [job("sent", false)];
    let mut messages = once_each(&jobs);
    messages.push(message(Uuid::new_v4(), ip(2), 9, 50));
    let mut no_id = message(jobs[0].id, ip(2), 10, 60);
    no_id.message_id = None;
    messages.push(no_id);
    let report = judge(inputs(&jobs, &messages, vec![]));
    assert_eq!(report.unexpected, 2);
    assert_eq!((report.delivered, report.copies), (1, 0));
    assert_eq!(report.failures, ["2 messages name no job of the run"]);
}

#[test]
fn messages_beyond_the_hourly_cap_of_an_ip_overshoot() {
    let jobs: Vec<JobRow> = (0..6).map(|_| job("sent", false)).collect();
    // 127.0.0.2: three in the first hour, one in the next; 127.0.0.3: two.
    let messages = [
        message(jobs[0].id, ip(2), 1, 0),
        message(jobs[1].id, ip(2), 2, 1_000),
        message(jobs[2].id, ip(2), 3, 3_599_999),
        message(jobs[3].id, ip(2), 4, 3_600_000),
        message(jobs[4].id, ip(3), 5, 10),
        message(jobs[5].id, ip(3), 6, 20),
    ];
    let mut at_cap = inputs(&jobs, &messages, vec![]);
    at_cap.ip_hourly_cap = 3;
    let report = judge(at_cap);
    assert_eq!((report.most_per_ip_hour, report.cap_overshoot), (3, 0));
    assert_eq!(report.most_per_ip_day, 4);

    let mut over = inputs(&jobs, &messages, vec![]);
    over.ip_hourly_cap = 2;
    let report = judge(over);
    assert_eq!(report.cap_overshoot, 1);
    assert_eq!(report.failures, ["per-IP caps exceeded by 1 messages"]);

    let mut no_cap = inputs(&jobs, &messages, vec![]);
    no_cap.ip_hourly_cap = 0;
    no_cap.ip_daily_volume = 0;
    assert_eq!(judge(no_cap).cap_overshoot, 0, "0 means no cap");
}

#[test]
fn messages_beyond_the_daily_volume_of_an_ip_overshoot() {
    let jobs: Vec<JobRow> = (0..3).map(|_| job("sent", false)).collect();
    let messages: Vec<ReceivedMessage> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| message(j.id, ip(2), i as u64 + 1, i as i64 * 3_600_000))
        .collect();
    let mut run = inputs(&jobs, &messages, vec![]);
    run.ip_hourly_cap = 1;
    run.ip_daily_volume = 2;
    let report = judge(run);
    assert_eq!(report.most_per_ip_hour, 1);
    assert_eq!(report.most_per_ip_day, 3);
    assert_eq!(report.cap_overshoot, 1);
}

#[test]
fn recovery_runs_until_the_first_transaction_of_a_hit_ip_after_the_fault() {
    let jobs: Vec<JobRow> = (0..4).map(|_| job("sent", false)).collect();
    let messages = [
        message(jobs[0].id, ip(2), 1, 0),
        // During the fault, and from an IP it did not hit after it: not recovery.
        message(jobs[1].id, ip(2), 2, 300),
        message(jobs[2].id, ip(3), 3, 600),
        message(jobs[3].id, ip(2), 4, 1_700),
    ];
    let faults = vec![
        kill(1, &[], &[ip(2)], 200, 500),
        // Nothing from 127.0.0.4 after it.
        kill(4, &[], &[ip(4)], 2_000, 2_100),
    ];
    let report = judge(inputs(&jobs, &messages, faults));
    assert_eq!(report.faults[0].recovery_ms, Some(1_500));
    assert_eq!(report.faults[1].recovery_ms, None);
}

#[test]
fn jobs_still_sending_fail_the_run() {
    let jobs = [job("sending", false)];
    let messages = once_each(&jobs);
    let report = judge(inputs(&jobs, &messages, vec![]));
    assert_eq!(report.lost, 0);
    assert_eq!(report.failures, ["1 jobs still sending"]);
}

#[test]
fn the_text_report_says_every_count_and_the_verdict() {
    let jobs = [job("sent", false), job("pending", true)];
    let a = jobs[0].id;
    let messages = [message(a, ip(2), 1, 0), message(a, ip(2), 2, 1_600)];
    let mut faults = vec![kill(1, &[a], &[ip(2)], 100, 400)];
    faults.push(FaultRecord {
        kind: FaultKind::RedisFlush,
        node: None,
        ..kill(2, &[], &[ip(9)], 2_000, 2_050)
    });
    let mut run = inputs(&jobs, &messages, faults);
    run.ip_hourly_cap = 250;
    let text = judge(run).text();
    assert_eq!(
        text,
        "jobs 2 (pending 1, sent 1), delivered 1, waiting 1, lost 0, copies 1 (allowed 1), unexpected 0\n\
         most per IP and hour 2 (cap 250), per IP and day 2 (volume none), overshoot 0\n  \
         kill n1: 1 under way, recovered in 1.5 s\n  \
         redis-flush: 0 under way, recovered in - (nothing left to send)\n\
         took 12.3 s\n\
         PASSED\n"
    );
    let jobs = [job("sent", false)];
    let failed = judge(inputs(&jobs, &[], vec![])).text();
    assert!(failed.ends_with("FAILED: 1 jobs lost\n"), "{failed}");
}

#[test]
fn the_json_report_names_faults_by_kind_and_keeps_the_detail_out() {
    let jobs = [job("sent", false)];
    let messages = once_each(&jobs);
    let faults = vec![FaultRecord {
        kind: FaultKind::PostgresRestart,
        node: None,
        ..kill(1, &[], &[ip(2)], 100, 400)
    }];
    let json = serde_json::to_value(judge(inputs(&jobs, &messages, faults))).unwrap();
    assert_eq!(json["lost"], 0);
    assert_eq!(json["copies"], 0);
    assert_eq!(json["delivered"], 1);
    assert_eq!(json["failures"], serde_json::json!([]));
    let fault = &json["faults"][0];
    assert_eq!(fault["kind"], "postgres-restart");
    assert_eq!(fault["node"], serde_json::Value::Null);
    assert_eq!(fault["lasted_ms"], 300);
    assert!(fault.get("detail").is_none(), "{fault}");
}
