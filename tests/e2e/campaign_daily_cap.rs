//! `daily_cap` (issue 17): at most that many messages of a campaign start per
//! day in the campaign's time zone, counted in Postgres in the claim's own
//! transaction. The engine runs on a moved clock across two local midnights of
//! a zone nine hours ahead of UTC (Asia/Tokyo): a cap of 7 over 20 leads sends
//! exactly 7 on the first local day however long that day runs, 7 more right
//! after the local midnight (15:00 UTC, not 00:00 UTC), then the last 6 — never
//! 8 in a day, across a restart with Redis emptied — with no API call in between, and `GET /v1/campaigns/{id}` shows
//! `waiting_reason: daily_cap` with the next local midnight as `next_send_at`.
//! Concurrent claims of one campaign (as many nodes make them) start exactly
//! the cap. A last scenario shows the other reasons: `ip_allowance` (the IP used its
//! hour) and `ips_paused`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use penguin_engine::store::{fences, ledger};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::support::api::campaign_body;
use crate::support::limits::{IpPlan, LimitsRig};
use crate::support::{TestEnv, admin_token, wait_for};

const IP: &str = "127.0.0.2";

pub(crate) fn sent(n: u64) -> HashMap<IpAddr, u64> {
    HashMap::from([(IP.parse().unwrap(), n)])
}

/// A warm IP at [`IP`], active all day.
pub(crate) async fn warm_ip(rig: &LimitsRig) -> Uuid {
    rig.add_ip(&IpPlan {
        address: IP,
        schedule: None,
        timezone: "UTC",
        active_hours: (0, 24),
    })
    .await
}

/// A campaign over `ip` with `knobs` (`daily_cap`, `send_window`) merged into
/// a valid body and `leads` leads, started; returns its id.
pub(crate) async fn start_campaign(rig: &LimitsRig, ip: Uuid, knobs: Value, leads: usize) -> Uuid {
    let mut body = campaign_body(&[ip]);
    for (key, value) in knobs.as_object().expect("knobs are an object") {
        body[key] = value.clone();
    }
    let answer = rig.api.create_campaign_with(&rig.token, &body).await;
    answer.expect(201);
    let campaign = answer.id();
    let batch: Vec<Value> = (0..leads)
        .map(|i| json!({ "email": format!("lead{i}@knobs{}.test", i % 5), "fields": { "first_name": "Pat" } }))
        .collect();
    rig.api
        .add_leads(&rig.token, campaign, Value::Array(batch))
        .await
        .expect(200);
    rig.api.action_ok(&rig.token, campaign, "start").await;
    campaign
}

/// `(waiting_reason, next_send_at)` of `GET /v1/campaigns/{id}`.
pub(crate) async fn waiting(rig: &LimitsRig, campaign: Uuid) -> (Value, Option<OffsetDateTime>) {
    let answer = rig.api.campaign(&rig.token, campaign).await;
    let body = answer.expect(200);
    let next = body["next_send_at"]
        .as_str()
        .map(|at| OffsetDateTime::parse(at, &Rfc3339).expect("next_send_at is RFC 3339"));
    (body["waiting_reason"].clone(), next)
}

/// Waits until the Feeder ran twice more on the current clock, so what it
/// would claim now has been claimed.
pub(crate) async fn feeder_rounds(rig: &LimitsRig, n: u64) {
    let rounds = || rig.rig.node().engine().wakeups().0;
    let start = rounds();
    wait_for(
        &format!("{n} feeder rounds"),
        Duration::from_secs(10),
        || async { (rounds() >= start + n).then_some(()) },
    )
    .await;
}

/// Starts per local day, as `campaign_day_usage` holds them.
async fn usage(rig: &LimitsRig, campaign: Uuid) -> Vec<(String, i32)> {
    rig.rig
        .env
        .psql(&format!(
            "SELECT day::text, started FROM campaign_day_usage
             WHERE campaign_id = '{campaign}' ORDER BY day"
        ))
        .await
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daily_cap_is_exact_per_local_day_across_midnights() {
    let mut rig = LimitsRig::start(|c| c.limits.warm_daily_volume = 10_000).await;
    let ip = warm_ip(&rig).await;
    // 00:00 UTC is 09:00 in Tokyo; its days end at 15:00 UTC.
    let midnight = rig.now();
    let at = |h: u64, s: u64| midnight + Duration::from_secs(h * 3600 + s);
    rig.set_clock(at(0, 1));
    let knobs = json!({
        "daily_cap": 7,
        "send_window": { "start": "00:00", "end": "23:59", "timezone": "Asia/Tokyo" },
    });
    let campaign = start_campaign(&rig, ip, knobs, 20).await;

    // Day 1 (Tokyo): exactly 7, and the API says why the rest waits and until when.
    rig.settle(&sent(7), "day 1").await;
    assert_eq!(
        waiting(&rig, campaign).await,
        (json!("daily_cap"), Some(at(15, 0))),
        "the cap waits for Tokyo's midnight"
    );
    // Late on the same local day (14:59 UTC, 23:59 in Tokyo is outside the
    // window: 14:58), with the engine running through it: nothing more.
    rig.set_clock(at(14, 58 * 60));
    feeder_rounds(&rig, 2).await;
    rig.settle(&sent(7), "the rest of day 1").await;
    // A restart with Redis emptied forgets nothing: the count is in Postgres.
    rig.restart(true).await;
    feeder_rounds(&rig, 2).await;
    rig.settle(&sent(7), "day 1 after a restart").await;

    // Day 2 begins at 15:00 UTC: 7 more, no API call.
    rig.set_clock(at(15, 1));
    rig.settle(&sent(14), "day 2").await;
    assert_eq!(
        waiting(&rig, campaign).await,
        (json!("daily_cap"), Some(at(39, 0)))
    );

    // Day 3: the last 6; nothing waits any more.
    rig.set_clock(at(39, 1));
    rig.settle(&sent(20), "day 3").await;
    assert_eq!(waiting(&rig, campaign).await, (Value::Null, None));
    let days: Vec<i32> = usage(&rig, campaign)
        .await
        .into_iter()
        .map(|d| d.1)
        .collect();
    assert_eq!(days, [7, 7, 6], "starts per Tokyo day");
    // What the cap refused gave its IP allowance back: the IP counts 20 sends.
    let reserved = rig
        .rig
        .env
        .psql("SELECT sum(reserved)::int8 FROM ip_hourly_usage")
        .await;
    assert_eq!(reserved[0].get::<_, i64>(0), 20, "the IP's reservations");
    assert_eq!(rig.rig.sink.stats().duplicate_messages, 0);
    rig.rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_shows_a_used_ip_allowance_and_paused_ips() {
    // 48 a day over 24 active hours: 2 an hour.
    let rig = LimitsRig::start(|c| c.limits.warm_daily_volume = 48).await;
    let ip = warm_ip(&rig).await;
    let midnight = rig.now();
    rig.set_clock(midnight + Duration::from_secs(1));
    let campaign = start_campaign(&rig, ip, json!({}), 5).await;
    rig.settle(&sent(2), "hour 00").await;
    let hour_1 = midnight + Duration::from_secs(3600);
    wait_for(
        "the rest waiting for the IP's next hour",
        Duration::from_secs(10),
        || async {
            let shown = waiting(&rig, campaign).await;
            (shown == (json!("ip_allowance"), Some(hour_1))).then_some(())
        },
    )
    .await;

    let pause = rig
        .api
        .post(
            &format!("/v1/ips/{ip}/pause"),
            Some(admin_token()),
            &json!({}),
        )
        .await;
    pause.expect(200);
    assert_eq!(
        waiting(&rig, campaign).await,
        (json!("ips_paused"), None),
        "paused by hand: no time to show"
    );

    // `/openapi.json` documents both fields.
    let doc = rig.api.get("/openapi.json", None).await;
    let schema = &doc.expect(200)["components"]["schemas"]["CampaignWithCounts"];
    // Flattened into the campaign: `allOf` [CampaignBody, these fields].
    let properties = &schema["allOf"][1]["properties"];
    for field in ["waiting_reason", "next_send_at"] {
        let property = properties[field].to_string();
        assert!(
            property.contains("\"description\":\"Why a `running`")
                || property.contains("\"description\":\"When the engine may next"),
            "{field} is documented: {schema}"
        );
    }
    let reasons = &doc.expect(200)["components"]["schemas"]["WaitingReason"]["enum"];
    assert_eq!(
        reasons,
        &json!(["send_window", "daily_cap", "ips_paused", "ip_allowance"])
    );
    rig.rig.shutdown().await;
}

/// Many claims at once (as many nodes' Ip actors would make them) of one
/// capped campaign's jobs: the day's row serializes them, so exactly the cap
/// starts, and every other job waits for the next local midnight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_overshoot_the_cap() {
    const CAP: i64 = 25;
    const TASKS: usize = 8;
    const PER_TASK: usize = 30;
    let env = TestEnv::start().await;
    let (tenant, campaign) = (Uuid::now_v7(), Uuid::now_v7());
    let ips: Vec<Uuid> = (0..TASKS).map(|_| Uuid::now_v7()).collect();
    env.psql(&format!(
        "INSERT INTO tenants (id, name) VALUES ('{tenant}', 'capped')"
    ))
    .await;
    for (n, ip) in ips.iter().enumerate() {
        env.psql(&format!(
            "INSERT INTO smtp_ips (tenant_id, id, address, helo_name)
             VALUES ('{tenant}', '{ip}', '127.0.1.{}', 'mx.capped.test')",
            n + 1
        ))
        .await;
    }
    let ip_array = ips
        .iter()
        .map(|ip| format!("'{ip}'::uuid"))
        .collect::<Vec<_>>()
        .join(",");
    env.psql(&format!(
        "INSERT INTO campaigns (tenant_id, id, name, status, from_address, subject, text_body,
                                ip_ids, daily_cap, send_window)
         VALUES ('{tenant}', '{campaign}', 'c', 'running', 'a@capped.test', 's', 't',
                 ARRAY[{ip_array}], {CAP},
                 '{{\"start\":\"00:00\",\"end\":\"23:59\",\"timezone\":\"America/New_York\"}}')"
    ))
    .await;
    env.psql(&format!(
        "INSERT INTO leads (tenant_id, campaign_id, id, email)
         SELECT '{tenant}', '{campaign}', gen_random_uuid(), 'r' || g || '@capped.test'
         FROM generate_series(1, {}) g",
        TASKS * PER_TASK
    ))
    .await;
    env.psql(&format!(
        "INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority, status)
         SELECT tenant_id, gen_random_uuid(), campaign_id, id, 100, 'queued' FROM leads
         WHERE tenant_id = '{tenant}'"
    ))
    .await;
    // 12:00 UTC is 07:00 in New York; its next midnight is 05:00 UTC tomorrow.
    let now =
        OffsetDateTime::now_utc().date().midnight().assume_utc() + Duration::from_secs(12 * 3600);
    let next_midnight = now + Duration::from_secs(17 * 3600);
    let partition = penguin_engine::partition::of(tenant, 512);
    let epoch = fences::take(&env.pg, &[partition], 512, "node-a", now)
        .await
        .expect("take")
        .token_of(partition)
        .expect("the partition taken");
    let jobs: Vec<Uuid> = env
        .psql(&format!(
            "SELECT id FROM send_jobs WHERE tenant_id = '{tenant}' ORDER BY id"
        ))
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    let claims = jobs.chunks(PER_TASK).zip(&ips).map(|(mine, ip)| {
        let (pool, mine, ip) = (env.pg.clone(), mine.to_vec(), *ip);
        tokio::spawn(async move {
            let mut claimed = 0;
            for batch in mine.chunks(3) {
                let pairs: Vec<(Uuid, Uuid)> = batch.iter().map(|job| (*job, ip)).collect();
                let claim =
                    ledger::claim_sending(&pool, tenant, epoch, &pairs, &[campaign], now, None)
                        .await
                        .expect("claim");
                claimed += claim.claimed.len() as i64;
            }
            claimed
        })
    });
    let mut claimed = 0;
    for task in futures::future::join_all(claims.collect::<Vec<_>>()).await {
        claimed += task.expect("claim task");
    }
    assert_eq!(claimed, CAP, "exactly the cap started");
    let rows = env
        .psql(&format!(
            "SELECT count(*) FILTER (WHERE status = 'sending'),
                    count(*) FILTER (WHERE status = 'pending' AND run_at = '{next_midnight}'),
                    (SELECT sum(started)::int8 FROM campaign_day_usage WHERE campaign_id = '{campaign}')
             FROM send_jobs WHERE campaign_id = '{campaign}'"
        ))
        .await;
    let (sending, waiting, counted): (i64, i64, i64) =
        (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!(sending, CAP);
    assert_eq!(
        waiting,
        (TASKS * PER_TASK) as i64 - CAP,
        "the rest waits for New York's midnight"
    );
    assert_eq!(counted, CAP);
}
