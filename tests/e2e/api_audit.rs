//! API scenario: the audit log and the storage sizes (issue 23).
//!
//! - The admin's tenant, IP and token changes (and a tenant's own token
//!   changes) appear in `GET /v1/audit`, newest first, paged by `before`,
//!   filtered by `tenant_id` and `action`; no entry holds a name; a tenant
//!   token cannot read the log (403).
//! - `GET /v1/stats/storage` counts what was inserted (small tables are
//!   counted exactly), lists `delivery_events`' partitions when it has any
//!   (their rows sum to the table's), and reports the oldest event's day.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::support::api::ApiServer;
use crate::support::{TestEnv, admin_token};

#[tokio::test]
async fn admin_changes_are_audited_and_paged() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("Audited Corp").await;
    let ip = api.add_ip(tenant, "127.0.0.5").await;
    api.post(
        &format!("/v1/ips/{ip}/pause"),
        Some(admin_token()),
        &json!({ "reason": "x" }),
    )
    .await
    .expect(200);
    api.post(&format!("/v1/ips/{ip}/resume"), Some(&token), &json!({}))
        .await
        .expect(200);
    let issued = api
        .post(
            &format!("/v1/tenants/{tenant}/tokens"),
            Some(admin_token()),
            &json!({}),
        )
        .await;
    let token_id = issued.id();
    api.delete(
        &format!("/v1/tenants/{tenant}/tokens/{token_id}"),
        Some(&token),
    )
    .await
    .expect(200);
    let domain = api
        .post(
            "/v1/domains",
            Some(admin_token()),
            &json!({ "domain": "audit.example", "tenant_id": tenant }),
        )
        .await
        .id();
    assert_eq!(
        api.delete(&format!("/v1/domains/{domain}"), Some(&token))
            .await
            .status,
        204
    );
    let (other, _) = api.create_tenant("Other Corp").await;

    // Newest first.
    let all = api.get("/v1/audit", Some(admin_token())).await;
    let entries = all.expect(200)["entries"].as_array().unwrap().clone();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    let mine = format!("tenant:{tenant}");
    assert_eq!(
        actions,
        [
            ("tenant.create", "admin"),
            ("domain.delete", mine.as_str()),
            ("domain.create", "admin"),
            ("token.revoke", mine.as_str()),
            ("token.issue", "admin"),
            ("ip.resume", mine.as_str()),
            ("ip.pause", "admin"),
            ("ip.add", "admin"),
            ("tenant.create", "admin"),
        ]
    );
    assert_eq!(entries[0]["tenant_id"], other.to_string());
    assert_eq!(entries[1]["target"], domain.to_string());
    assert_eq!(entries[3]["target"], token_id.to_string());
    assert_eq!(entries[7]["target"], ip.to_string());
    assert!(all.body["next_before"].is_null());
    assert!(
        !all.body.to_string().contains("Corp"),
        "a name in the audit log"
    );
    for entry in &entries {
        for field in [
            "id",
            "at",
            "actor",
            "tenant_id",
            "action",
            "target",
            "detail",
        ] {
            assert!(entry.get(field).is_some(), "{field} missing in {entry}");
        }
    }

    // Paged by `before`: every entry once, in the same order.
    let mut walked: Vec<Value> = Vec::new();
    let mut path = "/v1/audit?limit=2".to_string();
    loop {
        let page = api.get(&path, Some(admin_token())).await;
        let body = page.expect(200).clone();
        let rows = body["entries"].as_array().unwrap();
        assert!(rows.len() <= 2);
        walked.extend(rows.iter().cloned());
        match body["next_before"].as_i64() {
            Some(before) => path = format!("/v1/audit?limit=2&before={before}"),
            None => break,
        }
    }
    assert_eq!(walked, entries);

    // Filters.
    let only = api
        .get(
            &format!("/v1/audit?tenant_id={tenant}&action=ip.pause"),
            Some(admin_token()),
        )
        .await;
    let only = only.expect(200)["entries"].as_array().unwrap().clone();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["action"], "ip.pause");
    let of_tenant = api
        .get(
            &format!("/v1/audit?tenant_id={tenant}"),
            Some(admin_token()),
        )
        .await;
    let ids: HashSet<String> = of_tenant.expect(200)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tenant_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, HashSet::from([tenant.to_string()]));

    // Tenants cannot read it; bad paging is 422.
    api.get("/v1/audit", Some(&token))
        .await
        .assert_error(403, "forbidden");
    for query in [
        "limit=0",
        "limit=1001",
        "before=x",
        "tenant_id=1",
        "action=DROP",
        "x=1",
    ] {
        api.get(&format!("/v1/audit?{query}"), Some(admin_token()))
            .await
            .assert_error(422, "invalid_request");
    }
}

#[tokio::test]
async fn storage_sizes_count_what_is_there() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (_, token) = api.create_tenant("Sized").await;
    let emails: Vec<String> = (0..37).map(|n| format!("s{n}@size.test")).collect();
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    api.add_suppressions(&token, &emails, "manual").await;

    let table = |body: &Value, name: &str| -> Value {
        body["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    let answer = api.get("/v1/stats/storage", Some(admin_token())).await;
    let body = answer.expect(200).clone();
    let suppressions = table(&body, "suppressions");
    assert_eq!(suppressions["rows"], 37, "{suppressions}");
    assert_eq!(suppressions["rows_exact"], true);
    assert!(suppressions["bytes"].as_i64().unwrap() > 0);
    assert_eq!(table(&body, "tenants")["rows"], 1);
    assert!(body["oldest_event_day"].is_null(), "{body}");
    assert!(body["generated_at"].is_string());
    let events = table(&body, "delivery_events");
    assert_eq!(events["rows"], 0);

    // One event of mid-January: the oldest day; its partition (if the table
    // is partitioned) holds it.
    env.psql(
        "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, kind, created_at)
         VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'sent',
                 '2026-01-15 10:00:00+00'),
                (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'sent', now())",
    )
    .await;
    let body = api
        .get("/v1/stats/storage", Some(admin_token()))
        .await
        .expect(200)
        .clone();
    assert_eq!(body["oldest_event_day"], "2026-01-15");
    let events = table(&body, "delivery_events");
    assert_eq!(events["rows"], 2, "{events}");
    let partitions = events["partitions"].as_array().unwrap();
    let partitioned = crate::support::api::count(
        &env,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'delivery_events'::regclass",
    )
    .await;
    assert_eq!(partitions.len() as i64, partitioned);
    if !partitions.is_empty() {
        let sum: i64 = partitions.iter().map(|p| p["rows"].as_i64().unwrap()).sum();
        assert_eq!(sum, 2);
        assert!(
            partitions
                .iter()
                .all(|p| p.get("from").is_some() && p.get("to").is_some())
        );
    }
    api.get("/v1/stats/storage", Some(&token))
        .await
        .assert_error(403, "forbidden");
}
