//! API scenario: a tenant's suppression list (`/v1/suppressions`). Adds count
//! exactly (added, already, rejected by index), addresses are normalised, the list
//! pages by email and a walk sees every row once, removal answers 204/404, lead
//! import skips what the API suppressed, and no call reaches another tenant's
//! rows. Hostile input gets its documented error and changes no row. Also the
//! engine's bulk [`add_many`](penguin_engine::store::suppressions::add_many).

use penguin_engine::db::StoreError;
use penguin_engine::store::suppressions;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::api::{ApiServer, count, leads, path_encode, suppression_rows};
use crate::support::{TestEnv, admin_token};

fn emails_of(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|row| row["email"].as_str().expect("email").to_string())
        .collect()
}

fn rejected_indexes(body: &Value) -> Vec<u64> {
    body["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
            r["index"].as_u64().expect("index")
        })
        .collect()
}

#[tokio::test]
async fn suppressions_are_added_listed_and_removed_per_tenant() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (other, other_token) = api.create_tenant("other").await;
    let body = api
        .add_suppressions(
            &other_token,
            &["shared@example.com", "only-other@example.com"],
            "manual",
        )
        .await;
    assert_eq!(
        (body["added"].as_u64(), body["already"].as_u64()),
        (Some(2), Some(0))
    );

    let body = api
        .add_suppressions(
            &token,
            &[
                "Ann@Example.com",
                "bob@example.com",
                "not-an-email",
                " ann@example.com ",
                "a\r\nb@example.com",
                "a/b@example.com",
            ],
            "unsubscribe",
        )
        .await;
    assert_eq!(body["added"], 3, "{body:#}");
    assert_eq!(body["already"], 1, "{body:#}");
    assert_eq!(rejected_indexes(&body), vec![2, 4]);

    // Without a reason: manual. bob keeps the reason he was first suppressed for.
    let answer = api
        .add_suppressions_with(
            &token,
            &json!({ "emails": ["BOB@example.com", "cy@example.com"] }),
        )
        .await;
    let body = answer.expect(200);
    assert_eq!(
        (body["added"].as_u64(), body["already"].as_u64()),
        (Some(1), Some(1))
    );
    // Another tenant's row does not make an address "already" suppressed here.
    let body = api
        .add_suppressions(&token, &["shared@example.com"], "complaint")
        .await;
    assert_eq!(body["added"], 1, "{body:#}");

    let answer = api.suppressions(&token, "").await;
    let page = answer.expect(200);
    assert_eq!(page["next_after"], Value::Null);
    let rows = page["suppressions"].as_array().unwrap();
    assert_eq!(
        emails_of(rows),
        vec![
            "a/b@example.com",
            "ann@example.com",
            "bob@example.com",
            "cy@example.com",
            "shared@example.com"
        ]
    );
    let reasons: Vec<&str> = rows.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        vec![
            "unsubscribe",
            "unsubscribe",
            "unsubscribe",
            "manual",
            "complaint"
        ]
    );
    for row in rows {
        let created = row["created_at"].as_str().expect("created_at");
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("created_at {created}: {e}"));
        assert_eq!(row["expires_at"], Value::Null, "for good: {row}");
        assert_eq!(row.as_object().unwrap().len(), 4, "{row}");
    }
    let theirs = api.all_suppressions(&other_token, 100).await;
    assert_eq!(
        emails_of(&theirs),
        vec!["only-other@example.com", "shared@example.com"]
    );
    assert_eq!(theirs[1]["reason"], "manual");

    // Removal: case-insensitive, encoded, 404 when absent or only another tenant's.
    assert_eq!(
        api.remove_suppression(Some(&token), "Bob@Example.COM")
            .await
            .status,
        204
    );
    api.remove_suppression(Some(&token), "bob@example.com")
        .await
        .assert_error(404, "not_found");
    api.remove_suppression(Some(&token), "only-other@example.com")
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        api.remove_suppression(Some(&token), "a/b@example.com")
            .await
            .status,
        204
    );
    assert_eq!(
        api.remove_suppression(Some(&token), "shared@example.com")
            .await
            .status,
        204
    );
    assert_eq!(
        emails_of(&api.all_suppressions(&token, 100).await),
        vec!["ann@example.com", "cy@example.com"]
    );
    assert_eq!(
        emails_of(&api.all_suppressions(&other_token, 100).await),
        vec!["only-other@example.com", "shared@example.com"],
        "the other tenant's rows are untouched"
    );
    let mine = format!("SELECT count(*) FROM suppressions WHERE tenant_id = '{tenant}'");
    let theirs = format!("SELECT count(*) FROM suppressions WHERE tenant_id = '{other}'");
    assert_eq!(
        (count(&env, &mine).await, count(&env, &theirs).await),
        (2, 2)
    );
}

#[tokio::test]
async fn suppression_pages_walk_every_row_exactly_once() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (_, other_token) = api.create_tenant("other").await;
    let mine: Vec<String> = (0..250).map(|i| format!("user{i}@example.com")).collect();
    let refs: Vec<&str> = mine.iter().map(String::as_str).collect();
    assert_eq!(
        api.add_suppressions(&token, &refs, "manual").await["added"],
        250
    );
    let theirs: Vec<String> = (0..30).map(|i| format!("user{i}x@example.com")).collect();
    let refs: Vec<&str> = theirs.iter().map(String::as_str).collect();
    assert_eq!(
        api.add_suppressions(&other_token, &refs, "complaint").await["added"],
        30
    );

    // One page holding everything gives the database's order (its collation);
    // every walk, whatever the page size, must give exactly that.
    let answer = api.suppressions(&token, "?limit=1000").await;
    let page = answer.expect(200);
    assert_eq!(page["next_after"], Value::Null);
    let full = emails_of(page["suppressions"].as_array().unwrap());
    let mut sorted = full.clone();
    sorted.sort();
    let mut expected = mine.clone();
    expected.sort();
    assert_eq!(sorted, expected, "exactly this tenant's rows");
    let by_sql: Vec<String> = env
        .psql(&format!(
            "SELECT email FROM suppressions WHERE tenant_id = '{tenant}' ORDER BY email"
        ))
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(full, by_sql, "ordered by email");
    for limit in [1, 7, 50, 249, 250, 251] {
        let walked = emails_of(&api.all_suppressions(&token, limit).await);
        assert_eq!(walked, full, "limit {limit}");
    }

    // The default page is 100 rows; its cursor is its last email.
    let answer = api.suppressions(&token, "").await;
    let page = answer.expect(200);
    let rows = page["suppressions"].as_array().unwrap();
    assert_eq!(rows.len(), 100);
    assert_eq!(page["next_after"], rows[99]["email"]);
    // A page that ends exactly at the last row says so.
    let answer = api.suppressions(&token, "?limit=250").await;
    assert_eq!(answer.expect(200)["next_after"], Value::Null);
    let answer = api.suppressions(&token, "?limit=249").await;
    assert_eq!(answer.expect(200)["next_after"], json!(full[248]));
    let last = format!("?after={}", path_encode(&full[249]));
    let answer = api.suppressions(&token, &last).await;
    let page = answer.expect(200);
    assert_eq!(page["suppressions"], json!([]));
    assert_eq!(page["next_after"], Value::Null);

    for query in [
        "?limit=0",
        "?limit=1001",
        "?limit=-1",
        "?limit=abc",
        "?limit=",
        "?limit=1&limit=2",
        "?offset=10",
        "?after=%00",
        "?after=a%0D%0Ab",
    ] {
        api.suppressions(&token, query)
            .await
            .assert_error(422, "invalid_request");
    }
    let long = format!("?after={}", "a".repeat(300));
    api.suppressions(&token, &long)
        .await
        .assert_error(422, "invalid_request");
    api.get("/v1/suppressions", None)
        .await
        .assert_error(401, "unauthorized");
    api.get("/v1/suppressions", Some(admin_token()))
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn hostile_suppression_requests_are_refused_and_change_nothing() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other_token) = api.create_tenant("other").await;
    api.add_suppressions(&token, &["ann@example.com"], "manual")
        .await;
    api.add_suppressions(
        &other_token,
        &["ann@example.com", "bob@example.com"],
        "manual",
    )
    .await;
    let before = suppression_rows(&env).await;

    // Whole-request refusals.
    let too_many: Vec<String> = (0..10_001).map(|i| format!("u{i}@example.com")).collect();
    let refused: Vec<(&str, Value)> = vec![
        (
            "hard_bounce",
            json!({ "emails": ["x@example.com"], "reason": "hard_bounce" }),
        ),
        (
            "unknown reason",
            json!({ "emails": ["x@example.com"], "reason": "spam" }),
        ),
        (
            "CRLF reason",
            json!({ "emails": ["x@example.com"], "reason": "manual\r\n" }),
        ),
        (
            "reason not text",
            json!({ "emails": ["x@example.com"], "reason": 1 }),
        ),
        (
            "unknown field",
            json!({ "emails": ["x@example.com"], "tenant_id": "x" }),
        ),
        ("emails not a list", json!({ "emails": "x@example.com" })),
        ("email not text", json!({ "emails": ["x@example.com", 5] })),
        ("missing emails", json!({ "reason": "manual" })),
        ("no emails", json!({ "emails": [] })),
        ("10,001 emails", json!({ "emails": too_many })),
    ];
    for (what, body) in refused {
        let answer = api.add_suppressions_with(&token, &body).await;
        assert_eq!(
            (answer.status, answer.code()),
            (422, "invalid_request"),
            "{what}: {:#}",
            answer.body
        );
    }
    let answer = api
        .add_suppressions_with(
            &token,
            &json!({ "emails": ["x@example.com"], "reason": "hard_bounce" }),
        )
        .await;
    assert!(answer.message().contains("engine"), "{}", answer.message());
    let answer = api
        .add_suppressions_with(&token, &json!({ "emails": ["x@example.com"], "bcc": 1 }))
        .await;
    assert!(
        answer.message().contains("unknown field"),
        "{}",
        answer.message()
    );
    for text in [
        "{",
        "{\"emails\": [\"x@example.com\"],}",
        "{\"emails\": [\"x@example.com\"",
        "nul\u{0}",
    ] {
        api.post_text("/v1/suppressions", Some(&token), text)
            .await
            .assert_error(400, "malformed_json");
    }
    api.raw(
        Method::POST,
        "/v1/suppressions",
        Some(&token),
        Some("text/plain"),
        Some(b"x@example.com".to_vec()),
    )
    .await
    .assert_error(415, "unsupported_media_type");
    let body = json!({ "emails": ["x@example.com"] });
    api.post("/v1/suppressions", None, &body)
        .await
        .assert_error(401, "unauthorized");
    api.post("/v1/suppressions", Some("pt_forged"), &body)
        .await
        .assert_error(401, "unauthorized");
    api.post("/v1/suppressions", Some(admin_token()), &body)
        .await
        .assert_error(403, "forbidden");

    // Hostile addresses inside a valid request: each rejected by index, none stored.
    let hostile = vec![
        "x@example.com\r\nBcc: victim@example.com".to_string(),
        "x\n@example.com".to_string(),
        "x\r@example.com".to_string(),
        "x\u{0}@example.com".to_string(),
        format!("{}@example.com", "a".repeat(300)),
        format!("a@{}.com", "d".repeat(300)),
        "no-at-sign".to_string(),
        "two@@example.com".to_string(),
        "a@localhost".to_string(),
        String::new(),
        "   ".to_string(),
    ];
    let answer = api
        .add_suppressions_with(&token, &json!({ "emails": hostile, "reason": "complaint" }))
        .await;
    let body = answer.expect(200);
    assert_eq!(
        (body["added"].as_u64(), body["already"].as_u64()),
        (Some(0), Some(0))
    );
    let all: Vec<u64> = (0..hostile.len() as u64).collect();
    assert_eq!(rejected_indexes(body), all, "{body:#}");

    // Hostile removals: invalid addresses are 422, absent or foreign ones 404.
    for email in [
        "not-an-email",
        "a\r\nb@example.com",
        "a\u{0}b@example.com",
        &format!("{}@example.com", "a".repeat(300)),
    ] {
        api.remove_suppression(Some(&token), email)
            .await
            .assert_error(422, "invalid_request");
    }
    api.delete("/v1/suppressions/%FF%FE@example.com", Some(&token))
        .await
        .assert_error(422, "invalid_request");
    api.remove_suppression(Some(&token), "bob@example.com")
        .await
        .assert_error(404, "not_found");
    api.remove_suppression(None, "ann@example.com")
        .await
        .assert_error(401, "unauthorized");
    api.remove_suppression(Some(admin_token()), "ann@example.com")
        .await
        .assert_error(403, "forbidden");
    api.get(
        &format!("/v1/suppressions/{}", path_encode("ann@example.com")),
        Some(&token),
    )
    .await
    .assert_error(405, "method_not_allowed");

    assert_eq!(
        suppression_rows(&env).await,
        before,
        "refused requests changed nothing"
    );
}

#[tokio::test]
async fn ten_thousand_addresses_fit_one_request() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    api.add_suppressions(&token, &["u7@example.com"], "manual")
        .await;
    let emails: Vec<String> = (0..10_000).map(|i| format!("U{i}@Example.com")).collect();
    let body = json!({ "emails": emails, "reason": "unsubscribe" });
    let answer = api.add_suppressions_with(&token, &body).await;
    let result = answer.expect(200);
    assert_eq!(result["added"], 9_999, "{result:#}");
    assert_eq!(result["already"], 1);
    assert_eq!(result["rejected"], json!([]));
    let sql = format!("SELECT count(*) FROM suppressions WHERE tenant_id = '{tenant}'");
    assert_eq!(count(&env, &sql).await, 10_000);
    let upper = format!("{sql} AND email <> lower(email)");
    assert_eq!(
        count(&env, &upper).await,
        0,
        "addresses are stored lower-cased"
    );
}

#[tokio::test]
async fn lead_import_skips_addresses_suppressed_through_the_api() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (_, other_token) = api.create_tenant("other").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    api.add_suppressions(
        &token,
        &["Lead1@Example.com", "lead3@example.com"],
        "unsubscribe",
    )
    .await;
    // Another tenant's list does not affect this tenant's import.
    api.add_suppressions(&other_token, &["lead0@example.com"], "manual")
        .await;

    let campaign = api.create_campaign(&token, &[ip]).await;
    let answer = api.add_leads(&token, campaign, leads(5)).await;
    let body = answer.expect(200);
    assert_eq!(body["accepted"], 3, "{body:#}");
    assert_eq!(body["suppressed"], 2, "{body:#}");
    let stored = env
        .psql(&format!(
            "SELECT email FROM leads WHERE campaign_id = '{campaign}' ORDER BY email"
        ))
        .await;
    let stored: Vec<String> = stored.iter().map(|row| row.get(0)).collect();
    assert_eq!(
        stored,
        vec![
            "lead0@example.com",
            "lead2@example.com",
            "lead4@example.com"
        ]
    );

    // Lifting a suppression lets the address in on the next import.
    assert_eq!(
        api.remove_suppression(Some(&token), "lead1@example.com")
            .await
            .status,
        204
    );
    let answer = api.add_leads(&token, campaign, leads(5)).await;
    let body = answer.expect(200);
    assert_eq!(body["accepted"], 1, "{body:#}");
    assert_eq!(body["suppressed"], 1, "{body:#}");
    assert_eq!(body["rejected"].as_array().unwrap().len(), 3, "{body:#}");
}

#[tokio::test]
async fn add_many_suppresses_hard_bounces_of_many_tenants_in_one_batch() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (a, token_a) = api.create_tenant("a").await;
    let (b, _) = api.create_tenant("b").await;
    api.add_suppressions(&token_a, &["old@example.com"], "unsubscribe")
        .await;

    assert_eq!(suppressions::add_many(&env.pg, &[]).await.unwrap(), 0);
    let batch = [
        (a, "old@example.com".to_string(), "hard_bounce"),
        (a, "new@example.com".to_string(), "hard_bounce"),
        (a, "new@example.com".to_string(), "hard_bounce"),
        (b, "old@example.com".to_string(), "hard_bounce"),
    ];
    assert_eq!(suppressions::add_many(&env.pg, &batch).await.unwrap(), 2);
    assert_eq!(
        suppression_rows(&env).await,
        {
            let mut rows = vec![
                format!("{a}:new@example.com:hard_bounce"),
                format!("{a}:old@example.com:unsubscribe"),
                format!("{b}:old@example.com:hard_bounce"),
            ];
            rows.sort();
            rows
        },
        "an address keeps its first reason"
    );

    let before = suppression_rows(&env).await;
    let bad = [
        (b, "x@example.com".to_string(), "hard_bounce"),
        (b, "y@example.com".to_string(), "bounced"),
    ];
    let err = suppressions::add_many(&env.pg, &bad).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(
        suppression_rows(&env).await,
        before,
        "a bad batch writes nothing"
    );
}
