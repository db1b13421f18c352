//! API scenario: sequences (issue 18), the API's part. A campaign takes
//! follow-up `steps`, refused as a whole (422 naming the step, nothing stored)
//! when there are too many, a delay is too short or a step's template breaks;
//! stored ones are shown with `step_count` and per-step counts. `POST
//! /v1/replies` stops a lead's sequence once: its waiting jobs end `cancelled`,
//! one `replied` event and one `replied` in the step's rollup, a repeat records
//! nothing and answers the same `stopped_steps`; an auto-reply stops nothing.
//! The first open and the first click of a job count once for its step.
//! (The engine's follow-up sending is proved by the sequence scenarios.)

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::TestEnv;
use crate::support::api::{ApiClient, ApiServer, campaign_body, count, leads, snapshot};

/// A campaign body with two follow-ups: step 2 threaded after 60 s, step 3
/// with its own subject a day later.
fn sequence_body(ip: Uuid) -> Value {
    let mut body = campaign_body(&[ip]);
    body["steps"] = json!([
        { "delay_secs": 60, "text": "Following up, {{ first_name }}" },
        { "delay_secs": 86_400, "subject": "Last try", "text": "Bye {{ first_name }}",
          "html": "<p>Bye</p>" },
    ]);
    body
}

async fn tenant_with_ip(api: &ApiClient, name: &str, address: &str) -> (Uuid, String, Uuid) {
    let (tenant, token) = api.create_tenant(name).await;
    let ip = api.add_ip(tenant, address).await;
    (tenant, token, ip)
}

#[tokio::test]
async fn steps_are_validated_stored_and_shown() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |config| config.sequences.max_steps = 4).await;
    let api = &server.api;
    let (_, token, ip) = tenant_with_ip(api, "acme", "127.0.0.2").await;
    let before = snapshot(&env).await;

    let step = |delay: i64, text: &str| json!({ "delay_secs": delay, "text": text });
    let with_steps = |steps: Value| {
        let mut body = campaign_body(&[ip]);
        body["steps"] = steps;
        body
    };
    let refused = [
        (
            with_steps(json!([
                step(60, "a"),
                step(60, "b"),
                step(60, "c"),
                step(60, "d")
            ])),
            "steps holds 4 follow-ups; at most 3",
        ),
        (
            with_steps(json!([step(60, "a"), step(59, "b")])),
            "steps[1] (step 3).delay_secs must be at least 60",
        ),
        (
            with_steps(json!([step(60, "a"), step(31_622_401, "b")])),
            "steps[1] (step 3).delay_secs must be at most 31622400",
        ),
        (
            with_steps(json!([step(60, "a"), step(60, "Bye {{ first_name")])),
            "steps[1] (step 3).text",
        ),
        (
            with_steps(json!([{ "delay_secs": 60, "subject": "Re\r\nBcc: x@y.com", "text": "a" }])),
            "steps[0] (step 2).subject",
        ),
        (
            with_steps(json!([{ "delay_secs": 60, "text": "a", "html": "<p>{% if %}</p>" }])),
            "steps[0] (step 2).html",
        ),
    ];
    for (body, message) in refused {
        let answer = api.create_campaign_with(&token, &body).await;
        answer.assert_error(422, "invalid_request");
        assert!(
            answer.message().starts_with(message),
            "{message:?} vs {:?}",
            answer.message()
        );
    }
    assert_eq!(
        snapshot(&env).await,
        before,
        "a refused campaign stores nothing"
    );

    let answer = api.create_campaign_with(&token, &sequence_body(ip)).await;
    let created = answer.expect(201).clone();
    let id = answer.id();
    assert_eq!(created["step_count"], 3);
    let steps = created["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(
        (
            &steps[0]["step"],
            &steps[0]["delay_secs"],
            &steps[0]["subject"]
        ),
        (&json!(1), &json!(0), &json!("Hi {{ first_name }}"))
    );
    assert_eq!(steps[0]["html"], "<p>Hello {{ first_name }}</p>");
    assert_eq!(
        (
            &steps[1]["step"],
            &steps[1]["delay_secs"],
            &steps[1]["subject"]
        ),
        (&json!(2), &json!(60), &Value::Null)
    );
    assert_eq!(steps[1]["text"], "Following up, {{ first_name }}");
    assert_eq!(
        (&steps[2]["step"], &steps[2]["subject"], &steps[2]["html"]),
        (&json!(3), &json!("Last try"), &json!("<p>Bye</p>"))
    );
    for step in steps {
        for key in ["sent", "bounced", "opened", "clicked", "replied", "waiting"] {
            assert_eq!(step[key], 0, "{key} of {step}");
        }
    }
    let stored = count(
        &env,
        &format!("SELECT count(*) FROM campaign_steps WHERE campaign_id = '{id}'"),
    )
    .await;
    assert_eq!(stored, 2);

    api.add_leads(&token, id, leads(2)).await.expect(200);
    api.action_ok(&token, id, "start").await;
    let shown = api.campaign(&token, id).await.expect(200).clone();
    assert_eq!(shown["step_count"], 3);
    assert_eq!(shown["steps"].as_array().unwrap().len(), 3);
    assert_eq!(shown["steps"][0]["waiting"], 2, "{shown}");
    assert_eq!(shown["steps"][1]["waiting"], 0);
    assert_eq!(shown["steps"][2]["subject"], "Last try");

    let single = api.create_campaign(&token, &[ip]).await;
    let shown = api.campaign(&token, single).await.expect(200).clone();
    assert_eq!(shown["step_count"], 1);
    assert_eq!(shown["steps"].as_array().unwrap().len(), 1);

    let list = api
        .get("/v1/campaigns", Some(&token))
        .await
        .expect(200)
        .clone();
    let listed = list["campaigns"].as_array().unwrap();
    let listed = listed.iter().find(|c| c["id"] == id.to_string()).unwrap();
    assert_eq!(listed["step_count"], 3);
    assert!(listed.get("steps").is_none(), "lists show step_count only");
}

/// `(lead id, step-1 job id)` of `email` in `campaign`.
async fn lead_job(env: &TestEnv, campaign: Uuid, email: &str) -> (Uuid, Uuid) {
    let rows = env
        .psql(&format!(
            "SELECT l.id, j.id FROM leads l JOIN send_jobs j ON j.lead_id = l.id AND j.step = 1
             WHERE l.campaign_id = '{campaign}' AND l.email = '{email}'"
        ))
        .await;
    (rows[0].get(0), rows[0].get(1))
}

/// Marks the lead's step 1 sent as `message_id` from `ip` and gives it a
/// waiting step 2, as the engine would have.
async fn sent_with_follow_up(
    env: &TestEnv,
    tenant: Uuid,
    campaign: Uuid,
    email: &str,
    ip: Uuid,
    message_id: &str,
) -> Uuid {
    let (lead, job) = lead_job(env, campaign, email).await;
    env.psql(&format!(
        "UPDATE send_jobs SET status = 'sent', message_id = '{message_id}', ip_id = '{ip}'
         WHERE id = '{job}'"
    ))
    .await;
    env.psql(&format!(
        "INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority, run_at, step, thread)
         VALUES ('{tenant}', gen_random_uuid(), '{campaign}', '{lead}', 100,
                 now() + interval '1 hour', 2, ARRAY['{message_id}'])"
    ))
    .await;
    job
}

async fn reply(api: &ApiClient, token: &str, body: Value) -> Value {
    api.post("/v1/replies", Some(token), &body)
        .await
        .expect(200)
        .clone()
}

#[tokio::test]
async fn a_reply_stops_the_sequence_once() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token, ip) = tenant_with_ip(api, "acme", "127.0.0.2").await;
    let (_, other_token, _) = tenant_with_ip(api, "other", "127.0.0.3").await;
    let campaign = api
        .create_campaign_with(&token, &sequence_body(ip))
        .await
        .id();
    api.add_leads(&token, campaign, leads(3)).await.expect(200);
    api.action_ok(&token, campaign, "start").await;
    let job0 = sent_with_follow_up(
        &env,
        tenant,
        campaign,
        "lead0@example.com",
        ip,
        "m0@sender.example.com",
    )
    .await;
    let events = |kind: &'static str| {
        let sql = format!(
            "SELECT count(*) FROM delivery_events WHERE campaign_id = '{campaign}' AND kind = '{kind}'"
        );
        let env = &env;
        async move { count(env, &sql).await }
    };

    // Unknown, foreign and malformed ones change nothing.
    let before = snapshot(&env).await;
    for (who, body) in [
        (
            &token,
            json!({ "message_id": "<nobody@sender.example.com>" }),
        ),
        (
            &token,
            json!({ "campaign_id": campaign, "email": "stranger@example.com" }),
        ),
        (
            &token,
            json!({ "campaign_id": Uuid::now_v7(), "email": "lead0@example.com" }),
        ),
        (
            &other_token,
            json!({ "message_id": "m0@sender.example.com" }),
        ),
        (
            &other_token,
            json!({ "campaign_id": campaign, "email": "lead0@example.com" }),
        ),
    ] {
        let answer = api.post("/v1/replies", Some(who), &body).await;
        answer.assert_error(404, "not_found");
    }
    for body in [
        json!({}),
        json!({ "auto": true }),
        json!({ "campaign_id": campaign }),
        json!({ "message_id": "m0@sender.example.com", "campaign_id": campaign,
                "email": "lead0@example.com" }),
        json!({ "message_id": "not a message id" }),
        json!({ "message_id": format!("<{}@x.example>", "a".repeat(1_000)) }),
    ] {
        let answer = api.post("/v1/replies", Some(&token), &body).await;
        answer.assert_error(422, "invalid_request");
    }
    assert_eq!(
        snapshot(&env).await,
        before,
        "refused replies change nothing"
    );

    // The first reply to step 1 stops step 2 and 3: step 1 was sent.
    let first = reply(
        api,
        &token,
        json!({ "message_id": "<M0@Sender.example.com>" }),
    )
    .await;
    assert_eq!(first["stopped_steps"], 2, "{first}");
    assert_eq!(first["recorded"], true);
    assert_eq!(first["campaign_id"], campaign.to_string());
    assert_eq!(first["job_id"], job0.to_string());
    let cancelled = env
        .psql(&format!(
            "SELECT j.step, j.status, j.last_reply, l.stop_reason, l.replied_at IS NOT NULL
             FROM send_jobs j JOIN leads l ON l.id = j.lead_id
             WHERE j.campaign_id = '{campaign}' AND l.email = 'lead0@example.com' ORDER BY j.step"
        ))
        .await;
    let rows: Vec<String> = cancelled
        .iter()
        .map(|r| {
            let (step, status): (i32, String) = (r.get(0), r.get(1));
            let (last, reason): (Option<String>, Option<String>) = (r.get(2), r.get(3));
            let replied: bool = r.get(4);
            format!("{step} {status} {last:?} {reason:?} {replied}")
        })
        .collect();
    assert_eq!(
        rows,
        [
            r#"1 sent None Some("replied") true"#,
            r#"2 cancelled Some("sequence stopped: replied") Some("replied") true"#,
        ]
    );
    assert_eq!(events("replied").await, 1);

    // A repeat, by address this time: same answer, nothing recorded.
    let before = snapshot(&env).await;
    let again = reply(
        api,
        &token,
        json!({ "campaign_id": campaign, "email": " LEAD0@example.com " }),
    )
    .await;
    assert_eq!(again["stopped_steps"], 2);
    assert_eq!(again["recorded"], false);
    assert_eq!(again["job_id"], job0.to_string());
    assert_eq!(
        snapshot(&env).await,
        before,
        "a repeated reply changes nothing"
    );

    let shown = api.campaign(&token, campaign).await.expect(200).clone();
    assert_eq!(shown["steps"][0]["replied"], 1, "{shown}");
    assert_eq!(shown["steps"][1]["replied"], 0);
    assert_eq!(shown["rates"]["replied"], 1);
    let stats = api
        .get(&format!("/v1/campaigns/{campaign}/stats"), Some(&token))
        .await
        .expect(200)
        .clone();
    assert_eq!(stats["totals"]["replies"], 1, "{stats}");

    // A lead that has not been sent anything yet: every step stops, the reply
    // is recorded on its step-1 job, which ends cancelled.
    let (_, job1) = lead_job(&env, campaign, "lead1@example.com").await;
    let answer = reply(
        api,
        &token,
        json!({ "campaign_id": campaign, "email": "lead1@example.com" }),
    )
    .await;
    assert_eq!(answer["stopped_steps"], 3, "{answer}");
    assert_eq!(
        (&answer["recorded"], &answer["job_id"]),
        (&json!(true), &json!(job1.to_string()))
    );
    let status = env
        .psql(&format!("SELECT status FROM send_jobs WHERE id = '{job1}'"))
        .await;
    assert_eq!(status[0].get::<_, String>(0), "cancelled");
    assert_eq!(events("replied").await, 2);

    // An auto-reply is recorded once and stops nothing.
    let job2 = sent_with_follow_up(
        &env,
        tenant,
        campaign,
        "lead2@example.com",
        ip,
        "m2@sender.example.com",
    )
    .await;
    let before = count(&env, &format!("SELECT count(*) FROM send_jobs WHERE campaign_id = '{campaign}' AND status = 'cancelled'")).await;
    let auto = json!({ "message_id": "m2@sender.example.com", "auto": true });
    let answer = reply(api, &token, auto.clone()).await;
    assert_eq!(answer["stopped_steps"], 0);
    assert_eq!(
        (&answer["recorded"], &answer["job_id"]),
        (&json!(true), &json!(job2.to_string()))
    );
    let answer = reply(api, &token, auto).await;
    assert_eq!(answer["recorded"], false);
    assert_eq!(events("auto_replied").await, 1);
    assert_eq!(events("replied").await, 2);
    let after = count(&env, &format!("SELECT count(*) FROM send_jobs WHERE campaign_id = '{campaign}' AND status = 'cancelled'")).await;
    assert_eq!(after, before, "an auto-reply cancels nothing");
    let stopped = count(&env, &format!("SELECT count(*) FROM leads WHERE campaign_id = '{campaign}' AND email = 'lead2@example.com' AND stopped_at IS NULL")).await;
    assert_eq!(stopped, 1);
}

#[tokio::test]
async fn a_reply_before_the_start_keeps_the_lead_out() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (_, token, ip) = tenant_with_ip(api, "acme", "127.0.0.2").await;
    let campaign = api
        .create_campaign_with(&token, &sequence_body(ip))
        .await
        .id();
    api.add_leads(&token, campaign, leads(2)).await.expect(200);
    let body = json!({ "campaign_id": campaign, "email": "lead0@example.com" });
    let answer = reply(api, &token, body.clone()).await;
    assert_eq!(answer["stopped_steps"], 3, "{answer}");
    assert_eq!(answer["recorded"], true);
    assert_eq!(answer["job_id"], Value::Null, "a draft has no jobs yet");
    let answer = reply(api, &token, body).await;
    assert_eq!(
        (&answer["stopped_steps"], &answer["recorded"]),
        (&json!(3), &json!(false))
    );

    api.action_ok(&token, campaign, "start").await;
    let jobs = env
        .psql(&format!(
            "SELECT l.email FROM send_jobs j JOIN leads l ON l.id = j.lead_id
             WHERE j.campaign_id = '{campaign}'"
        ))
        .await;
    let emails: Vec<String> = jobs.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        emails,
        vec!["lead1@example.com"],
        "the lead that replied gets nothing"
    );
}

#[tokio::test]
async fn first_opens_and_clicks_count_once_per_step() {
    use penguin_engine::store::engagement::{record_click, record_open};
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token, ip) = tenant_with_ip(api, "acme", "127.0.0.2").await;
    let campaign = api
        .create_campaign_with(&token, &sequence_body(ip))
        .await
        .id();
    api.add_leads(&token, campaign, leads(2)).await.expect(200);
    api.action_ok(&token, campaign, "start").await;
    sent_with_follow_up(
        &env,
        tenant,
        campaign,
        "lead0@example.com",
        ip,
        "m0@sender.example.com",
    )
    .await;
    let (_, job0) = lead_job(&env, campaign, "lead0@example.com").await;
    let (_, job1) = lead_job(&env, campaign, "lead1@example.com").await;
    let step2 = env
        .psql(&format!(
            "SELECT id FROM send_jobs WHERE campaign_id = '{campaign}' AND step = 2"
        ))
        .await[0]
        .get::<_, Uuid>(0);

    assert!(record_open(&env.pg, tenant, job0).await.unwrap());
    assert!(!record_open(&env.pg, tenant, job0).await.unwrap());
    assert!(record_open(&env.pg, tenant, job1).await.unwrap());
    assert!(record_open(&env.pg, tenant, step2).await.unwrap());
    assert!(
        record_click(&env.pg, tenant, job0, "https://a.example/")
            .await
            .unwrap()
    );
    assert!(
        record_click(&env.pg, tenant, job0, "https://b.example/")
            .await
            .unwrap()
    );
    assert!(
        !record_click(&env.pg, tenant, job0, "https://a.example/")
            .await
            .unwrap()
    );
    assert!(
        record_click(&env.pg, tenant, step2, "https://a.example/")
            .await
            .unwrap()
    );
    assert!(!record_open(&env.pg, tenant, Uuid::now_v7()).await.unwrap());

    let shown = api.campaign(&token, campaign).await.expect(200).clone();
    let steps = &shown["steps"];
    assert_eq!(
        (&steps[0]["opened"], &steps[0]["clicked"]),
        (&json!(2), &json!(1)),
        "{shown}"
    );
    assert_eq!(
        (&steps[1]["opened"], &steps[1]["clicked"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(steps[1]["waiting"], 1);
    assert_eq!(
        (&steps[2]["opened"], &steps[2]["clicked"]),
        (&json!(0), &json!(0))
    );
}
