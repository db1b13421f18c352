//! Retention (issue 23), run by the engine itself on a moved clock.
//!
//! - A node's Retention actor, with `events_days` 40, `jobs_days_after_campaign_end`
//!   10, `leads_days_after_campaign_end` 20 and batches of 2: 15 days after the
//!   campaigns finished, the jobs of a completed and of a cancelled campaign are
//!   gone (all of them, through several batches) and their leads are kept; 25
//!   days after, their leads are gone too. A paused campaign keeps every job
//!   and lead throughout. Once the clock is in the third month, the first
//!   month's partition is dropped whole (its events gone), every later event
//!   is kept with its id, partitions exist `partitions_ahead` months ahead, and
//!   an event that had landed in the DEFAULT partition was moved into its new
//!   month. Rollups and suppressions are never touched; the counters
//!   `penguin_retention_deleted_total` and `penguin_retention_partitions_total`
//!   say exactly what went.
//! - Two nodes at once: while another session holds the retention lock, a
//!   round does nothing; two rounds racing on two pools delete each row once,
//!   the counts exact, and a running campaign keeps its rows.

use std::time::Duration;

use penguin_config::RetentionConfig;
use penguin_engine::clock::Clock;
use penguin_engine::store::partitions::Month;
use penguin_engine::store::retention::{self, RETENTION_LOCK};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::api::{ApiClient, count};
use crate::support::rig::{Rig, series};
use crate::support::{TestEnv, wait_for, wait_for_showing};

const WAIT: Duration = Duration::from_secs(60);

/// Rows of the tables retention must never touch, as one digest per table.
async fn untouched(env: &TestEnv) -> Vec<String> {
    let mut digests = Vec::new();
    for table in [
        "campaign_daily_stats",
        "ip_daily_stats",
        "campaign_step_stats",
        "suppressions",
    ] {
        let rows = env
            .psql(&format!(
                "SELECT '{table}:' || count(*) || ':' ||
                        coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '')
                 FROM {table} t"
            ))
            .await;
        digests.push(rows[0].get(0));
    }
    digests
}

async fn rows_of(env: &TestEnv, table: &str, campaign: Uuid) -> i64 {
    count(
        env,
        &format!("SELECT count(*) FROM {table} WHERE campaign_id = '{campaign}'"),
    )
    .await
}

async fn campaign_status(env: &TestEnv, campaign: Uuid) -> String {
    env.psql(&format!(
        "SELECT status FROM campaigns WHERE id = '{campaign}'"
    ))
    .await[0]
        .get(0)
}

fn emails(prefix: &str, n: usize) -> serde_json::Value {
    json!(
        (0..n)
            .map(|i| json!({ "email": format!("{prefix}{i}@keep.test"), "fields": { "first_name": "Pat" } }))
            .collect::<Vec<_>>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_campaigns_and_old_months_go_by_the_clock_and_nothing_else() {
    let (rig, clock) = Rig::start_with_clock(|c| {
        c.retention.events_days = 40;
        c.retention.jobs_days_after_campaign_end = 10;
        c.retention.leads_days_after_campaign_end = 20;
        c.retention.partitions_ahead = 2;
        c.retention.batch_size = 2;
        c.retention.interval_ms = 100;
    })
    .await;
    let env = &rig.env;
    let t0 = clock.now();
    let m0 = Month::of(t0);

    // A: completed. C: completed, then paused (not finished). B: cancelled.
    let scenario = rig
        .campaign_with_leads(&[
            "a0@keep.test",
            "a1@keep.test",
            "a2@keep.test",
            "a3@keep.test",
            "a4@keep.test",
        ])
        .await;
    let tenant = &scenario.tenants[0];
    let (token, a, ip) = (tenant.token.as_str(), tenant.campaign, tenant.ips[0].0);
    let api = ApiClient::new(&rig.node().api_url());
    let c = api.create_campaign(token, &[ip]).await;
    api.add_leads(token, c, emails("c", 4)).await.expect(200);
    let b = api.create_campaign(token, &[ip]).await;
    api.add_leads(token, b, emails("b", 3)).await.expect(200);
    api.add_suppressions(token, &["kept@keep.test"], "manual")
        .await;
    scenario.start().await.unwrap();
    api.action_ok(token, c, "start").await;
    api.action_ok(token, b, "start").await;
    api.action_ok(token, b, "cancel").await;
    wait_for("A and C completed, B's jobs terminal", WAIT, || async {
        let done = campaign_status(env, a).await == "completed"
            && campaign_status(env, c).await == "completed"
            && count(
                env,
                &format!(
                    "SELECT count(*) FROM send_jobs WHERE campaign_id = '{b}'
                     AND status IN ('pending', 'queued', 'sending', 'deferred')"
                ),
            )
            .await
                == 0;
        done.then_some(())
    })
    .await;
    env.psql(&format!(
        "UPDATE campaigns SET status = 'paused', completed_at = NULL WHERE id = '{c}'"
    ))
    .await;
    // Analytics records the events in batches: every sent job's event is in.
    wait_for_showing("the sends' events recorded", WAIT, || async {
        let sent = count(env, "SELECT count(*) FROM send_jobs WHERE status = 'sent'").await;
        let events = env
            .psql("SELECT kind || ':' || count(*) FROM delivery_events GROUP BY kind ORDER BY 1")
            .await
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>();
        if sent >= 9 && events.contains(&format!("sent:{sent}")) {
            Ok(())
        } else {
            Err((sent, events))
        }
    })
    .await;
    assert_eq!(rows_of(env, "send_jobs", b).await, 3, "B's jobs exist");

    // Marker events: 2 in the first month, 3 in the next, 4 in the third, and
    // one in the fifth, which has no partition yet (the DEFAULT one holds it).
    for (month, n, day) in [(0, 2, 14), (1, 3, 14), (2, 4, 14), (4, 1, 2)] {
        let at = m0.plus(month).start() + time::Duration::days(day);
        env.psql(&format!(
            "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, kind, created_at)
             SELECT '{}', '{a}', gen_random_uuid(), 'marker', '{}'::timestamptz
             FROM generate_series(1, {n})",
            tenant.id,
            at.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        ))
        .await;
    }
    let in_default = count(
        env,
        "SELECT count(*) FROM delivery_events_default WHERE kind = 'marker'",
    )
    .await;
    assert_eq!(in_default, 1, "the fifth month has no partition yet");
    let kept_ids: Vec<i64> = env
        .psql(&format!(
            "SELECT id FROM delivery_events WHERE kind = 'marker' AND created_at >= '{}'
             ORDER BY id",
            m0.plus(1)
                .start()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        ))
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept_ids.len(), 8);
    let events_before = count(env, "SELECT count(*) FROM delivery_events").await;
    let before = untouched(env).await;

    // 15 days after: jobs of A and B gone, their leads kept, C untouched.
    clock.set(t0 + Duration::from_secs(15 * 86_400));
    wait_for("A's and B's jobs deleted", WAIT, || async {
        (rows_of(env, "send_jobs", a).await == 0 && rows_of(env, "send_jobs", b).await == 0)
            .then_some(())
    })
    .await;
    assert_eq!(rows_of(env, "leads", a).await, 5);
    assert_eq!(rows_of(env, "leads", b).await, 3);
    assert_eq!(rows_of(env, "send_jobs", c).await, 4);
    assert_eq!(rows_of(env, "leads", c).await, 4);
    assert_eq!(
        count(env, "SELECT count(*) FROM delivery_events").await,
        events_before,
        "no event goes with its job"
    );

    // 25 days after: their leads gone too; C keeps everything.
    clock.set(t0 + Duration::from_secs(25 * 86_400));
    wait_for("A's and B's leads deleted", WAIT, || async {
        (rows_of(env, "leads", a).await == 0 && rows_of(env, "leads", b).await == 0).then_some(())
    })
    .await;
    assert_eq!(rows_of(env, "send_jobs", c).await, 4);
    assert_eq!(rows_of(env, "leads", c).await, 4);

    // The 20th of the third month: now - 40 days is in the second month, so
    // the first month goes whole and months through two ahead exist.
    clock.set(m0.plus(2).start() + Duration::from_secs(19 * 86_400));
    let expected: Vec<String> = (1..=4).map(|n| m0.plus(n).table()).collect();
    wait_for(
        "the first month dropped, two ahead created",
        WAIT,
        || async {
            let names = retention::partition_names(&env.pg).await.ok()?;
            (names == expected).then_some(())
        },
    )
    .await;
    let ids: Vec<i64> = env
        .psql("SELECT id FROM delivery_events ORDER BY id")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, kept_ids, "exactly the events of later months remain");
    assert_eq!(
        count(env, "SELECT count(*) FROM delivery_events_default").await,
        0
    );
    let moved: String = env
        .psql(&format!(
            "SELECT tableoid::regclass::text FROM delivery_events
             WHERE created_at >= '{}'",
            m0.plus(4)
                .start()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        ))
        .await[0]
        .get(0);
    assert_eq!(moved, m0.plus(4).table());
    assert_eq!(
        untouched(env).await,
        before,
        "rollups and suppressions kept"
    );
    assert_eq!(rows_of(env, "send_jobs", c).await, 4);
    assert_eq!(rows_of(env, "leads", c).await, 4);

    // What the node counted.
    wait_for("the retention counters", WAIT, || async {
        let page = rig.metrics().await;
        let of = |s: &str| series(&page, s).unwrap_or(-1.0);
        let counted = (
            of("penguin_retention_deleted_total{table=\"send_jobs\"}"),
            of("penguin_retention_deleted_total{table=\"leads\"}"),
            of("penguin_retention_partitions_total{action=\"dropped\"}"),
        );
        (counted == (8.0, 8.0, 1.0)).then_some(())
    })
    .await;
    let page = rig.metrics().await;
    assert!(
        series(
            &page,
            "penguin_retention_partitions_total{action=\"created\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "the fifth month was created"
    );
}

/// One tenant with a campaign of `jobs` sent jobs (and leads), finished
/// `ended_days_ago` days before `now` (`None`: running), created 60 days ago
/// (a running campaign is old too); returns its id.
async fn campaign_with_jobs(
    env: &TestEnv,
    tenant: Uuid,
    jobs: usize,
    ended_days_ago: Option<i64>,
    now: OffsetDateTime,
) -> Uuid {
    let id = Uuid::new_v4();
    let (status, ended) = match ended_days_ago {
        Some(days) => (
            "completed",
            format!(
                "'{}'",
                (now - time::Duration::days(days))
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap()
            ),
        ),
        None => ("running", "NULL".to_string()),
    };
    env.psql(&format!(
        "INSERT INTO campaigns (tenant_id, id, name, status, from_address, subject, text_body,
                                ip_ids, completed_at, created_at)
         VALUES ('{tenant}', '{id}', 'r', '{status}', 'a@r.test', 's', 't',
                 ARRAY[gen_random_uuid()], {ended}, now() - interval '60 days')"
    ))
    .await;
    env.psql(&format!(
        "WITH l AS (
             INSERT INTO leads (tenant_id, campaign_id, id, email)
             SELECT '{tenant}', '{id}', gen_random_uuid(), 'l' || n || '@r.test'
             FROM generate_series(1, {jobs}) n RETURNING tenant_id, campaign_id, id)
         INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority, status)
         SELECT tenant_id, gen_random_uuid(), campaign_id, id, 100, 'sent' FROM l"
    ))
    .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_node_at_a_time_and_racing_rounds_delete_each_row_once() {
    let env = TestEnv::start().await;
    let now = OffsetDateTime::now_utc();
    let tenant = Uuid::new_v4();
    env.psql(&format!(
        "INSERT INTO tenants (id, name) VALUES ('{tenant}', 'r')"
    ))
    .await;
    let done = campaign_with_jobs(&env, tenant, 7, Some(30), now).await;
    let running = campaign_with_jobs(&env, tenant, 2, None, now).await;
    env.psql(&format!(
        "INSERT INTO delivery_event_keys (tenant_id, job_id, kind)
         SELECT tenant_id, id, 'open' FROM send_jobs WHERE campaign_id = '{done}' LIMIT 3"
    ))
    .await;
    let config = RetentionConfig {
        jobs_days_after_campaign_end: 10,
        leads_days_after_campaign_end: 10,
        batch_size: 2,
        ..RetentionConfig::default()
    };

    // Another node holds the turn: this round does nothing.
    let holder = env.pg.get().await.unwrap();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&RETENTION_LOCK])
        .await
        .unwrap();
    let skipped = retention::run_round(&env.pg, &config, now).await.unwrap();
    assert_eq!(skipped, None);
    assert_eq!(rows_of(&env, "send_jobs", done).await, 7);
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&RETENTION_LOCK])
        .await
        .unwrap();
    drop(holder);

    // Two nodes' rounds at once, on pools of their own.
    let other = penguin_engine::db::pg_pool(&env.config.database).unwrap();
    let (one, two) = tokio::join!(
        retention::run_round(&env.pg, &config, now),
        retention::run_round(&other, &config, now)
    );
    let rounds: Vec<_> = [one.unwrap(), two.unwrap()].into_iter().flatten().collect();
    assert!(!rounds.is_empty(), "one of them took the turn");
    let sum = |f: fn(&retention::Round) -> u64| rounds.iter().map(f).sum::<u64>();
    assert_eq!(sum(|r| r.jobs_deleted), 7);
    assert_eq!(sum(|r| r.event_keys_deleted), 3);
    assert_eq!(sum(|r| r.leads_deleted), 7);
    assert_eq!(rows_of(&env, "send_jobs", done).await, 0);
    assert_eq!(rows_of(&env, "leads", done).await, 0);
    assert_eq!(
        count(&env, "SELECT count(*) FROM delivery_event_keys").await,
        0
    );
    assert_eq!(rows_of(&env, "send_jobs", running).await, 2);
    assert_eq!(rows_of(&env, "leads", running).await, 2);
}
