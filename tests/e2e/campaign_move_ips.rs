//! Moving a campaign's IPs and retiring an IP (issue 17, item 7). A campaign
//! sends from IP A; mid-run it is moved to IP B (`PATCH /v1/campaigns/{id}`).
//! Every lead is sent exactly once; once B sent its first message A sends at
//! most what it already held (its credit: connections plus backlog); the rest
//! goes out on B. Then A, listed by no campaign that can send, is retired
//! (`DELETE /v1/ips/{id}`): it leaves the lists, cannot be paused or named by a
//! campaign, stays readable by id, and its address can be registered again; B,
//! still listed, cannot be retired. A completed campaign cannot be moved.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::admin_token;
use crate::support::api::{ApiClient, campaign_body};
use crate::support::rig::Rig;
use crate::support::wait_for;

const A: &str = "127.0.0.2";
const B: &str = "127.0.0.3";
const LEADS: usize = 400;
const CONNECTIONS: usize = 2;
const BACKLOG: usize = 4;

fn sent_from(rig: &Rig, ip: &str) -> u64 {
    let ip: IpAddr = ip.parse().unwrap();
    rig.sink
        .stats()
        .per_source_ip
        .get(&ip)
        .copied()
        .unwrap_or(0)
}

fn listed(answer: &Value) -> Vec<String> {
    answer["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip["address"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_campaign_moves_to_another_ip_mid_run_and_sends_each_lead_once() {
    let rig = Rig::start(|c| {
        c.limits.ip_messages_per_second = 40;
        c.delivery.connections_per_ip = CONNECTIONS;
        c.delivery.ip_backlog = BACKLOG;
    })
    .await;
    let api = ApiClient::new(&rig.node().api_url());
    let (tenant, token) = api.create_tenant("movers").await;
    let ip_a = api.add_ip(tenant, A).await;
    let ip_b = api.add_ip(tenant, B).await;
    let campaign = api.create_campaign(&token, &[ip_a]).await;
    let leads: Vec<Value> = (0..LEADS)
        .map(|i| json!({ "email": format!("lead{i}@move{}.test", i % 5), "fields": { "first_name": "Pat" } }))
        .collect();
    api.add_leads(&token, campaign, Value::Array(leads))
        .await
        .expect(200);
    api.action_ok(&token, campaign, "start").await;
    wait_for("60 messages from A", Duration::from_secs(60), || async {
        (sent_from(&rig, A) >= 60).then_some(())
    })
    .await;

    let path = format!("/v1/campaigns/{campaign}");
    let moved = api
        .patch(&path, Some(&token), &json!({ "ip_ids": [ip_b] }))
        .await;
    assert_eq!(moved.expect(200)["ip_ids"], json!([ip_b]));
    wait_for("B's first message", Duration::from_secs(30), || async {
        (sent_from(&rig, B) >= 1).then_some(())
    })
    .await;
    let a_at_switch = sent_from(&rig, A);
    wait_for(
        "the campaign completed",
        Duration::from_secs(90),
        || async {
            let answer = api.campaign(&token, campaign).await;
            (answer.body["status"] == "completed").then_some(())
        },
    )
    .await;
    rig.wait_until_quiet().await;
    let stats = rig.sink.stats();
    assert_eq!(stats.messages_accepted, LEADS as u64);
    assert_eq!(stats.duplicate_messages, 0);
    let a = sent_from(&rig, A);
    assert!(
        a <= a_at_switch + (CONNECTIONS + BACKLOG) as u64,
        "A sent {a}: more than it held when B took over ({a_at_switch} + {})",
        CONNECTIONS + BACKLOG
    );
    assert_eq!(a + sent_from(&rig, B), LEADS as u64);
    let sent = rig
        .env
        .psql(&format!(
            "SELECT count(DISTINCT lead_id) FROM send_jobs
             WHERE campaign_id = '{campaign}' AND status = 'sent'"
        ))
        .await[0]
        .get::<_, i64>(0);
    assert_eq!(sent, LEADS as i64, "every lead sent once");

    // A completed campaign stays where it sent.
    let late = api
        .patch(&path, Some(&token), &json!({ "ip_ids": [ip_a] }))
        .await;
    late.assert_error(409, "conflict");

    retire(&api, &token, tenant, ip_a, ip_b).await;
    rig.shutdown().await;
}

/// A (listed by no campaign that can send) is retired; B (listed by a draft)
/// is not.
async fn retire(api: &ApiClient, token: &str, tenant: Uuid, ip_a: Uuid, ip_b: Uuid) {
    let draft = api.create_campaign(token, &[ip_b]).await;
    let refused = api
        .delete(&format!("/v1/ips/{ip_b}"), Some(admin_token()))
        .await;
    refused.assert_error(409, "conflict");
    assert!(
        refused.message().contains(&draft.to_string()),
        "{}",
        refused.message()
    );
    let by_tenant = api.delete(&format!("/v1/ips/{ip_a}"), Some(token)).await;
    assert_eq!(by_tenant.status, 403, "retiring is the operator's");

    assert_eq!(
        api.delete(&format!("/v1/ips/{ip_a}"), Some(admin_token()))
            .await
            .status,
        204
    );
    assert_eq!(
        api.delete(&format!("/v1/ips/{ip_a}"), Some(admin_token()))
            .await
            .status,
        204,
        "idempotent"
    );
    let unknown = Uuid::new_v4();
    api.delete(&format!("/v1/ips/{unknown}"), Some(admin_token()))
        .await
        .assert_error(404, "not_found");

    let list = api.get("/v1/ips", Some(token)).await;
    assert_eq!(listed(list.expect(200)), vec![B.to_string()]);
    let admin_list = api.get("/v1/ips", Some(admin_token())).await;
    assert!(!listed(admin_list.expect(200)).contains(&A.to_string()));
    let shown = api.get(&format!("/v1/ips/{ip_a}"), Some(token)).await;
    assert_eq!(shown.expect(200)["status"], "retired");
    api.post(&format!("/v1/ips/{ip_a}/resume"), Some(token), &json!({}))
        .await
        .assert_error(404, "not_found");
    api.create_campaign_with(token, &campaign_body(&[ip_a]))
        .await
        .assert_error(422, "invalid_request");
    api.patch(
        &format!("/v1/campaigns/{draft}"),
        Some(token),
        &json!({ "ip_ids": [ip_a] }),
    )
    .await
    .assert_error(422, "invalid_request");
    // The address is free again.
    let again = api.add_ip(tenant, A).await;
    assert_ne!(again, ip_a);
}
