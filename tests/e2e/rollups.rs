//! The Analytics write (`store::events::record`): events and both daily rollups
//! in one statement. A campaign's day is the UTC day; an IP's day is its local
//! day (what its daily allowance and warm-up judge by). A batch that fails
//! leaves neither events nor counts behind, so a retried batch is never
//! counted twice. Final outcomes also roll up per campaign and minute (the
//! recent rates), pruned an hour behind each batch.

use penguin_engine::store::events::{self, Event};
use serde_json::json;
use time::macros::datetime;
use uuid::Uuid;

use crate::support::TestEnv;
use crate::support::api::{ApiServer, count};

fn event(
    tenant: Uuid,
    campaign: Uuid,
    ip: Uuid,
    job: Uuid,
    kind: &str,
    at: time::OffsetDateTime,
) -> Event {
    Event {
        tenant_id: tenant,
        campaign_id: campaign,
        job_id: job,
        ip_id: Some(ip),
        kind: kind.into(),
        smtp_code: None,
        enhanced_code: None,
        class: None,
        provider: None,
        reply: None,
        at,
        step: 1,
    }
}

#[tokio::test]
async fn outcomes_roll_up_by_utc_day_per_campaign_and_local_day_per_ip() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("rollups").await;
    let body = json!({
        "address": "127.0.0.2",
        "helo_name": "mta.example.test",
        "timezone": "Pacific/Kiritimati",
    });
    let ip = api.add_ip_with(tenant, &body).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    let campaign = api.create_campaign(&token, &[ip]).await;

    // 12:00 UTC on 1 March is 02:00 on 2 March at UTC+14.
    let noon = datetime!(2026-03-01 12:00 UTC);
    let batch = vec![
        event(tenant, campaign, ip, Uuid::new_v4(), "sent", noon),
        event(tenant, campaign, ip, Uuid::new_v4(), "sent", noon),
        event(tenant, campaign, ip, Uuid::new_v4(), "bounced", noon),
        event(tenant, campaign, ip, Uuid::new_v4(), "deferred", noon),
        event(tenant, campaign, ip, Uuid::new_v4(), "suppressed", noon),
    ];
    events::record(&env.pg, &batch).await.expect("recorded");

    let campaign_rows = env
        .psql(&format!(
            "SELECT day::text, sent, deferred, bounced, failed FROM campaign_daily_stats
             WHERE campaign_id = '{campaign}'"
        ))
        .await;
    let campaign_rows: Vec<(String, i64, i64, i64, i64)> = campaign_rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(campaign_rows, [("2026-03-01".to_string(), 2, 1, 1, 0)]);
    let ip_rows = env
        .psql(&format!(
            "SELECT day::text, sent, deferred, bounced, failed FROM ip_daily_stats WHERE ip_id = '{ip}'"
        ))
        .await;
    let ip_rows: Vec<(String, i64, i64, i64, i64)> = ip_rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(ip_rows, [("2026-03-02".to_string(), 2, 1, 1, 0)]);
    assert_eq!(count(&env, "SELECT count(*) FROM delivery_events").await, 5);
    // The final outcomes per minute (sent, bounced, suppressed; not deferred).
    let minutes = "SELECT minute::text, sent, finished FROM campaign_minute_stats ORDER BY minute";
    let minute_rows = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, i64, i64)> {
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    assert_eq!(
        minute_rows(env.psql(minutes).await),
        [("2026-03-01 12:00:00+00".to_string(), 2, 4)]
    );
    // A batch two hours later prunes minutes an hour older than itself.
    let later = datetime!(2026-03-01 14:00:30 UTC);
    events::record(
        &env.pg,
        &[event(tenant, campaign, ip, Uuid::new_v4(), "sent", later)],
    )
    .await
    .expect("recorded");
    assert_eq!(
        minute_rows(env.psql(minutes).await),
        [("2026-03-01 14:00:00+00".to_string(), 1, 1)]
    );

    // A batch that breaks a constraint (here one this test adds: no `bogus`
    // event; the once-only keys of opens live in `delivery_event_keys`, which
    // batches never write) writes nothing: no events, no counts.
    env.psql("ALTER TABLE delivery_events ADD CONSTRAINT test_no_bogus CHECK (kind <> 'bogus')")
        .await;
    let failing = vec![
        event(tenant, campaign, ip, Uuid::new_v4(), "sent", noon),
        event(tenant, campaign, ip, Uuid::new_v4(), "bogus", noon),
    ];
    events::record(&env.pg, &failing)
        .await
        .expect_err("a batch breaking a constraint is refused");
    assert_eq!(count(&env, "SELECT count(*) FROM delivery_events").await, 6);
    assert_eq!(
        count(&env, "SELECT sum(sent)::int8 FROM campaign_daily_stats").await,
        3
    );
    assert_eq!(
        count(&env, "SELECT sum(sent)::int8 FROM ip_daily_stats").await,
        3
    );
    assert_eq!(
        count(
            &env,
            "SELECT sum(finished)::int8 FROM campaign_minute_stats"
        )
        .await,
        1
    );
}
