//! Hostile input, pauses against the pool: a `pause` waiting for its
//! campaign's SMTP transactions to drain holds no Postgres connection between
//! its looks, so more waiting pauses than the API has connections still leave
//! the API answering. (Each look takes a connection for one short transaction
//! and gives it back.) When the drain ends, every pause returns 200.

use std::time::Duration;

use crate::support::api::{ApiServer, campaign_mid_smtp, count, finish_smtp};
use crate::support::{TestEnv, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_pauses_leave_the_api_pool_free() {
    let env = TestEnv::start().await;
    let mut database = env.config.database.clone();
    database.max_connections = 2;
    database.acquire_timeout_ms = 2_000;
    let api_pg = penguin_engine::db::pg_pool(&database).expect("API pool");
    let mut config = env.config.clone();
    config.api.pause_drain_timeout_ms = 60_000;
    let server = ApiServer::start_on(config, api_pg, env.redis.clone()).await;
    let api = server.api.clone();
    // A job is in the middle of its SMTP transaction: pauses wait for it.
    let (token, campaign) = campaign_mid_smtp(&api, &env).await;

    // Twice as many waiting pauses as the API has connections.
    let pauses: Vec<_> = (0..4)
        .map(|_| {
            let (api, token) = (api.clone(), token.clone());
            tokio::spawn(async move { api.action(&token, campaign, "pause").await })
        })
        .collect();
    let paused =
        format!("SELECT count(*) FROM campaigns WHERE id = '{campaign}' AND status = 'paused'");
    wait_for("the pause to commit", Duration::from_secs(10), || async {
        (count(&env, &paused).await == 1).then_some(())
    })
    .await;

    // While they all wait, the API keeps answering.
    for _ in 0..5 {
        let answer = api.campaign(&token, campaign).await;
        assert_eq!(answer.expect(200)["status"], "paused");
    }
    assert!(
        pauses.iter().all(|p| !p.is_finished()),
        "the pauses are still waiting for the drain"
    );

    // The attempt ends: every pause returns.
    finish_smtp(&env, campaign).await;
    for pause in pauses {
        let answer = tokio::time::timeout(Duration::from_secs(10), pause)
            .await
            .expect("pause returns once nothing is sending")
            .expect("the pause task");
        assert_eq!(answer.expect(200)["status"], "paused");
    }
}
