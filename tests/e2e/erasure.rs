//! Erasure on request (issue 23): `DELETE /v1/leads?email=` erases an address
//! from every campaign of the calling tenant, and only that tenant; `POST
//! /v1/erasures` (admin) from every tenant.
//!
//! Proven here, with real sends to the loopback sink (which defers the
//! address, echoing it in mixed case in its reply): the address's leads and
//! jobs are gone; its delivery events stay, with the counts and rollups they
//! had, but no event text holds the address any more (its pseudonym does);
//! the address stays suppressed (a re-import counts it `suppressed` and
//! creates nothing); an audit row is written that holds no address; the
//! other tenant is untouched until the admin erases it there too. Bad input
//! (no email, a malformed one) is 422 and changes nothing; a tenant token on
//! the admin route is 403. The storage gauges are exported.

use std::time::Duration;

use penguin_engine::sink::{Rule, RuleStage};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::{ApiClient, count, snapshot};
use crate::support::rig::Rig;
use crate::support::{admin_token, wait_for};

const GONE: &str = "gone@erase.test";

async fn add_leads(api: &ApiClient, token: &str, campaign: Uuid, emails: &[&str]) -> Value {
    let leads: Vec<Value> = emails
        .iter()
        .map(|e| json!({ "email": e, "fields": { "first_name": "Pat" } }))
        .collect();
    api.post(
        &format!("/v1/campaigns/{campaign}/leads"),
        Some(token),
        &json!({ "leads": leads }),
    )
    .await
    .expect(200)
    .clone()
}

/// Per tenant: events, events whose text holds the address, its leads, its
/// jobs, and the campaign rollups as text.
async fn state_of(rig: &Rig, tenant: Uuid) -> (i64, i64, i64, i64, String) {
    let env = &rig.env;
    let events = count(
        env,
        &format!("SELECT count(*) FROM delivery_events WHERE tenant_id = '{tenant}'"),
    )
    .await;
    let mentions = count(
        env,
        &format!(
            "SELECT count(*) FROM delivery_events WHERE tenant_id = '{tenant}' \
             AND reply ILIKE '%{GONE}%'"
        ),
    )
    .await;
    let leads = count(
        env,
        &format!("SELECT count(*) FROM leads WHERE tenant_id = '{tenant}' AND email = '{GONE}'"),
    )
    .await;
    let jobs = count(
        env,
        &format!(
            "SELECT count(*) FROM send_jobs j JOIN leads l ON l.tenant_id = j.tenant_id \
             AND l.id = j.lead_id WHERE j.tenant_id = '{tenant}' AND l.email = '{GONE}'"
        ),
    )
    .await;
    let rollups: String = env
        .psql(&format!(
            "SELECT coalesce(string_agg(s::text, ';' ORDER BY s::text), '') \
             FROM campaign_daily_stats s WHERE tenant_id = '{tenant}'"
        ))
        .await[0]
        .get(0);
    (events, mentions, leads, jobs, rollups)
}

/// Erases until no message to the address is mid-SMTP (409 meanwhile).
async fn erase(api: &ApiClient, path: &str, token: &str, body: Option<&Value>) -> Value {
    wait_for(
        "an erasure that is not refused",
        Duration::from_secs(30),
        || async {
            let answer = match body {
                Some(body) => api.post(path, Some(token), body).await,
                None => api.delete(path, Some(token)).await,
            };
            match answer.status {
                200 => Some(answer.body),
                409 => None,
                other => panic!("erasure answered {other}: {}", answer.body),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erased_address_is_gone_pseudonymised_and_suppressed() {
    let rig = Rig::start(|_| {}).await;
    rig.sink
        .set_rules(vec![Rule {
            recipient_pattern: GONE.into(),
            stage: RuleStage::Rcpt,
            reply: Some("450 4.2.1 <Gone@Erase.TEST>: mailbox busy, try later".into()),
            times: None,
            delay_ms: None,
            drop_connection: false,
        }])
        .expect("rules");
    let scenario = rig
        .scenario(vec![vec!["127.0.0.2"], vec!["127.0.0.3"]], 0)
        .await;
    let api = ApiClient::new(&rig.node().api_url());
    let (a, b) = (&scenario.tenants[0], &scenario.tenants[1]);
    let a_second = api.create_campaign(&a.token, &[a.ips[0].0]).await;
    add_leads(&api, &a.token, a.campaign, &[GONE, "keep1@erase.test"]).await;
    add_leads(
        &api,
        &a.token,
        a_second,
        &["Gone@Erase.test", "keep2@erase.test"],
    )
    .await;
    add_leads(&api, &b.token, b.campaign, &[GONE, "keepb@erase.test"]).await;

    // Bad input changes nothing (nothing runs yet: the campaigns are drafts).
    let before = snapshot(&rig.env).await;
    for path in [
        "/v1/leads",
        "/v1/leads?email=not-an-address",
        "/v1/leads?email=",
    ] {
        api.delete(path, Some(&a.token))
            .await
            .assert_error(422, "invalid_request");
    }
    api.delete(
        &format!("/v1/leads?email={GONE}&campaign=x"),
        Some(&a.token),
    )
    .await
    .assert_error(422, "invalid_request");
    for body in [
        json!({}),
        json!({ "email": "no-at-sign" }),
        json!({ "email": GONE, "x": 1 }),
    ] {
        let answer = api.post("/v1/erasures", Some(admin_token()), &body).await;
        assert_eq!(answer.status, 422, "{body}: {}", answer.body);
    }
    api.post("/v1/erasures", Some(&a.token), &json!({ "email": GONE }))
        .await
        .assert_error(403, "forbidden");
    api.delete(&format!("/v1/leads?email={GONE}"), Some(admin_token()))
        .await
        .assert_error(403, "forbidden");
    assert_eq!(
        snapshot(&rig.env).await,
        before,
        "a refused erasure changed something"
    );

    for (token, campaign) in [
        (&a.token, a.campaign),
        (&a.token, a_second),
        (&b.token, b.campaign),
    ] {
        api.post(
            &format!("/v1/campaigns/{campaign}/start"),
            Some(token),
            &json!({}),
        )
        .await
        .expect(200);
    }
    // The kept addresses are delivered; the erased one is deferred in every
    // campaign, its reply naming it.
    rig.wait_for_sink(3, Duration::from_secs(60)).await;
    for tenant in [a.id, b.id] {
        let want = if tenant == a.id { 2 } else { 1 };
        wait_for(
            "deferrals naming the address",
            Duration::from_secs(60),
            || async { (state_of(&rig, tenant).await.1 >= want).then_some(()) },
        )
        .await;
    }
    let (a_events, _, a_leads, a_jobs, a_rollups) = state_of(&rig, a.id).await;
    assert_eq!((a_leads, a_jobs), (2, 2));
    let b_before = state_of(&rig, b.id).await;

    // The tenant's erasure: A only.
    let erased = erase(&api, "/v1/leads?email=GONE@erase.test", &a.token, None).await;
    assert!(
        !erased.to_string().to_lowercase().contains(GONE),
        "{erased}"
    );
    let hash = erased["email_hash"]
        .as_str()
        .expect("email_hash")
        .to_string();
    assert!(hash.starts_with("erased:") && hash.len() == 23, "{hash}");
    assert_eq!(erased["tenants"], 1);
    assert_eq!(erased["leads"], 2);
    assert_eq!(erased["jobs"], 2);
    assert_eq!(erased["suppressed"], true);
    assert!(
        erased["events_rewritten"].as_u64().unwrap() >= 2,
        "{erased}"
    );
    assert!(erased["events"].as_u64().unwrap() >= erased["events_rewritten"].as_u64().unwrap());

    let (events, mentions, leads, jobs, rollups) = state_of(&rig, a.id).await;
    assert_eq!(
        (leads, jobs, mentions),
        (0, 0, 0),
        "the address is left in tenant A"
    );
    assert_eq!(events, a_events, "events were deleted, not pseudonymised");
    assert_eq!(rollups, a_rollups, "rollups changed");
    let pseudonymised = count(
        &rig.env,
        &format!(
            "SELECT count(*) FROM delivery_events WHERE tenant_id = '{}' AND reply LIKE '%{hash}%'",
            a.id
        ),
    )
    .await;
    assert_eq!(
        pseudonymised as u64,
        erased["events_rewritten"].as_u64().unwrap()
    );
    // The kept leads stay.
    assert_eq!(
        count(
            &rig.env,
            &format!("SELECT count(*) FROM leads WHERE tenant_id = '{}'", a.id)
        )
        .await,
        2
    );
    // Tenant B is untouched (its deferred job may retry, never disappear).
    let b_now = state_of(&rig, b.id).await;
    assert_eq!((b_now.2, b_now.3), (1, 1), "tenant B lost its lead");
    assert!(b_now.1 >= b_before.1);
    // Suppressed for good, so a re-import creates nothing.
    let reason: Vec<String> = rig
        .env
        .psql(&format!(
            "SELECT reason FROM suppressions WHERE tenant_id = '{}' AND email = '{GONE}' \
             AND expires_at IS NULL",
            a.id
        ))
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(reason, ["erasure"]);
    let third = api.create_campaign(&a.token, &[a.ips[0].0]).await;
    let import = add_leads(
        &api,
        &a.token,
        third,
        &["GONE@erase.test", "new@erase.test"],
    )
    .await;
    assert_eq!(
        (import["accepted"].as_u64(), import["suppressed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(state_of(&rig, a.id).await.2, 0);
    // The audit row: who, what, the pseudonym; never the address.
    let audit = rig
        .env
        .psql(&format!(
            "SELECT actor, target, detail::text FROM audit_log \
             WHERE action = 'erasure' AND tenant_id = '{}'",
            a.id
        ))
        .await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].get::<_, String>(0), format!("tenant:{}", a.id));
    assert_eq!(audit[0].get::<_, String>(1), hash);
    let leaked = count(
        &rig.env,
        &format!("SELECT count(*) FROM audit_log a WHERE a::text ILIKE '%{GONE}%'"),
    )
    .await;
    assert_eq!(leaked, 0, "the audit log holds the address");

    // The admin's erasure: every other tenant, and the global list.
    let everywhere = erase(
        &api,
        "/v1/erasures",
        admin_token(),
        Some(&json!({ "email": GONE })),
    )
    .await;
    assert_eq!(everywhere["email_hash"], hash.as_str(), "{everywhere}");
    assert_eq!(everywhere["tenants"], 1);
    assert_eq!(
        (everywhere["leads"].as_u64(), everywhere["jobs"].as_u64()),
        (Some(1), Some(1))
    );
    let (events, mentions, leads, jobs, _) = state_of(&rig, b.id).await;
    assert_eq!(
        (leads, jobs, mentions),
        (0, 0, 0),
        "the address is left in tenant B"
    );
    assert!(events >= b_before.0);
    assert_eq!(
        count(
            &rig.env,
            &format!("SELECT count(*) FROM global_suppressions WHERE email = '{GONE}' AND reason = 'erasure'"),
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &rig.env,
            &format!(
                "SELECT count(*) FROM audit_log WHERE actor = 'admin' AND \
                 ((action = 'erasure' AND tenant_id = '{}') OR (action = 'erasure.global' AND tenant_id IS NULL))",
                b.id
            ),
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &rig.env,
            &format!("SELECT count(*) FROM leads WHERE email = '{GONE}'")
        )
        .await,
        0
    );

    // The storage gauges, read by the Gauges actor.
    let metrics = rig.metrics().await;
    assert!(
        metrics.contains("penguin_storage_rows{table=\"leads\"}")
            && metrics.contains("penguin_storage_bytes{table=\"delivery_events\"}"),
        "storage gauges missing"
    );
    rig.shutdown().await;
}
