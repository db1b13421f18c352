//! API scenario: `GET /v1/campaigns/{id}/events` pages a campaign's delivery
//! events by id. The events are inserted with SQL (the engine's Analytics actor
//! writes them in real runs), interleaved across campaigns and tenants. A walk
//! with any page size returns exactly the campaign's events, once each, in id
//! order, with the lead's address as `recipient`; other campaigns and tenants
//! stay invisible (foreign campaign → 404); bad queries answer 422.

use std::collections::HashMap;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::{ApiClient, ApiServer, leads};
use crate::support::{TestEnv, admin_token};

/// A started campaign of `n` leads on a new IP `ip`; returns its id.
async fn started_campaign(api: &ApiClient, tenant: Uuid, token: &str, ip: &str, n: usize) -> Uuid {
    let ip = api.add_ip(tenant, ip).await;
    let campaign = api.create_campaign(token, &[ip]).await;
    api.add_leads(token, campaign, leads(n)).await.expect(200);
    api.action_ok(token, campaign, "start").await;
    campaign
}

/// Gives every job of `tenant` one event per outcome below, in random order
/// across the tenant's campaigns, plus one `suppressed` event without IP or code.
async fn insert_events(env: &TestEnv, tenant: Uuid) {
    env.psql(&format!(
        "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, ip_id, kind, smtp_code,
                                      enhanced_code, class, provider, reply)
         SELECT j.tenant_id, j.campaign_id, j.id, c.ip_ids[1], k.kind, k.code, k.enhanced,
                k.class, k.provider, k.reply
         FROM send_jobs j
         JOIN campaigns c ON c.tenant_id = j.tenant_id AND c.id = j.campaign_id
         CROSS JOIN (VALUES
             ('deferred', 421, '4.7.0', 'rate_limited', 'google', '421 4.7.0 [TSS04] try later'),
             ('deferred', 450, '4.2.1', 'mailbox_busy', 'google', '450 4.2.1 busy'),
             ('bounced', 550, '5.1.1', 'invalid_recipient', 'outlook', '550 5.1.1 no such user'),
             ('failed', NULL, NULL, 'expired', NULL, 'gave up after 3 days'),
             ('sent', 250, '2.0.0', NULL, 'yahoo', '250 2.0.0 OK queued')
         ) AS k(kind, code, enhanced, class, provider, reply)
         WHERE j.tenant_id = '{tenant}'
         ORDER BY random()"
    ))
    .await;
    env.psql(&format!(
        "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, kind)
         SELECT tenant_id, campaign_id, id, 'suppressed' FROM send_jobs
         WHERE tenant_id = '{tenant}'
         ORDER BY id LIMIT 1"
    ))
    .await;
}

/// The campaign's events as the API must show them, in id order, from SQL.
async fn expected_events(env: &TestEnv, campaign: Uuid) -> Vec<Value> {
    let rows = env
        .psql(&format!(
            "SELECT e.id, e.job_id, e.ip_id, e.kind, e.smtp_code, e.enhanced_code, e.class,
                    e.provider, e.reply, l.email
             FROM delivery_events e
             JOIN send_jobs j ON j.tenant_id = e.tenant_id AND j.id = e.job_id
             JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             WHERE e.campaign_id = '{campaign}'
             ORDER BY e.id"
        ))
        .await;
    rows.iter()
        .map(|row| {
            json!({
                "id": row.get::<_, i64>(0),
                "job_id": row.get::<_, Uuid>(1),
                "ip_id": row.get::<_, Option<Uuid>>(2),
                "kind": row.get::<_, String>(3),
                "smtp_code": row.get::<_, Option<i32>>(4),
                "enhanced_code": row.get::<_, Option<String>>(5),
                "class": row.get::<_, Option<String>>(6),
                "provider": row.get::<_, Option<String>>(7),
                "reply": row.get::<_, Option<String>>(8),
                "recipient": row.get::<_, String>(9),
            })
        })
        .collect()
}

/// An API event without `created_at` (checked to be RFC 3339 on the way).
fn without_time(event: &Value) -> Value {
    let mut event = event.clone();
    let object = event.as_object_mut().expect("an event object");
    assert_eq!(object.len(), 11, "{object:?}");
    let created = object
        .remove("created_at")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("created_at");
    time::OffsetDateTime::parse(&created, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("created_at {created}: {e}"));
    event
}

#[tokio::test]
async fn events_are_paged_by_id_once_each_with_recipients() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (other, other_token) = api.create_tenant("other").await;
    let campaign = started_campaign(api, tenant, &token, "127.0.0.2", 25).await;
    let sibling = started_campaign(api, tenant, &token, "127.0.0.3", 3).await;
    let foreign = started_campaign(api, other, &other_token, "127.0.0.4", 4).await;
    let quiet_ip = api.add_ip(tenant, "127.0.0.5").await;
    let quiet = api.create_campaign(&token, &[quiet_ip]).await;
    insert_events(&env, tenant).await;
    insert_events(&env, other).await;

    let expected = expected_events(&env, campaign).await;
    assert!(expected.len() > 100, "{} events", expected.len());
    for limit in [1, 7, 100, 1000] {
        let walked: Vec<Value> = api
            .all_events(&token, campaign, limit)
            .await
            .iter()
            .map(without_time)
            .collect();
        assert_eq!(walked, expected, "limit {limit}");
    }
    let ids: Vec<i64> = expected.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ascend: {ids:?}");
    let suppressed: Vec<&Value> = expected
        .iter()
        .filter(|e| e["kind"] == "suppressed")
        .collect();
    if let Some(event) = suppressed.first() {
        assert_eq!(event["ip_id"], Value::Null);
        assert_eq!(event["smtp_code"], Value::Null);
    }

    // Every recipient is the address of the job's own lead.
    let leads_by_job: HashMap<Uuid, String> = env
        .psql(&format!(
            "SELECT j.id, l.email FROM send_jobs j JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             WHERE j.campaign_id = '{campaign}'"
        ))
        .await
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for event in &expected {
        let job: Uuid = event["job_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(event["recipient"], json!(leads_by_job[&job]));
    }

    // Default page: 100 events, cursor = the last id; the last cursor ends the walk.
    let answer = api.events(&token, campaign, "").await;
    let page = answer.expect(200);
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 100);
    assert_eq!(page["next_after"], events[99]["id"]);
    let exact = format!("?limit={}", expected.len());
    let answer = api.events(&token, campaign, &exact).await;
    assert_eq!(answer.expect(200)["next_after"], Value::Null);
    let last = format!("?after={}", ids[ids.len() - 1]);
    let answer = api.events(&token, campaign, &last).await;
    assert_eq!(
        answer.expect(200).clone(),
        json!({ "events": [], "next_after": null })
    );

    // Other campaigns see only their own events; one without events is empty.
    let walked: Vec<Value> = api
        .all_events(&token, sibling, 4)
        .await
        .iter()
        .map(without_time)
        .collect();
    assert_eq!(walked, expected_events(&env, sibling).await);
    assert_eq!(walked.len(), 3 * 5 + usize::from(suppressed.is_empty()));
    let walked: Vec<Value> = api
        .all_events(&other_token, foreign, 5)
        .await
        .iter()
        .map(without_time)
        .collect();
    assert_eq!(walked, expected_events(&env, foreign).await);
    let answer = api.events(&token, quiet, "").await;
    assert_eq!(
        answer.expect(200).clone(),
        json!({ "events": [], "next_after": null })
    );
}

#[tokio::test]
async fn foreign_campaigns_are_404_and_bad_queries_422() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (other, other_token) = api.create_tenant("other").await;
    let campaign = started_campaign(api, tenant, &token, "127.0.0.2", 2).await;
    let foreign = started_campaign(api, other, &other_token, "127.0.0.3", 2).await;
    insert_events(&env, tenant).await;
    insert_events(&env, other).await;

    api.events(&other_token, campaign, "")
        .await
        .assert_error(404, "not_found");
    api.events(&token, foreign, "?limit=1")
        .await
        .assert_error(404, "not_found");
    api.events(&token, Uuid::now_v7(), "")
        .await
        .assert_error(404, "not_found");
    api.get("/v1/campaigns/not-a-uuid/events", Some(&token))
        .await
        .assert_error(404, "not_found");
    let path = format!("/v1/campaigns/{campaign}/events");
    api.get(&path, None).await.assert_error(401, "unauthorized");
    api.get(&path, Some("pt_forged"))
        .await
        .assert_error(401, "unauthorized");
    api.get(&path, Some(admin_token()))
        .await
        .assert_error(403, "forbidden");
    api.post(&path, Some(&token), &json!({}))
        .await
        .assert_error(405, "method_not_allowed");

    for query in [
        "?limit=0",
        "?limit=1001",
        "?limit=-1",
        "?limit=abc",
        "?limit=",
        "?after=abc",
        "?after=-1",
        "?after=1.5",
        "?after=%0D%0A",
        "?after=1%00",
        "?after=99999999999999999999999",
        "?after=1&after=2",
        "?cursor=1",
    ] {
        let answer = api.events(&token, campaign, query).await;
        assert_eq!(
            (answer.status, answer.code()),
            (422, "invalid_request"),
            "{query}: {:#}",
            answer.body
        );
    }
    let answer = api.events(&token, campaign, "?limit=1001").await;
    assert!(answer.message().contains("limit"), "{}", answer.message());
    let answer = api.events(&token, campaign, "?limit=1000&after=0").await;
    assert_eq!(
        answer.expect(200)["events"].as_array().unwrap().len(),
        2 * 5 + 1
    );
}
