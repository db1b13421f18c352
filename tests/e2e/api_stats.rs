//! API scenario: statistics. `GET /v1/campaigns/{id}` adds `rates` and `eta`
//! computed exactly from job states and delivery events; `GET
//! /v1/campaigns/{id}/stats`, `GET /v1/ips/{id}/stats` and `GET /v1/stats`
//! answer one row per day of the range plus totals. Job states, events and
//! rollup rows are written with SQL (the engine's actors write them in real
//! runs), so every count is known. Another tenant's campaign or IP is 404 and
//! its rows never count; bad query parameters answer 422 and change nothing.

use penguin_engine::store::events::{self, Event};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::support::api::{ApiClient, ApiServer, count, leads, snapshot};
use crate::support::{TestEnv, admin_token};

/// A started campaign of `n` leads on `ip`; returns its id.
async fn started_campaign(api: &ApiClient, token: &str, ip: Uuid, n: usize) -> Uuid {
    let campaign = api.create_campaign(token, &[ip]).await;
    api.add_leads(token, campaign, leads(n)).await.expect(200);
    api.action_ok(token, campaign, "start").await;
    campaign
}

/// Records events on the jobs of `campaign` by job rank (1 = lowest id):
/// `(rank, kind, reply, created_at SQL expression)`, through the Analytics
/// write (`store::events::record`: events and their rollups).
async fn insert_events(env: &TestEnv, campaign: Uuid, events: &[(i64, &str, &str, &str)]) {
    let jobs = env
        .psql(&format!(
            "SELECT tenant_id, id, ip_id FROM send_jobs WHERE campaign_id = '{campaign}' ORDER BY id"
        ))
        .await;
    let mut batch = Vec::new();
    for (rank, kind, reply, at) in events {
        let job = &jobs[*rank as usize - 1];
        let at: OffsetDateTime = env.psql(&format!("SELECT ({at})::timestamptz")).await[0].get(0);
        batch.push(Event {
            tenant_id: job.get(0),
            campaign_id: campaign,
            job_id: job.get(1),
            ip_id: job.get(2),
            kind: kind.to_string(),
            smtp_code: None,
            enhanced_code: None,
            class: None,
            provider: None,
            reply: (!reply.is_empty()).then(|| reply.to_string()),
            at,
            step: 1,
        });
    }
    events::record(&env.pg, &batch)
        .await
        .expect("events recorded");
}

fn parse_time(text: &Value) -> OffsetDateTime {
    let text = text.as_str().unwrap_or_else(|| panic!("a time: {text}"));
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[tokio::test]
async fn campaign_rates_and_eta_are_exact() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (other, other_token) = api.create_tenant("other").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = started_campaign(api, &token, ip, 20).await;
    let sibling = started_campaign(api, &token, ip, 3).await;
    let foreign_ip = api.add_ip(other, "127.0.0.3").await;
    let foreign = started_campaign(api, &other_token, foreign_ip, 3).await;
    let quiet = api.create_campaign(&token, &[ip]).await;

    // Jobs by rank: 1-6 sent, 7-8 bounced, 9 failed, 10 suppressed, 11 deferred,
    // 12-20 pending: 10 remaining.
    env.psql(&format!(
        "UPDATE send_jobs j SET status = CASE
             WHEN r.rank <= 6 THEN 'sent' WHEN r.rank <= 8 THEN 'bounced'
             WHEN r.rank = 9 THEN 'failed' WHEN r.rank = 10 THEN 'suppressed'
             WHEN r.rank = 11 THEN 'deferred' ELSE 'pending' END
         FROM (SELECT id, row_number() OVER (ORDER BY id) AS rank
               FROM send_jobs WHERE campaign_id = '{campaign}') r
         WHERE j.id = r.id"
    ))
    .await;
    let recent = "now() - interval '1 minute'";
    let old = "now() - interval '10 minutes'";
    insert_events(
        &env,
        campaign,
        &[
            (1, "sent", "", recent),
            (2, "sent", "", recent),
            (3, "sent", "", recent),
            (4, "sent", "", recent),
            (5, "sent", "", old),
            (6, "sent", "", old),
            (7, "deferred", "", recent),
            (7, "bounced", "", recent),
            (8, "bounced", "", old),
            (9, "failed", "", recent),
            (10, "suppressed", "", recent),
            (11, "deferred", "", recent),
            (1, "complaint", "", old),
            (2, "unsubscribed", "", recent),
            (1, "open", "", old),
            (2, "open", "", recent),
            (3, "open", "", old),
            (1, "click", "https://a.example/", recent),
            (1, "click", "https://b.example/", old),
            (4, "click", "https://a.example/", recent),
        ],
    )
    .await;
    // Neither the sibling's nor the other tenant's events count.
    for other_campaign in [sibling, foreign] {
        insert_events(
            &env,
            other_campaign,
            &[
                (1, "sent", "", recent),
                (1, "open", "", recent),
                (2, "complaint", "", recent),
                (3, "bounced", "", recent),
            ],
        )
        .await;
    }

    let before = OffsetDateTime::now_utc();
    let body = api.campaign(&token, campaign).await.expect(200).clone();
    let after = OffsetDateTime::now_utc();
    // The fields from before are all still there.
    for field in [
        "id",
        "name",
        "status",
        "priority",
        "from",
        "from_name",
        "subject",
        "text",
        "html",
        "ip_ids",
        "daily_cap",
        "send_window",
        "created_at",
        "started_at",
        "completed_at",
        "counts",
        "total",
    ] {
        assert!(body.get(field).is_some(), "{field} in {body:#}");
    }
    assert_eq!(body["total"], 20);
    assert_eq!(body["counts"]["sent"], 6);
    assert_eq!(body["counts"]["pending"], 9);
    let rates = json!({
        "sent_per_minute": 4.0 / 5.0,
        "finished_per_minute": 7.0 / 5.0,
        "attempted": 9,
        "delivered": 6,
        "delivery_rate": 6.0 / 9.0,
        "bounce_rate": 2.0 / 9.0,
        "complaints": 1,
        "complaint_rate": 1.0 / 6.0,
        "opened": 3,
        "open_rate": 3.0 / 6.0,
        "clicked": 2,
        "click_rate": 2.0 / 6.0,
        "replied": 0,
        "reply_rate": 0.0,
        "unsubscribes": 1,
        "unsubscribe_rate": 1.0 / 6.0,
    });
    assert_eq!(body["rates"], rates);
    // 10 remaining jobs at 7 finished per 300 s: ⌈3000 / 7⌉ = 429 s from now.
    let eta = parse_time(&body["eta"]);
    let wait = time::Duration::seconds(429);
    assert!(
        eta >= before + wait - time::Duration::seconds(1) && eta <= after + wait,
        "eta {eta}, asked between {before} and {after}"
    );

    // Paused: no ETA; the rates stay.
    api.action_ok(&token, campaign, "pause").await;
    let body = api.campaign(&token, campaign).await.expect(200).clone();
    assert_eq!(body["eta"], Value::Null);
    assert_eq!(body["rates"], rates);
    api.action_ok(&token, campaign, "resume").await;
    let body = api.campaign(&token, campaign).await.expect(200).clone();
    assert!(body["eta"].is_string(), "{body:#}");

    // Nothing recent: no ETA. Nothing left: no ETA.
    env.psql(&format!(
        "UPDATE campaign_minute_stats SET minute = minute - interval '6 minutes'
         WHERE campaign_id = '{campaign}' AND minute > now() - interval '5 minutes'"
    ))
    .await;
    let body = api.campaign(&token, campaign).await.expect(200).clone();
    assert_eq!(body["eta"], Value::Null);
    assert_eq!(body["rates"]["sent_per_minute"], 0.0);
    assert_eq!(body["rates"]["finished_per_minute"], 0.0);
    assert_eq!(body["rates"]["open_rate"], 0.5);
    insert_events(&env, campaign, &[(12, "sent", "", recent)]).await;
    let body = api.campaign(&token, campaign).await.expect(200).clone();
    assert!(body["eta"].is_string(), "{body:#}");
    env.psql(&format!(
        "UPDATE send_jobs SET status = 'cancelled'
         WHERE campaign_id = '{campaign}' AND status IN ('pending', 'deferred')"
    ))
    .await;
    let body = api.campaign(&token, campaign).await.expect(200).clone();
    assert_eq!(body["eta"], Value::Null);

    // A draft without jobs: zeros, no ETA.
    let body = api.campaign(&token, quiet).await.expect(200).clone();
    assert_eq!(body["eta"], Value::Null);
    assert_eq!(body["rates"]["attempted"], 0);
    assert_eq!(body["rates"]["bounce_rate"], 0.0);
    assert_eq!(body["rates"]["sent_per_minute"], 0.0);

    // The other tenant's campaign is not there for this tenant.
    api.campaign(&token, foreign)
        .await
        .assert_error(404, "not_found");
    let theirs = api
        .campaign(&other_token, foreign)
        .await
        .expect(200)
        .clone();
    assert_eq!(theirs["rates"]["complaints"], 1);
    assert_eq!(theirs["rates"]["opened"], 1);
}

/// `(tenant, campaign)` rollup rows: `(day, sent, deferred, bounced, failed)`.
async fn campaign_rollup(
    env: &TestEnv,
    tenant: Uuid,
    campaign: Uuid,
    rows: &[(&str, i64, i64, i64, i64)],
) {
    for (day, sent, deferred, bounced, failed) in rows {
        env.psql(&format!(
            "INSERT INTO campaign_daily_stats (tenant_id, campaign_id, day, sent, deferred, bounced, failed)
             VALUES ('{tenant}', '{campaign}', '{day}', {sent}, {deferred}, {bounced}, {failed})"
        ))
        .await;
    }
}

fn day(day: &str, counts: &[i64]) -> Value {
    let mut row = json!({ "day": day });
    let names = [
        "sent",
        "deferred",
        "bounced",
        "failed",
        "complaints",
        "unsubscribes",
        "opens",
        "clicks",
        "replies",
    ];
    for (name, n) in names.iter().zip(counts) {
        row[name] = json!(n);
    }
    row
}

#[tokio::test]
async fn stats_have_a_row_per_day_and_totals() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (other, other_token) = api.create_tenant("other").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let foreign_ip = api.add_ip(other, "127.0.0.3").await;
    let campaign = started_campaign(api, &token, ip, 4).await;
    let sibling = api.create_campaign(&token, &[ip]).await;
    let foreign = started_campaign(api, &other_token, foreign_ip, 2).await;

    campaign_rollup(
        &env,
        tenant,
        campaign,
        &[
            ("2026-02-28", 100, 0, 0, 0),
            ("2026-03-01", 10, 2, 1, 0),
            // The fifth `sent` of 3 March is the event below (recorded and
            // rolled up by `events::record`).
            ("2026-03-03", 4, 0, 2, 1),
        ],
    )
    .await;
    campaign_rollup(&env, tenant, sibling, &[("2026-03-03", 7, 1, 0, 3)]).await;
    campaign_rollup(&env, other, foreign, &[("2026-03-01", 1000, 1, 1, 1)]).await;
    insert_events(
        &env,
        campaign,
        &[
            (1, "open", "", "'2026-02-28 23:59:59Z'"),
            (2, "open", "", "'2026-03-01 00:00:00Z'"),
            (2, "click", "https://a.example/", "'2026-03-01 23:59:59Z'"),
            (2, "click", "https://b.example/", "'2026-03-01 13:00:00Z'"),
            (3, "complaint", "", "'2026-03-02 00:00:00Z'"),
            (4, "unsubscribed", "", "'2026-03-03 10:00:00Z'"),
            (4, "sent", "", "'2026-03-03 09:00:00Z'"),
            (3, "open", "", "'2026-03-04 00:00:00Z'"),
            (1, "replied", "", "'2026-03-03 23:59:59Z'"),
            (2, "replied", "", "'2026-03-04 00:00:00Z'"),
        ],
    )
    .await;
    insert_events(&env, foreign, &[(1, "open", "", "'2026-03-01 12:00:00Z'")]).await;

    let range = "from=2026-03-01&to=2026-03-03";
    let path = format!("/v1/campaigns/{campaign}/stats?{range}");
    let body = api.get(&path, Some(&token)).await.expect(200).clone();
    assert_eq!(
        body,
        json!({
            "campaign_id": campaign,
            "from": "2026-03-01",
            "to": "2026-03-03",
            "days": [
                day("2026-03-01", &[10, 2, 1, 0, 0, 0, 1, 2, 0]),
                day("2026-03-02", &[0, 0, 0, 0, 1, 0, 0, 0, 0]),
                day("2026-03-03", &[5, 0, 2, 1, 0, 1, 0, 0, 1]),
            ],
            "totals": { "sent": 15, "deferred": 2, "bounced": 3, "failed": 1,
                        "complaints": 1, "unsubscribes": 1, "opens": 1, "clicks": 2,
                        "replies": 1 },
        })
    );

    // The tenant: its two campaigns summed, never the other tenant's.
    let body = api
        .get(&format!("/v1/stats?{range}"), Some(&token))
        .await
        .expect(200)
        .clone();
    assert_eq!(
        body,
        json!({
            "tenant_id": tenant,
            "from": "2026-03-01",
            "to": "2026-03-03",
            "days": [
                day("2026-03-01", &[10, 2, 1, 0]),
                day("2026-03-02", &[0, 0, 0, 0]),
                day("2026-03-03", &[12, 1, 2, 4]),
            ],
            "totals": { "sent": 22, "deferred": 3, "bounced": 3, "failed": 4 },
        })
    );
    let theirs = api
        .get(&format!("/v1/stats?{range}"), Some(&other_token))
        .await
        .expect(200)
        .clone();
    assert_eq!(
        theirs["totals"],
        json!({ "sent": 1000, "deferred": 1, "bounced": 1, "failed": 1 })
    );
    assert_eq!(theirs["days"][0], day("2026-03-01", &[1000, 1, 1, 1]));

    // The IP: its rollup rows, for the owner and the admin alike.
    for (ip_id, tenant_id, day_text, sent) in [
        (ip, tenant, "2026-03-02", 8),
        (ip, tenant, "2026-03-04", 50),
        (foreign_ip, other, "2026-03-02", 999),
    ] {
        env.psql(&format!(
            "INSERT INTO ip_daily_stats (tenant_id, ip_id, day, sent, deferred, bounced, failed, complaints)
             VALUES ('{tenant_id}', '{ip_id}', '{day_text}', {sent}, 1, 1, 0, 2)"
        ))
        .await;
    }
    let path = format!("/v1/ips/{ip}/stats?{range}");
    let expected = json!({
        "ip_id": ip,
        "from": "2026-03-01",
        "to": "2026-03-03",
        "days": [
            day("2026-03-01", &[0, 0, 0, 0, 0]),
            day("2026-03-02", &[8, 1, 1, 0, 2]),
            day("2026-03-03", &[0, 0, 0, 0, 0]),
        ],
        "totals": { "sent": 8, "deferred": 1, "bounced": 1, "failed": 0, "complaints": 2 },
    });
    assert_eq!(api.get(&path, Some(&token)).await.expect(200), &expected);
    assert_eq!(
        api.get(&path, Some(admin_token())).await.expect(200),
        &expected
    );
    let path = format!("/v1/ips/{foreign_ip}/stats?{range}");
    let admin_view = api
        .get(&path, Some(admin_token()))
        .await
        .expect(200)
        .clone();
    assert_eq!(admin_view["totals"]["sent"], 999);

    // Without parameters: the last 30 days, ending today (UTC).
    let today_before = OffsetDateTime::now_utc().date();
    let body = api.get("/v1/stats", Some(&token)).await.expect(200).clone();
    let today_after = OffsetDateTime::now_utc().date();
    let days = body["days"].as_array().expect("days");
    assert_eq!(days.len(), 30);
    let to = body["to"].as_str().unwrap();
    assert!(
        [today_before.to_string(), today_after.to_string()].contains(&to.to_string()),
        "to {to}"
    );
    assert_eq!(days[29]["day"], to);
    assert_eq!(days[0]["day"], body["from"]);
    // Any range up to 400 days, zeros included.
    let body = api
        .get(
            &format!("/v1/campaigns/{sibling}/stats?to=2026-03-03&from=2025-02-01"),
            Some(&token),
        )
        .await
        .expect(200)
        .clone();
    assert_eq!(body["days"].as_array().unwrap().len(), 396);
    assert_eq!(body["totals"]["sent"], 7);
    let body = api
        .get("/v1/stats?from=2025-01-01&to=2026-02-04", Some(&token))
        .await
        .expect(200)
        .clone();
    assert_eq!(body["days"].as_array().unwrap().len(), 400);
}

#[tokio::test]
async fn foreign_ids_and_bad_queries_are_refused() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (other, other_token) = api.create_tenant("other").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let foreign_ip = api.add_ip(other, "127.0.0.3").await;
    let campaign = started_campaign(api, &token, ip, 2).await;
    let foreign = started_campaign(api, &other_token, foreign_ip, 2).await;
    campaign_rollup(&env, other, foreign, &[("2026-03-01", 5, 0, 0, 0)]).await;

    for path in [
        format!("/v1/campaigns/{foreign}/stats"),
        format!("/v1/campaigns/{}/stats", Uuid::now_v7()),
        format!("/v1/ips/{foreign_ip}/stats"),
        format!("/v1/ips/{}/stats", Uuid::now_v7()),
    ] {
        api.get(&path, Some(&token))
            .await
            .assert_error(404, "not_found");
    }
    api.get(
        &format!("/v1/ips/{}/stats", Uuid::now_v7()),
        Some(admin_token()),
    )
    .await
    .assert_error(404, "not_found");
    for path in [
        "/v1/stats".to_string(),
        format!("/v1/campaigns/{campaign}/stats"),
    ] {
        api.get(&path, Some(admin_token()))
            .await
            .assert_error(403, "forbidden");
        api.get(&path, None).await.assert_error(401, "unauthorized");
    }
    let mine = api
        .get("/v1/stats?from=2026-03-01&to=2026-03-01", Some(&token))
        .await;
    assert_eq!(mine.expect(200)["totals"]["sent"], 0);

    let before = snapshot(&env).await;
    let rollups =
        "SELECT (SELECT count(*) FROM campaign_daily_stats) + (SELECT count(*) FROM ip_daily_stats)
                          + (SELECT count(*) FROM delivery_events)";
    let rollups_before = count(&env, rollups).await;
    for route in [
        format!("/v1/campaigns/{campaign}/stats"),
        format!("/v1/ips/{ip}/stats"),
        "/v1/stats".to_string(),
    ] {
        for query in [
            "from=2026-13-01",
            "from=2026-02-30",
            "from=2026-1-01",
            "from=20260101",
            "to=tomorrow",
            "to=",
            "from=2026-03-05&to=2026-03-01",
            "from=2025-01-01&to=2026-02-05",
            "from=2026-03-01&from=2026-03-02",
            "foo=1",
            "limit=10",
        ] {
            let answer = api.get(&format!("{route}?{query}"), Some(&token)).await;
            answer.assert_error(422, "invalid_request");
            assert!(answer.body.get("days").is_none(), "{route}?{query}");
        }
    }
    assert_eq!(snapshot(&env).await, before);
    assert_eq!(count(&env, rollups).await, rollups_before);
}
