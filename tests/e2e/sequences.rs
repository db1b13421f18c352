//! Sequences (issue 18), end to end on a clock the test moves: a campaign's
//! follow-up steps are jobs created when the lead's previous step is *sent*,
//! due `delay_secs` after that send (never before: the Feeder runs on the
//! unmoved clock and nothing of the next step reaches the sink), rendered in
//! the same thread — a follow-up without a subject is `Re: ` + step 1's
//! rendered subject, every follow-up carries `In-Reply-To` (the previous
//! step's Message-ID) and `References` (all earlier steps' Message-IDs, oldest
//! first), the same From — and a follow-up with a subject of its own keeps it.
//! `GET /v1/campaigns/{id}` shows the steps with their per-step counts.
//!
//! The helpers here ([`Sequences`], [`jobs`], the header readers) serve the
//! other `sequences_*` scenarios too: `sequences_stop` (reply, bounce,
//! suppression), `sequences_lifecycle` (import, pause, resume, cancel) and
//! `sequences_scale` (IP allowance, a killed node).

use std::time::Duration;

use penguin_engine::clock::{Clock, ManualClock};
use penguin_engine::sink::ReceivedMessage;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::api::ApiClient;
use crate::support::rig::Rig;
use crate::support::{wait_for, wait_for_showing};

/// The one IP of a [`Sequences`] rig.
const IP: &str = "127.0.0.2";

/// One job of a sequence campaign, as Postgres holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Job {
    pub id: Uuid,
    pub email: String,
    pub step: i32,
    pub status: String,
    pub run_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub message_id: Option<String>,
    pub thread: Option<Vec<String>>,
    pub last_reply: Option<String>,
}

/// Every job of `campaign`, by lead address then step.
pub(crate) async fn jobs(rig: &Rig, campaign: Uuid) -> Vec<Job> {
    rig.env
        .psql(&format!(
            "SELECT j.id, l.email, j.step, j.status, j.run_at, j.updated_at, j.message_id,
                    j.thread, j.last_reply
             FROM send_jobs j JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             WHERE j.campaign_id = '{campaign}' ORDER BY l.email, j.step"
        ))
        .await
        .iter()
        .map(|r| Job {
            id: r.get(0),
            email: r.get(1),
            step: r.get(2),
            status: r.get(3),
            run_at: r.get(4),
            updated_at: r.get(5),
            message_id: r.get(6),
            thread: r.get(7),
            last_reply: r.get(8),
        })
        .collect()
}

/// A campaign body from `hello@seq.test` on `ips` with follow-up `steps`;
/// step 1's subject is `Hi {{first_name}}`.
pub(crate) fn sequence_body(ips: &[Uuid], steps: Value) -> Value {
    json!({
        "name": "sequence", "from": "hello@seq.test", "from_name": "Seq Sender",
        "subject": "Hi {{first_name}}", "text": "Hello {{first_name}}.\n",
        "ip_ids": ips, "steps": steps,
    })
}

/// Leads for `emails`, each with its local part as `first_name`.
pub(crate) fn leads_of(emails: &[&str]) -> Value {
    emails
        .iter()
        .map(|email| json!({ "email": email, "fields": { "first_name": local(email) } }))
        .collect()
}

/// The local part of an address (the leads' `first_name`).
pub(crate) fn local(email: &str) -> &str {
    email.split('@').next().unwrap_or_default()
}

/// A rig on a [`ManualClock`] with one tenant and one warm IP.
pub(crate) struct Sequences {
    pub rig: Rig,
    pub clock: ManualClock,
    pub api: ApiClient,
    pub token: String,
    pub ip: Uuid,
}

impl Sequences {
    pub async fn start() -> Sequences {
        let (rig, clock) = Rig::start_with_clock(|_| {}).await;
        let api = ApiClient::new(&rig.node().api_url());
        let (tenant, token) = api.create_tenant("sequences").await;
        let ip = api.add_ip(tenant, IP).await;
        Sequences {
            rig,
            clock,
            api,
            token,
            ip,
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Moves the clock to `at` (never backwards).
    pub fn set_clock(&self, at: OffsetDateTime) {
        assert!(at >= self.now(), "the clock only moves forward");
        self.clock.set(at);
    }

    /// Creates a campaign with follow-up `steps`, imports `emails`, starts it.
    pub async fn start_campaign(&self, steps: Value, emails: &[&str]) -> Uuid {
        let answer = self
            .api
            .create_campaign_with(&self.token, &sequence_body(&[self.ip], steps))
            .await;
        answer.expect(201);
        let campaign = answer.id();
        self.import(campaign, emails).await;
        assert_eq!(
            self.api.action_ok(&self.token, campaign, "start").await,
            "running"
        );
        campaign
    }

    /// Imports `emails` into `campaign`.
    pub async fn import(&self, campaign: Uuid, emails: &[&str]) {
        let answer = self
            .api
            .add_leads(&self.token, campaign, leads_of(emails))
            .await;
        answer.expect(200);
    }

    /// Waits until exactly `n` jobs of `step` are `status`; returns them by
    /// address. A timeout shows every job of the campaign.
    pub async fn wait_step(&self, campaign: Uuid, step: i32, status: &str, n: usize) -> Vec<Job> {
        wait_for_showing(
            &format!("{n} jobs of step {step} {status}"),
            Duration::from_secs(30),
            || async {
                let all = jobs(&self.rig, campaign).await;
                let those: Vec<Job> = all
                    .iter()
                    .filter(|j| j.step == step && j.status == status)
                    .cloned()
                    .collect();
                if those.len() == n {
                    Ok(those)
                } else {
                    Err(all)
                }
            },
        )
        .await
    }

    /// Waits until the Feeder ran `n` more rounds on the current clock: what
    /// it would claim now has been claimed.
    pub async fn feeder_rounds(&self, n: u64) {
        feeder_rounds(&self.rig, n).await;
    }

    /// What the sink accepted for `email`.
    pub fn received(&self, email: &str) -> Vec<ReceivedMessage> {
        received(&self.rig, email)
    }

    /// Messages the sink accepted in all.
    pub fn accepted(&self) -> u64 {
        self.rig.sink.stats().messages_accepted
    }

    /// `GET /v1/campaigns/{id}`.
    pub async fn campaign(&self, campaign: Uuid) -> Value {
        let answer = self.api.campaign(&self.token, campaign).await;
        answer.expect(200).clone()
    }
}

/// Waits until `rig`'s Feeder ran `n` more rounds.
pub(crate) async fn feeder_rounds(rig: &Rig, n: u64) {
    let rounds = || rig.node().engine().wakeups().0;
    let start = rounds();
    wait_for(
        &format!("{n} feeder rounds"),
        Duration::from_secs(10),
        || async { (rounds() >= start + n).then_some(()) },
    )
    .await;
}

/// What the sink of `rig` accepted for `email`.
pub(crate) fn received(rig: &Rig, email: &str) -> Vec<ReceivedMessage> {
    rig.sink
        .messages()
        .into_iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r == email))
        .collect()
}

/// The latest `run_at` of `jobs`.
pub(crate) fn latest_run_at(jobs: &[Job]) -> OffsetDateTime {
    jobs.iter().map(|j| j.run_at).max().expect("some jobs")
}

/// The header block of a raw message as `(lowercase name, unfolded value)`.
pub(crate) fn headers_of(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().expect("a folded line follows a header");
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    headers
}

/// The value of header `name`; `None` when absent, a panic when repeated.
pub(crate) fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    let values: Vec<&String> = headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .collect();
    assert!(values.len() <= 1, "{name} appears {} times", values.len());
    values.first().map(|v| v.to_string())
}

/// The `<…>` message ids of a header value, without the angle brackets.
pub(crate) fn angle_ids(value: &str) -> Vec<String> {
    value
        .split('<')
        .skip(1)
        .filter_map(|part| part.split_once('>').map(|(id, _)| id.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sequence_threads_each_step_on_the_previous_one_after_its_delay() {
    let seq = Sequences::start().await;
    seq.rig.sink.keep_bodies(true);
    let delays = [600u64, 900, 1200];
    let steps = json!([
        { "delay_secs": delays[0], "text": "Just following up, {{first_name}}.\n" },
        { "delay_secs": delays[1], "text": "One more nudge, {{first_name}}.\n" },
        { "delay_secs": delays[2], "subject": "Last note for {{first_name}}",
          "text": "Bye, {{first_name}}.\n" },
    ]);
    let leads = ["ann@seq1.test", "bob@seq2.test"];
    let campaign = seq.start_campaign(steps, &leads).await;

    seq.wait_step(campaign, 1, "sent", 2).await;
    for (index, delay) in delays.into_iter().enumerate() {
        let step = index as i32 + 2;
        // The follow-up waits in Postgres, due `delay` after its previous step
        // was sent, in the thread of the lead's earlier steps.
        let previous = seq.wait_step(campaign, step - 1, "sent", 2).await;
        let next = seq.wait_step(campaign, step, "pending", 2).await;
        for (before, after) in previous.iter().zip(&next) {
            assert_eq!(after.email, before.email);
            assert_eq!(
                after.run_at,
                before.updated_at + Duration::from_secs(delay),
                "step {step} of {} is due {delay} s after step {} was sent",
                after.email,
                step - 1
            );
            let mut thread = before.thread.clone().unwrap_or_default();
            thread.push(before.message_id.clone().expect("a sent job's Message-ID"));
            assert_eq!(after.thread, Some(thread), "step {step} of {}", after.email);
        }
        // Not before its time: the Feeder ran on a clock a second short of it.
        let sent_so_far = 2 * (step as u64 - 1);
        let due = latest_run_at(&next);
        seq.set_clock(due - Duration::from_secs(1));
        seq.feeder_rounds(2).await;
        assert_eq!(seq.accepted(), sent_so_far, "step {step} went early");
        seq.wait_step(campaign, step, "pending", 2).await;
        seq.set_clock(due);
        seq.wait_step(campaign, step, "sent", 2).await;
    }
    seq.rig.wait_until_quiet().await;
    assert_eq!(seq.accepted(), 8);
    assert_eq!(seq.rig.sink.stats().duplicate_messages, 0);

    // At the sink: one thread per lead.
    let all = jobs(&seq.rig, campaign).await;
    for email in leads {
        let mine: Vec<&Job> = all.iter().filter(|j| j.email == email).collect();
        assert_eq!(
            mine.iter().map(|j| j.step).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let ids: Vec<String> = mine
            .iter()
            .map(|j| j.message_id.clone().expect("sent jobs have a Message-ID"))
            .collect();
        let received = seq.received(email);
        assert_eq!(received.len(), 4, "{email}: one message per step");
        let messages: Vec<Vec<(String, String)>> = ids
            .iter()
            .map(|id| {
                let message = received
                    .iter()
                    .find(|m| m.message_id.as_ref() == Some(id))
                    .unwrap_or_else(|| panic!("{email}: {id} never reached the sink"));
                headers_of(&seq.rig.sink.body(message.seq).expect("the sink kept it"))
            })
            .collect();
        let subject = format!("Hi {}", local(email));
        let threading = |n: usize| {
            let headers = &messages[n];
            (
                header(headers, "subject").expect("a Subject"),
                header(headers, "in-reply-to").map(|v| angle_ids(&v)),
                header(headers, "references").map(|v| angle_ids(&v)),
            )
        };
        assert_eq!(
            threading(0),
            (subject.clone(), None, None),
            "{email} step 1"
        );
        assert_eq!(
            threading(1),
            (
                format!("Re: {subject}"),
                Some(vec![ids[0].clone()]),
                Some(vec![ids[0].clone()])
            ),
            "{email} step 2"
        );
        assert_eq!(
            threading(2),
            (
                format!("Re: {subject}"),
                Some(vec![ids[1].clone()]),
                Some(ids[..2].to_vec())
            ),
            "{email} step 3"
        );
        assert_eq!(
            threading(3),
            (
                format!("Last note for {}", local(email)),
                Some(vec![ids[2].clone()]),
                Some(ids[..3].to_vec())
            ),
            "{email} step 4 keeps its own subject"
        );
        let froms: Vec<Option<String>> = messages.iter().map(|h| header(h, "from")).collect();
        assert!(
            froms[0].is_some() && froms.iter().all(|f| *f == froms[0]),
            "{froms:?}"
        );
        assert!(
            received
                .iter()
                .all(|m| m.mail_from == received[0].mail_from)
        );
        assert!(
            received
                .iter()
                .all(|m| m.source_ip == received[0].source_ip)
        );
    }

    // The campaign shows its steps, counted per step.
    let shown = wait_for_showing(
        "two sent per step in the campaign's steps",
        Duration::from_secs(30),
        || async {
            let shown = seq.campaign(campaign).await;
            let sent: Vec<Value> = shown["steps"]
                .as_array()
                .map(|s| s.iter().map(|s| s["sent"].clone()).collect())
                .unwrap_or_default();
            if sent == [json!(2), json!(2), json!(2), json!(2)] {
                Ok(shown)
            } else {
                Err(shown)
            }
        },
    )
    .await;
    assert_eq!(shown["step_count"], json!(4));
    let steps = shown["steps"].as_array().expect("steps");
    for (index, step) in steps.iter().enumerate() {
        assert_eq!(step["step"], json!(index + 1), "{step}");
        assert_eq!(step["waiting"], json!(0), "{step}");
        assert_eq!(step["replied"], json!(0), "{step}");
    }
    let shown_delays: Vec<&Value> = steps.iter().map(|s| &s["delay_secs"]).collect();
    assert_eq!(
        shown_delays,
        [&json!(0), &json!(600), &json!(900), &json!(1200)]
    );
    seq.rig.shutdown().await;
}
