//! API scenario: the lists of issue 17 item 4. `GET /v1/campaigns` pages the
//! calling tenant's campaigns newest first (a `status` filter, a cursor that
//! walks every campaign once whatever the page size); `GET
//! /v1/campaigns/{id}/jobs` pages a campaign's jobs with recipient, status,
//! attempts, last reply and next run time; `GET /v1/tenants` (admin) pages
//! tenants newest first. Another tenant's campaigns are never listed and its
//! campaign's jobs are 404; a bad `limit`, `after` or `status` is 422.

use std::collections::HashSet;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::{ApiClient, ApiServer, leads};
use crate::support::{TestEnv, admin_token};

/// Walks `path` (which has no query yet) page by page with `extra` query
/// parameters and `limit`; returns the rows of the `key` arrays, in order.
async fn walk(
    api: &ApiClient,
    token: &str,
    path: &str,
    key: &str,
    query: &str,
    limit: usize,
) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{path}?limit={limit}{query}");
        if let Some(after) = &after {
            url.push_str(&format!("&after={after}"));
        }
        let answer = api.get(&url, Some(token)).await;
        let page = answer.expect(200);
        let got = page[key].as_array().expect("a list").clone();
        assert!(
            got.len() <= limit,
            "{url}: {} rows over the limit",
            got.len()
        );
        rows.extend(got);
        match page["next_after"].as_str() {
            Some(next) => {
                assert_eq!(
                    Some(next),
                    rows.last().and_then(|r| r["id"].as_str()),
                    "next_after is the last id of the page"
                );
                after = Some(next.to_string());
            }
            None => return rows,
        }
    }
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn campaigns_list_newest_first_by_status_and_only_the_callers() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (a, token_a) = api.create_tenant("lists a").await;
    let (b, token_b) = api.create_tenant("lists b").await;
    let ip_a = api.add_ip(a, "127.0.0.2").await;
    let ip_b = api.add_ip(b, "127.0.0.3").await;

    let mut created: Vec<Uuid> = Vec::new();
    for i in 0..7 {
        let id = api.create_campaign(&token_a, &[ip_a]).await;
        api.add_leads(&token_a, id, leads(1)).await.expect(200);
        if i % 3 == 0 {
            api.action_ok(&token_a, id, "start").await;
        }
        created.push(id);
        // Another tenant's campaigns interleave.
        if i % 2 == 0 {
            api.create_campaign(&token_b, &[ip_b]).await;
        }
    }
    let scheduled = created[1];
    let answer = api
        .post(
            &format!("/v1/campaigns/{scheduled}/start"),
            Some(&token_a),
            &json!({ "start_at": "2099-01-01T09:00:00Z" }),
        )
        .await;
    // More than 366 days ahead: refused, nothing changes.
    answer.assert_error(422, "invalid_request");
    let at = (time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(86_400))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let answer = api
        .post(
            &format!("/v1/campaigns/{scheduled}/start"),
            Some(&token_a),
            &json!({ "start_at": at }),
        )
        .await;
    assert_eq!(answer.expect(200)["status"], json!("scheduled"));

    let newest_first: Vec<String> = created.iter().rev().map(Uuid::to_string).collect();
    for limit in [1, 2, 3, 7, 100] {
        let rows = walk(api, &token_a, "/v1/campaigns", "campaigns", "", limit).await;
        assert_eq!(ids(&rows), newest_first, "limit {limit}");
    }
    let all = walk(api, &token_a, "/v1/campaigns", "campaigns", "", 100).await;
    let shown = all
        .iter()
        .find(|c| c["id"] == json!(scheduled.to_string()))
        .unwrap();
    assert_eq!(shown["status"], json!("scheduled"));
    assert_eq!(shown["start_at"], json!(at));
    assert_eq!(shown["name"], json!("Spring outreach"));

    let running: Vec<String> = [6, 3, 0].iter().map(|i| created[*i].to_string()).collect();
    for limit in [1, 2, 100] {
        let rows = walk(
            api,
            &token_a,
            "/v1/campaigns",
            "campaigns",
            "&status=running",
            limit,
        )
        .await;
        assert_eq!(ids(&rows), running, "running, limit {limit}");
        assert!(rows.iter().all(|c| c["status"] == json!("running")));
    }
    let rows = walk(
        api,
        &token_a,
        "/v1/campaigns",
        "campaigns",
        "&status=scheduled",
        10,
    )
    .await;
    assert_eq!(ids(&rows), vec![scheduled.to_string()]);
    let rows = walk(
        api,
        &token_a,
        "/v1/campaigns",
        "campaigns",
        "&status=completed",
        10,
    )
    .await;
    assert!(rows.is_empty());

    // Tenant B sees its own 4 only, and none of A's.
    let rows_b = walk(api, &token_b, "/v1/campaigns", "campaigns", "", 3).await;
    assert_eq!(rows_b.len(), 4);
    let a_ids: HashSet<String> = newest_first.iter().cloned().collect();
    assert!(ids(&rows_b).iter().all(|id| !a_ids.contains(id)));
    // A cursor of A's does not reveal A's campaigns to B.
    let answer = api
        .get(
            &format!("/v1/campaigns?after={}", created[0]),
            Some(&token_b),
        )
        .await;
    let page = answer.expect(200);
    assert!(
        page["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !a_ids.contains(c["id"].as_str().unwrap()))
    );

    for (query, message) in [
        ("limit=0", "limit must be between 1 and 1000"),
        ("limit=1001", "limit must be between 1 and 1000"),
        ("limit=ten", "limit"),
        ("after=12", "after"),
        (
            "status=sent",
            "status must be one of draft, scheduled, running",
        ),
        ("status=", "status must be one of"),
        ("hostile=1", "hostile"),
    ] {
        let answer = api
            .get(&format!("/v1/campaigns?{query}"), Some(&token_a))
            .await;
        answer.assert_error(422, "invalid_request");
        assert!(
            answer.message().contains(message),
            "{query}: {}",
            answer.message()
        );
    }
    api.get("/v1/campaigns", Some(admin_token()))
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn a_campaigns_jobs_page_with_recipient_status_attempts_reply_and_next_run() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (a, token_a) = api.create_tenant("jobs a").await;
    let (b, token_b) = api.create_tenant("jobs b").await;
    let ip_a = api.add_ip(a, "127.0.0.2").await;
    let ip_b = api.add_ip(b, "127.0.0.3").await;
    let campaign = api.create_campaign(&token_a, &[ip_a]).await;
    api.add_leads(&token_a, campaign, leads(7))
        .await
        .expect(200);
    let path = format!("/v1/campaigns/{campaign}/jobs");
    assert!(
        walk(api, &token_a, &path, "jobs", "", 10).await.is_empty(),
        "a draft has no jobs"
    );
    api.action_ok(&token_a, campaign, "start").await;
    let other = api.create_campaign(&token_b, &[ip_b]).await;
    api.add_leads(&token_b, other, leads(3)).await.expect(200);
    api.action_ok(&token_b, other, "start").await;

    // Two jobs failed after 3 attempts, as the engine leaves them.
    env.psql(&format!(
        "UPDATE send_jobs SET status = 'failed', attempts = 3, last_reply = '451 4.3.0 busy (maximum attempts reached)'
         WHERE id IN (SELECT id FROM send_jobs WHERE campaign_id = '{campaign}' ORDER BY id LIMIT 2)"
    ))
    .await;

    let expected: Vec<String> = env
        .psql(&format!(
            "SELECT id::text FROM send_jobs WHERE campaign_id = '{campaign}' ORDER BY id"
        ))
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(expected.len(), 7);
    for limit in [1, 3, 7, 100] {
        let rows = walk(api, &token_a, &path, "jobs", "", limit).await;
        assert_eq!(ids(&rows), expected, "limit {limit}");
        let recipients: HashSet<&str> = rows
            .iter()
            .map(|j| j["recipient"].as_str().unwrap())
            .collect();
        let leads: HashSet<String> = (0..7).map(|i| format!("lead{i}@example.com")).collect();
        assert_eq!(recipients, leads.iter().map(String::as_str).collect());
    }
    let pending = walk(api, &token_a, &path, "jobs", "&status=pending", 2).await;
    assert_eq!(ids(&pending), expected[2..].to_vec());
    for job in &pending {
        assert_eq!(job["attempts"], json!(0));
        assert_eq!(job["last_reply"], Value::Null);
        assert!(
            job["next_run_at"].is_string(),
            "a waiting job's next run: {job}"
        );
    }
    let failed = walk(api, &token_a, &path, "jobs", "&status=failed", 1).await;
    assert_eq!(ids(&failed), expected[..2].to_vec());
    for job in &failed {
        assert_eq!(job["status"], json!("failed"));
        assert_eq!(job["attempts"], json!(3));
        assert_eq!(
            job["last_reply"],
            json!("451 4.3.0 busy (maximum attempts reached)")
        );
        assert_eq!(
            job["next_run_at"],
            Value::Null,
            "a failed job has no next run"
        );
    }

    // Tenant B: A's campaign is 404, its own lists its 3 jobs.
    api.get(&path, Some(&token_b))
        .await
        .assert_error(404, "not_found");
    let own = walk(
        api,
        &token_b,
        &format!("/v1/campaigns/{other}/jobs"),
        "jobs",
        "",
        2,
    )
    .await;
    assert_eq!(own.len(), 3);
    assert!(ids(&own).iter().all(|id| !expected.contains(id)));

    for query in [
        "limit=0",
        "limit=1001",
        "after=x",
        "status=scheduled",
        "status=FAILED",
        "x=1",
    ] {
        let answer = api.get(&format!("{path}?{query}"), Some(&token_a)).await;
        answer.assert_error(422, "invalid_request");
    }
}

#[tokio::test]
async fn tenants_list_newest_first_for_the_admin_only() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(api.create_tenant(&format!("tenant {i}")).await);
    }
    let all = walk(api, admin_token(), "/v1/tenants", "tenants", "", 100).await;
    for limit in [1, 2, 5] {
        let rows = walk(api, admin_token(), "/v1/tenants", "tenants", "", limit).await;
        assert_eq!(ids(&rows), ids(&all), "limit {limit}");
    }
    let ours: Vec<String> = ids(&all)
        .into_iter()
        .filter(|id| created.iter().any(|(t, _)| t.to_string() == *id))
        .collect();
    let newest_first: Vec<String> = created.iter().rev().map(|(t, _)| t.to_string()).collect();
    assert_eq!(ours, newest_first);
    let first = all
        .iter()
        .find(|t| t["id"] == json!(created[4].0.to_string()))
        .unwrap();
    assert_eq!(first["name"], json!("tenant 4"));
    assert!(first["created_at"].is_string());
    assert!(first.get("token").is_none(), "no token in a list");

    api.get("/v1/tenants", Some(&created[0].1))
        .await
        .assert_error(403, "forbidden");
    for query in ["limit=0", "limit=1001", "after=1", "status=running"] {
        let answer = api
            .get(&format!("/v1/tenants?{query}"), Some(admin_token()))
            .await;
        answer.assert_error(422, "invalid_request");
    }
}
