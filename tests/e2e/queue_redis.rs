//! The Redis fast lane against a real redis-server: priority order across bands,
//! reliable pop into the in-flight set, re-queue after the deadline (never after
//! an ack), undecodable elements dropped visibly, and loss detection after FLUSHALL.

use penguin_engine::domain::Band;
use penguin_engine::payload::{JobPayload, JobV1};
use penguin_engine::queue::RedisQueue;
use uuid::Uuid;

use crate::support::TestEnv;

fn job(tenant: Uuid, priority: i32, n: u128) -> (Band, Vec<u8>, Uuid) {
    let id = Uuid::from_u128(n);
    let payload = JobPayload::V1(JobV1 {
        job_id: id,
        tenant_id: tenant,
        campaign_id: Uuid::from_u128(99),
        priority,
        recipient: format!("r{n}@example.com"),
        fields_json: "{}".into(),
        attempts: 0,
        due_ms: 0,
    });
    (Band::of(priority), payload.encode().unwrap(), id)
}

#[tokio::test]
async fn pops_by_priority_and_requeues_only_unacknowledged_jobs() {
    let env = TestEnv::start().await;
    let queue = RedisQueue::new(env.redis.clone());
    let tenant = Uuid::new_v4();
    let other = Uuid::new_v4();
    let low = job(tenant, 500, 1);
    let normal = job(tenant, 100, 2);
    let high = job(tenant, 10, 3);
    let high2 = job(tenant, 50, 4);
    let jobs: Vec<(Band, Vec<u8>)> = [&low, &normal, &high, &high2]
        .iter()
        .map(|(b, raw, _)| (*b, raw.clone()))
        .collect();
    queue.push(tenant, &jobs).await.unwrap();
    queue
        .push(other, &[(Band::High, job(other, 1, 5).1)])
        .await
        .unwrap();
    assert_eq!(queue.depths(&[tenant, other]).await.unwrap(), vec![4, 1]);

    // Most urgent band first, FIFO within a band; only this tenant's lists.
    let (popped, dropped) = queue.pop(tenant, 3, 1_000).await.unwrap();
    assert_eq!(dropped, 0);
    let ids: Vec<Uuid> = popped.iter().map(|p| p.payload.job_id()).collect();
    assert_eq!(ids, vec![high.2, high2.2, normal.2]);
    assert_eq!(queue.depths(&[tenant]).await.unwrap(), vec![1]);

    // Ack one; the other two expire and go back to the front of their lists.
    queue
        .ack(tenant, &[popped[0].raw.as_slice()])
        .await
        .unwrap();
    assert_eq!(
        queue.requeue_expired(tenant, 999, 100).await.unwrap(),
        0,
        "not yet expired"
    );
    assert_eq!(queue.requeue_expired(tenant, 1_001, 100).await.unwrap(), 2);
    assert_eq!(
        queue.requeue_expired(tenant, 1_001, 100).await.unwrap(),
        0,
        "moved once"
    );
    let (again, _) = queue.pop(tenant, 10, 5_000).await.unwrap();
    let ids: Vec<Uuid> = again.iter().map(|p| p.payload.job_id()).collect();
    assert_eq!(
        ids,
        vec![high2.2, normal.2, low.2],
        "the acked job never comes back"
    );
    assert_eq!(
        queue.depths(&[other]).await.unwrap(),
        vec![1],
        "other tenant untouched"
    );
}

#[tokio::test]
async fn garbage_is_dropped_and_redis_loss_is_detected() {
    let env = TestEnv::start().await;
    let queue = RedisQueue::new(env.redis.clone());
    let tenant = Uuid::new_v4();
    queue
        .push(
            tenant,
            &[
                (Band::Normal, b"not a payload".to_vec()),
                (Band::Normal, job(tenant, 100, 7).1),
            ],
        )
        .await
        .unwrap();
    let (popped, dropped) = queue.pop(tenant, 10, 1_000).await.unwrap();
    assert_eq!((popped.len(), dropped), (1, 1));
    assert_eq!(
        queue.requeue_expired(tenant, 2_000, 10).await.unwrap(),
        1,
        "only the real job is in flight"
    );

    assert!(
        !queue.is_live(tenant).await.unwrap(),
        "a fresh redis has no state"
    );
    queue.mark_live(tenant).await.unwrap();
    assert!(queue.is_live(tenant).await.unwrap());
    env.flush_redis().await;
    assert!(!queue.is_live(tenant).await.unwrap(), "FLUSHALL is noticed");
    queue.ping().await.unwrap();
}

/// Whether `node` holds each lease after asking for all of them (missing ones
/// included).
async fn take_all(
    leases: &penguin_engine::lease::Leases,
    partitions: &[u32],
    node: &str,
) -> Result<Vec<bool>, penguin_engine::queue::QueueError> {
    let asks: Vec<(u32, penguin_engine::lease::Ask)> = partitions
        .iter()
        .map(|p| (*p, penguin_engine::lease::Ask::TakeMissing))
        .collect();
    let states = leases.acquire_or_renew(&asks, node, 60_000).await?;
    Ok(states
        .into_iter()
        .map(|s| s == penguin_engine::lease::LeaseState::Held)
        .collect())
}

#[tokio::test]
async fn a_lease_is_held_by_one_node_until_released() {
    use penguin_engine::lease::Leases;
    let env = TestEnv::start().await;
    let leases = Leases::new(env.redis.clone());
    let tenants = [3, 511];
    assert_eq!(
        take_all(&leases, &tenants, "a").await.unwrap(),
        vec![true, true]
    );
    assert_eq!(
        take_all(&leases, &tenants, "b").await.unwrap(),
        vec![false, false]
    );
    assert_eq!(
        take_all(&leases, &tenants, "a").await.unwrap(),
        vec![true, true],
        "renewed"
    );
    leases.release(&tenants[..1], "b").await.unwrap();
    assert_eq!(
        take_all(&leases, &tenants, "b").await.unwrap(),
        vec![false, false],
        "only the holder releases"
    );
    leases.release(&tenants[..1], "a").await.unwrap();
    assert_eq!(
        take_all(&leases, &tenants, "b").await.unwrap(),
        vec![true, false]
    );
    assert!(take_all(&leases, &[], "b").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_lease_is_taken_only_when_asked_and_a_released_one_unless_renewing() {
    use penguin_engine::lease::{Ask, LeaseState, Leases};
    let env = TestEnv::start().await;
    let leases = Leases::new(env.redis.clone());
    let t = 42;
    // Missing (never taken, expired or flushed): only taken when asked to.
    let state = leases
        .acquire_or_renew(&[(t, Ask::Take)], "a", 60_000)
        .await
        .unwrap();
    assert_eq!(state, [LeaseState::Missing]);
    let state = leases
        .acquire_or_renew(&[(t, Ask::TakeMissing)], "a", 60_000)
        .await
        .unwrap();
    assert_eq!(state, [LeaseState::Held]);
    let state = leases
        .acquire_or_renew(&[(t, Ask::TakeMissing)], "b", 60_000)
        .await
        .unwrap();
    assert_eq!(state, [LeaseState::Other]);
    // Renewing alone keeps a held lease and takes nothing else.
    let state = leases
        .acquire_or_renew(&[(t, Ask::Renew)], "a", 60_000)
        .await
        .unwrap();
    assert_eq!(state, [LeaseState::Held]);
    // Released by its holder: anyone takes it at once, without asking, except
    // by renewing alone (a hand-off in progress must not take its lease back).
    leases.release(&[t], "a").await.unwrap();
    let state = leases
        .acquire_or_renew(&[(t, Ask::Renew)], "a", 60_000)
        .await
        .unwrap();
    assert_eq!(state, [LeaseState::Released]);
    let state = leases
        .acquire_or_renew(&[(t, Ask::Take)], "b", 60_000)
        .await
        .unwrap();
    assert_eq!(state, [LeaseState::Held]);
    // Emptied Redis: missing again.
    env.flush_redis().await;
    let state = leases
        .acquire_or_renew(&[(t, Ask::Take)], "a", 60_000)
        .await
        .unwrap();
    assert_eq!(state, [LeaseState::Missing]);
    let state = leases
        .acquire_or_renew(&[(t, Ask::Renew)], "a", 60_000)
        .await
        .unwrap();
    assert_eq!(state, [LeaseState::Missing]);
}
