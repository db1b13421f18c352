//! A tenant taken over with every `queued` job in Redis' in-flight set (popped
//! by the previous owner, which stopped before claiming them) and nothing in
//! its lists or due: the takeover gives it a Tenant actor, so the Reaper
//! re-queues the expired in-flight jobs and they are sent, once each. Before,
//! only the Feeder woke such a tenant, and it starts a Tenant actor only for
//! lists that hold something or jobs that are due: the jobs stayed `queued`
//! for ever (seen as 50 jobs of one tenant stuck in the `partitions` scenario).
//! The second scenario proves the Reaper's safety net for the same state
//! reached without a takeover.

use std::time::Duration;

use penguin::scenario::Scenario;
use penguin_engine::domain::Band;
use penguin_engine::payload::{JobPayload, JobV1};
use penguin_engine::queue::RedisQueue;
use serde_json::json;
use uuid::Uuid;

use crate::support::admin_token;
use crate::support::api::ApiClient;
use crate::support::rig::Rig;

const LEADS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_the_previous_owner_popped_are_sent_after_a_takeover() {
    let mut rig = Rig::start(|config| config.node.id = "node-a".into()).await;
    let (scenario, _api) = started_on_a_paused_ip(&rig).await;
    let (tenant, campaign) = (scenario.tenants[0].id, scenario.tenants[0].campaign);
    let ip = scenario.tenants[0].ips[0].0;
    rig.stop_node().await;

    // What a previous owner leaves when it stops between popping and claiming:
    // every job `queued`, every payload in flight with its deadline passed,
    // the tenant's Redis state live (and the IP active again).
    rig.env
        .psql(&format!(
            "UPDATE smtp_ips SET status = 'active', status_reason = NULL, paused_until = NULL
             WHERE id = '{ip}'"
        ))
        .await;
    strand_in_flight(&rig, tenant, campaign, "0 seconds").await;

    rig.restart_node().await;
    rig.wait_for_jobs("sent", LEADS as i64, Duration::from_secs(30))
        .await;
    rig.wait_until_quiet().await;
    assert_eq!(rig.check_delivered(&scenario).await, 0, "a job sent twice");
    assert_eq!(rig.sink.stats().messages_accepted, LEADS as u64);
    assert!(
        rig.sink.message_ids_seen_more_than_once().is_empty(),
        "a job sent twice"
    );
    rig.shutdown().await;
}

/// The Reaper's safety net, on a running node: a tenant whose jobs sit
/// `queued` in Redis' in-flight set long past their deadline while it has no
/// Tenant actor (a path other than a takeover leaving that state) is woken by
/// the Reaper's partition scan, and the jobs are sent once each. Without the
/// net nothing wakes it: no job is due and its lists are empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_queued_without_a_tenant_actor_are_found_by_the_reaper() {
    let rig = Rig::start(|config| config.queue.tenant_idle_ms = 300).await;
    let (scenario, api) = started_on_a_paused_ip(&rig).await;
    let (tenant, campaign) = (scenario.tenants[0].id, scenario.tenants[0].campaign);
    let ip = scenario.tenants[0].ips[0].0;
    // The jobs not due for a day, then the IP resumed (with its notification):
    // whatever that wakes finds nothing to do, and the tenant's actor stops.
    rig.env
        .psql(&format!(
            "UPDATE send_jobs SET run_at = now() + interval '1 day' WHERE tenant_id = '{tenant}'"
        ))
        .await;
    api.post(
        &format!("/v1/ips/{ip}/resume"),
        Some(admin_token()),
        &json!({}),
    )
    .await
    .expect(200);
    crate::support::wait_for(
        "the tenant's actor stopped",
        Duration::from_secs(20),
        || async { (!rig.node().engine().active_tenants().contains(&tenant)).then_some(()) },
    )
    .await;
    // Two Feeder rounds later the Feeder holds nothing of the tenant either:
    // a round drops a tenant it fed nothing and whose lists are empty.
    let (rounds, _) = rig.node().engine().wakeups();
    crate::support::wait_for("two feeder rounds", Duration::from_secs(20), || async {
        (rig.node().engine().wakeups().0 >= rounds + 2).then_some(())
    })
    .await;

    // Every job `queued` a minute ago and popped into the in-flight set, its
    // deadline passed: no job is due, the lists are empty, nothing notifies.
    strand_in_flight(&rig, tenant, campaign, "1 minute").await;

    rig.wait_for_jobs("sent", LEADS as i64, Duration::from_secs(30))
        .await;
    rig.wait_until_quiet().await;
    assert_eq!(rig.check_delivered(&scenario).await, 0, "a job sent twice");
    assert_eq!(rig.sink.stats().messages_accepted, LEADS as u64);
    rig.shutdown().await;
}

/// Leaves the campaign's jobs as a tenant's owner does when it stops between
/// popping and claiming: every job `queued` (`ago` ago, an SQL interval),
/// every payload popped into the in-flight set with its deadline passed, the
/// lists empty and the tenant's Redis state live.
async fn strand_in_flight(rig: &Rig, tenant: Uuid, campaign: Uuid, ago: &str) {
    let rows = rig
        .env
        .psql(&format!(
            "UPDATE send_jobs j SET status = 'queued', queued_at = now() - interval '{ago}',
                                    updated_at = now() - interval '{ago}'
             FROM leads l
             WHERE j.tenant_id = '{tenant}' AND j.campaign_id = '{campaign}'
               AND l.tenant_id = j.tenant_id AND l.id = j.lead_id
             RETURNING j.id, j.priority, l.email, l.fields::text"
        ))
        .await;
    assert_eq!(rows.len(), LEADS);
    let payloads: Vec<(Band, Vec<u8>)> = rows
        .iter()
        .map(|row| {
            let priority: i32 = row.get(1);
            let payload = JobPayload::V1(JobV1 {
                job_id: row.get::<_, Uuid>(0),
                tenant_id: tenant,
                campaign_id: campaign,
                priority,
                recipient: row.get(2),
                fields_json: row.get(3),
                attempts: 0,
                due_ms: penguin_engine::clock::unix_ms(),
            });
            (Band::of(priority), payload.encode().expect("encodes"))
        })
        .collect();
    let queue = RedisQueue::new(rig.env.redis.clone());
    queue.push(tenant, &payloads).await.expect("push");
    let past = penguin_engine::clock::unix_ms() - 1_000;
    let (popped, dropped) = queue.pop(tenant, LEADS * 2, past).await.expect("pop");
    assert_eq!((popped.len(), dropped), (LEADS, 0));
    queue.mark_live(tenant).await.expect("mark live");
    assert_eq!(queue.depths(&[tenant]).await.expect("depths"), [0]);
}

/// One tenant's campaign of [`LEADS`] started on a paused IP: its jobs are
/// created `pending`, none is fed.
async fn started_on_a_paused_ip(rig: &Rig) -> (Scenario, ApiClient) {
    let scenario = rig.scenario(vec![vec!["127.0.0.2"]], LEADS).await;
    let ip = scenario.tenants[0].ips[0].0;
    let api = ApiClient::new(&rig.node().api_url());
    api.post(
        &format!("/v1/ips/{ip}/pause"),
        Some(admin_token()),
        &json!({}),
    )
    .await
    .expect(200);
    scenario.start().await.expect("the campaign starts");
    rig.wait_for_jobs("pending", LEADS as i64, Duration::from_secs(10))
        .await;
    (scenario, api)
}
