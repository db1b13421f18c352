//! Suppressions beyond one address of one tenant, end to end: the operator's
//! global list (addresses and `@domain`s) and a tenant's `@domain` and expiring
//! entries stop sending for every tenant they cover. Leads imported *before*
//! the entries end `suppressed` at their claim (the check before sending);
//! leads imported after are refused at import; a lapsed entry suppresses
//! nothing. The sink receives exactly the rest, counted by recipient. Only the
//! admin reaches the global list; bad entries change nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::admin_token;
use crate::support::api::{ApiClient, count, path_encode};
use crate::support::rig::Rig;

const LEADS: [&str; 7] = [
    "trap@spam.test",    // global address
    "x@blocked.test",    // global domain
    "y@Blocked.test",    // global domain, upper case at import
    "keep@ok.test",      // sent
    "mine@tdomain.test", // tenant 0's domain entry only
    "old@ok.test",       // tenant 0's entry, lapsed
    "soon@ok.test",      // tenant 1's entry, in force until next hour
];

fn leads_body() -> Vec<Value> {
    LEADS
        .iter()
        .map(|e| json!({ "email": e, "fields": { "first_name": "Pat" } }))
        .collect()
}

/// Recipients the sink accepted, per source IP.
fn received(rig: &Rig) -> BTreeSet<(String, String)> {
    rig.sink
        .messages()
        .into_iter()
        .flat_map(|m| {
            let ip = m.source_ip.to_string();
            m.rcpt_to.into_iter().map(move |r| (ip.clone(), r))
        })
        .collect()
}

async fn rows(rig: &Rig) -> i64 {
    count(&rig.env, "SELECT count(*) FROM global_suppressions").await
        + 1000 * count(&rig.env, "SELECT count(*) FROM suppressions").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn global_domain_and_expiring_suppressions_stop_every_tenant() {
    let rig = Rig::start(|_| {}).await;
    let mut scenario = rig
        .scenario(vec![vec!["127.0.0.2"], vec!["127.0.0.3"]], 0)
        .await;
    scenario.total = 2 * LEADS.len() as u64;
    let api = ApiClient::new(&rig.node().api_url());
    let (t0, t1) = (&scenario.tenants[0], &scenario.tenants[1]);
    for t in [t0, t1] {
        let accepted = scenario
            .client
            .add_leads(&t.token, t.campaign, &leads_body(), 1_000)
            .await
            .expect("leads accepted");
        assert_eq!(accepted, LEADS.len() as u64, "nothing is suppressed yet");
    }

    // Bad entries and callers change nothing.
    let before = rows(&rig).await;
    for body in [
        json!({ "emails": ["trap@spam.test"], "reason": "nope" }),
        json!({ "emails": ["trap@spam.test"], "note": "x".repeat(501) }),
        json!({ "emails": ["trap@spam.test"], "expires_at": "2001-01-01T00:00:00Z" }),
        json!({ "emails": [] }),
        json!({ "emails": ["trap@spam.test"], "extra": 1 }),
    ] {
        api.post("/v1/suppressions/global", Some(admin_token()), &body)
            .await
            .assert_error(422, "invalid_request");
    }
    api.post(
        "/v1/suppressions/global",
        Some(&t0.token),
        &json!({ "emails": ["a@b.test"] }),
    )
    .await
    .assert_error(403, "forbidden");
    api.get("/v1/suppressions/global", Some(&t0.token))
        .await
        .assert_error(403, "forbidden");
    api.post(
        "/v1/suppressions",
        Some(&t0.token),
        &json!({ "emails": ["a@b.test"], "expires_at": "2001-01-01T00:00:00Z" }),
    )
    .await
    .assert_error(422, "invalid_request");
    assert_eq!(rows(&rig).await, before);

    // The operator's list: an address and a whole domain, for everyone.
    let added = api
        .post(
            "/v1/suppressions/global",
            Some(admin_token()),
            &json!({ "emails": ["Trap@Spam.test", "@Blocked.TEST", "@", "@nodot", "a@b@c.test"],
                     "reason": "spam_trap", "note": "from the trap feed" }),
        )
        .await;
    let body = added.expect(200);
    assert_eq!(
        (body["added"].as_u64(), body["already"].as_u64()),
        (Some(2), Some(0))
    );
    let rejected: Vec<u64> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, [2, 3, 4]);
    let list = api
        .get("/v1/suppressions/global", Some(admin_token()))
        .await;
    let entries: Vec<&str> = list.expect(200)["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["email"].as_str().unwrap())
        .collect();
    assert_eq!(entries, ["@blocked.test", "trap@spam.test"]);

    // Tenant 0: a domain of its own, and an entry that has lapsed. Tenant 1:
    // an entry in force for another hour.
    let in_an_hour = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = api
        .post(
            "/v1/suppressions",
            Some(&t0.token),
            &json!({ "emails": ["@TDomain.test"] }),
        )
        .await;
    assert_eq!(body.expect(200)["added"], json!(1));
    let body = api
        .post(
            "/v1/suppressions",
            Some(&t0.token),
            &json!({ "emails": ["old@ok.test"], "expires_at": in_an_hour }),
        )
        .await;
    assert_eq!(body.expect(200)["added"], json!(1));
    rig.env
        .psql("UPDATE suppressions SET expires_at = now() - interval '1 second' WHERE email = 'old@ok.test'")
        .await;
    let body = api
        .post(
            "/v1/suppressions",
            Some(&t1.token),
            &json!({ "emails": ["soon@ok.test"], "expires_at": in_an_hour }),
        )
        .await;
    assert_eq!(body.expect(200)["added"], json!(1));
    let listed = api.get("/v1/suppressions", Some(&t1.token)).await;
    assert!(listed.expect(200)["suppressions"][0]["expires_at"].is_string());

    // Both campaigns run: the jobs queued before the entries end `suppressed`.
    scenario.start().await.unwrap();
    rig.wait_until_done(&scenario, Duration::from_secs(30))
        .await;
    rig.wait_for_sink(6, Duration::from_secs(30)).await;
    rig.wait_until_quiet().await;
    let want: BTreeSet<(String, String)> = [
        ("127.0.0.2", "keep@ok.test"),
        ("127.0.0.2", "old@ok.test"),
        ("127.0.0.2", "soon@ok.test"),
        ("127.0.0.3", "keep@ok.test"),
        ("127.0.0.3", "old@ok.test"),
        ("127.0.0.3", "mine@tdomain.test"),
    ]
    .into_iter()
    .map(|(ip, r)| (ip.to_string(), r.to_string()))
    .collect();
    assert_eq!(received(&rig), want);
    assert_eq!(rig.sink.stats().messages_accepted, 6, "no copies");
    let jobs = rig.job_counts().await;
    assert_eq!(
        (jobs.get("sent"), jobs.get("suppressed")),
        (Some(&6), Some(&8))
    );
    let reasons = rig
        .env
        .psql(
            "SELECT l.email, j.last_reply FROM send_jobs j
             JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             WHERE j.status = 'suppressed' AND j.tenant_id = (SELECT tenant_id FROM leads
                                                            WHERE email = 'mine@tdomain.test'
                                                            ORDER BY tenant_id LIMIT 1)
             ORDER BY l.email",
        )
        .await;
    let reasons: Vec<(String, String)> = reasons.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        reasons
            .iter()
            .any(|(e, why)| e == "trap@spam.test" && why.contains("spam_trap (global)")),
        "{reasons:?}"
    );

    // After the entries, import refuses what they cover, for both tenants
    // (into new drafts: the first campaigns are completed).
    let mut drafts = Vec::new();
    for t in [t0, t1] {
        let draft = api.create_campaign(&t.token, &[t.ips[0].0]).await;
        let answer = api
            .add_leads(
                &t.token,
                draft,
                json!([{ "email": "new@blocked.test" }, { "email": "fresh@ok.test" }]),
            )
            .await;
        let body = answer.expect(200).clone();
        assert_eq!(
            (body["accepted"].clone(), body["suppressed"].clone()),
            (json!(1), json!(1)),
            "{body}"
        );
        drafts.push(draft);
    }
    // Lifting the domain lets it in again.
    let path = format!("/v1/suppressions/global/{}", path_encode("@blocked.test"));
    api.delete(&path, Some(admin_token())).await.expect(204);
    api.delete(&path, Some(admin_token()))
        .await
        .assert_error(404, "not_found");
    let answer = api
        .add_leads(
            &t0.token,
            drafts[0],
            json!([{ "email": "new@blocked.test" }]),
        )
        .await;
    assert_eq!(answer.expect(200)["accepted"], json!(1));
    rig.shutdown().await;
}
