//! API scenario: `GET /v1/events` is every delivery event of the calling
//! tenant, all campaigns, as one stream by id. Events are inserted with SQL
//! across two campaigns of one tenant and a campaign of another. A walk with
//! any page size returns exactly the tenant's events once each in id order
//! (with `campaign_id` and `recipient`); `kind` (stored or webhook names) and
//! `campaign_id` filter it; a rare kind behind more than one scan window of
//! other events is still reached by following `next_after` through short
//! pages; the other tenant's events never show; bad queries answer 422.

use serde_json::Value;
use uuid::Uuid;

use crate::support::TestEnv;
use crate::support::api::{ApiClient, ApiServer, count, leads};

async fn campaign(api: &ApiClient, tenant: Uuid, token: &str, ip: &str) -> Uuid {
    let ip = api.add_ip(tenant, ip).await;
    let campaign = api.create_campaign(token, &[ip]).await;
    api.add_leads(token, campaign, leads(3)).await.expect(200);
    api.action_ok(token, campaign, "start").await;
    campaign
}

/// One event of each of `kinds` for every job of `tenant`, in random order.
async fn insert_events(env: &TestEnv, tenant: Uuid, kinds: &[&str]) {
    let kinds: Vec<String> = kinds.iter().map(|k| format!("('{k}')")).collect();
    env.psql(&format!(
        "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, kind, reply)
         SELECT j.tenant_id, j.campaign_id, j.id, k.kind, 'r'
         FROM send_jobs j CROSS JOIN (VALUES {}) AS k(kind)
         WHERE j.tenant_id = '{tenant}'
         ORDER BY random()",
        kinds.join(", ")
    ))
    .await;
}

/// Walks the stream with `query` (e.g. `kind=sent`) by pages of `limit`;
/// returns every event and how many pages it took.
async fn walk(api: &ApiClient, token: &str, query: &str, limit: usize) -> (Vec<Value>, usize) {
    let (mut all, mut pages, mut after) = (Vec::new(), 0, 0i64);
    loop {
        pages += 1;
        assert!(pages < 10_000, "the walk ends");
        let path = format!("/v1/events?after={after}&limit={limit}&{query}");
        let answer = api.get(&path, Some(token)).await;
        let body = answer.expect(200);
        let events = body["events"].as_array().expect("events");
        assert!(events.len() <= limit);
        all.extend(events.iter().cloned());
        match body["next_after"].as_i64() {
            Some(next) => {
                assert!(next > after, "next_after moves on");
                after = next;
            }
            None => return (all, pages),
        }
    }
}

fn ids(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect()
}

async fn sql_ids(env: &TestEnv, filter: &str) -> Vec<i64> {
    env.psql(&format!(
        "SELECT id FROM delivery_events WHERE {filter} ORDER BY id"
    ))
    .await
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn the_tenant_stream_walks_every_event_once_and_filters() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (other, other_token) = api.create_tenant("other").await;
    let c1 = campaign(api, tenant, &token, "127.0.0.2").await;
    let c2 = campaign(api, tenant, &token, "127.0.0.3").await;
    let _ = campaign(api, other, &other_token, "127.0.0.4").await;
    // (At most one open and one complaint per job: unique indexes.)
    insert_events(&env, tenant, &["sent", "deferred", "open", "complaint"]).await;
    insert_events(&env, other, &["sent", "deferred", "open", "complaint"]).await;
    insert_events(&env, tenant, &["sent", "deferred"]).await;

    let mine = sql_ids(&env, &format!("tenant_id = '{tenant}'")).await;
    assert_eq!(mine.len(), 2 * 3 * 4 + 2 * 3 * 2);
    for limit in [1, 7, 1000] {
        let (events, _) = walk(api, &token, "", limit).await;
        assert_eq!(ids(&events), mine, "limit {limit}");
    }
    let (events, _) = walk(api, &token, "", 5).await;
    let first = &events[0];
    assert!(first["campaign_id"].as_str().is_some());
    assert!(
        first["recipient"].as_str().is_some_and(|r| r.contains('@')),
        "{first}"
    );

    // Kinds, by stored or webhook name, and one campaign.
    let (events, _) = walk(api, &token, "kind=complained,opened", 4).await;
    let want = sql_ids(
        &env,
        &format!("tenant_id = '{tenant}' AND kind IN ('complaint', 'open')"),
    )
    .await;
    assert_eq!(ids(&events), want);
    let (events, _) = walk(api, &token, &format!("campaign_id={c2}&kind=sent"), 2).await;
    let want = sql_ids(
        &env,
        &format!("tenant_id = '{tenant}' AND campaign_id = '{c2}' AND kind = 'sent'"),
    )
    .await;
    assert_eq!(ids(&events), want);
    assert!(!want.is_empty());
    let _ = c1;

    // The other tenant sees only its own.
    let (events, _) = walk(api, &other_token, "", 1000).await;
    assert_eq!(
        ids(&events),
        sql_ids(&env, &format!("tenant_id = '{other}'")).await
    );

    // A rare kind behind more than one scan window (5,000) of other events:
    // short pages with a next_after lead to it.
    env.psql(&format!(
        "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, kind)
         SELECT '{tenant}', '{c1}', gen_random_uuid(), 'sent' FROM generate_series(1, 12000)"
    ))
    .await;
    env.psql(&format!(
        "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, kind)
         VALUES ('{tenant}', '{c1}', gen_random_uuid(), 'bounced')"
    ))
    .await;
    let (events, pages) = walk(api, &token, "kind=bounced", 100).await;
    assert_eq!(
        ids(&events),
        sql_ids(
            &env,
            &format!("tenant_id = '{tenant}' AND kind = 'bounced'")
        )
        .await
    );
    assert!(
        pages >= 3,
        "each page reads at most one window: {pages} pages"
    );

    // Bad queries change nothing and say why.
    let before = count(&env, "SELECT count(*) FROM delivery_events").await;
    for query in [
        "after=-1",
        "limit=0",
        "limit=1001",
        "kind=exploded",
        "kind=sent,",
        "campaign_id=x",
        "hostile=1",
    ] {
        api.get(&format!("/v1/events?{query}"), Some(&token))
            .await
            .assert_error(422, "invalid_request");
    }
    api.get("/v1/events", Some(crate::support::admin_token()))
        .await
        .assert_error(403, "forbidden");
    assert_eq!(
        count(&env, "SELECT count(*) FROM delivery_events").await,
        before
    );
}
