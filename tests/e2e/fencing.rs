//! Fencing tokens against real Postgres (DESIGN.md §3): after another node takes
//! a tenant over, every job write the old holder still makes with its epoch is
//! refused and changes nothing — the claim, the status write of an attempt it
//! had in flight, and each recovery — while the new holder's writes go through.
//! A write that reaches Postgres before the takeover is ordered before it: the
//! takeover returns what it left `sending`.

use penguin_engine::domain::JobStatus;
use penguin_engine::store::fences;
use penguin_engine::store::ledger::{self, Outcome};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::TestEnv;

pub(crate) struct Fixture {
    pub env: TestEnv,
    pub tenant: Uuid,
    pub campaign: Uuid,
    pub ip: Uuid,
    pub jobs: Vec<Uuid>,
}

/// A tenant with one IP and a running campaign of `n` `queued` jobs (also used
/// by `slow_mx`).
pub(crate) async fn fixture(n: usize) -> Fixture {
    let env = TestEnv::start().await;
    let (tenant, campaign, ip) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    env.psql(&format!(
        "INSERT INTO tenants (id, name) VALUES ('{tenant}', 'fenced')"
    ))
    .await;
    env.psql(&format!(
        "INSERT INTO smtp_ips (tenant_id, id, address, helo_name)
         VALUES ('{tenant}', '{ip}', '127.0.0.2', 'mx.fenced.test')"
    ))
    .await;
    env.psql(&format!(
        "INSERT INTO campaigns (tenant_id, id, name, status, from_address, subject, text_body, ip_ids)
         VALUES ('{tenant}', '{campaign}', 'c', 'running', 'a@fenced.test', 's', 't', ARRAY['{ip}'::uuid])"
    ))
    .await;
    let mut ids = Vec::new();
    for k in 0..n {
        let (lead, job) = (Uuid::now_v7(), Uuid::now_v7());
        env.psql(&format!(
            "INSERT INTO leads (tenant_id, campaign_id, id, email)
             VALUES ('{tenant}', '{campaign}', '{lead}', 'r{k}@fenced.test')"
        ))
        .await;
        env.psql(&format!(
            "INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority, status)
             VALUES ('{tenant}', '{job}', '{campaign}', '{lead}', 100, 'queued')"
        ))
        .await;
        ids.push(job);
    }
    Fixture {
        env,
        tenant,
        campaign,
        ip,
        jobs: ids,
    }
}

/// The partition count the fixtures fence under (the default `node.partitions`).
pub(crate) const PARTITIONS: u32 = 512;

/// A takeover of the fixture tenant's partition: its new token and the jobs it
/// returned.
pub(crate) struct Taken {
    pub epoch: i64,
    pub released: u64,
}

impl Fixture {
    pub(crate) fn partition(&self) -> u32 {
        penguin_engine::partition::of(self.tenant, PARTITIONS)
    }

    /// Takes the tenant's partition for `node`.
    pub(crate) async fn take(&self, node: &str, now: OffsetDateTime) -> Taken {
        let taken = fences::take(&self.env.pg, &[self.partition()], PARTITIONS, node, now)
            .await
            .expect("takeover");
        Taken {
            epoch: taken
                .token_of(self.partition())
                .expect("the partition was taken"),
            released: taken.released,
        }
    }

    pub(crate) async fn status(&self, job: Uuid) -> (String, i64) {
        let rows = self
            .env
            .psql(&format!(
                "SELECT status, fence FROM send_jobs WHERE id = '{job}'"
            ))
            .await;
        (rows[0].get(0), rows[0].get(1))
    }

    pub(crate) async fn claim(&self, epoch: i64, job: Uuid) -> ledger::SendingClaim {
        ledger::claim_sending(
            &self.env.pg,
            self.tenant,
            epoch,
            &[(job, self.ip)],
            &[self.campaign],
            OffsetDateTime::now_utc(),
            None,
        )
        .await
        .expect("claim")
    }

    pub(crate) fn sent(&self, job: Uuid, fence: i64, claim: Uuid) -> Outcome {
        Outcome {
            tenant_id: self.tenant,
            job_id: job,
            to: JobStatus::Sent,
            run_at: None,
            message_id: Some(format!("<{job}@fenced.test>")),
            reply: Some("250 ok".into()),
            fence,
            claim,
        }
    }
}

#[tokio::test]
async fn writes_of_a_superseded_epoch_change_nothing() {
    let f = fixture(4).await;
    let pg = &f.env.pg;
    let now = OffsetDateTime::now_utc();
    let [a_inflight, a_late, a_queued, b_job] = f.jobs[..] else {
        unreachable!()
    };

    // Node A takes the tenant and claims one job; it is in SMTP when A stalls.
    let a = f.take("node-a", now).await;
    assert_eq!((a.epoch >> 16, a.released), (1, 0));
    let claim = f.claim(a.epoch, a_inflight).await;
    assert_eq!(claim.claimed.len(), 1);
    assert!(!claim.fenced);
    assert_eq!(f.status(a_inflight).await, ("sending".into(), a.epoch));

    // Node B takes it over: a new epoch, and A's attempt returns to `pending`.
    let b = f.take("node-b", now).await;
    assert_eq!((b.epoch >> 16, b.released), (2, 1));
    assert_eq!(
        fences::current(pg, f.partition()).await.unwrap(),
        Some((b.epoch, "node-b".to_string()))
    );
    assert_eq!(f.status(a_inflight).await.0, "pending");

    // A wakes up. Its claim is refused and claims, releases and counts nothing.
    let stale = f.claim(a.epoch, a_late).await;
    assert!(stale.fenced, "a claim under a superseded epoch is refused");
    assert!(stale.claimed.is_empty());
    assert_eq!(stale.released, 0);
    assert_eq!(f.status(a_late).await, ("queued".into(), 0));

    // B feeds the job A had in flight again and claims it; A's outcome of its
    // own attempt is refused while B's attempt runs, and B's outcome is written.
    let fed = ledger::claim_due(pg, f.tenant, b.epoch, 10, now)
        .await
        .unwrap();
    assert_eq!(fed.len(), 1);
    assert_eq!(fed[0].job_id(), a_inflight);
    let mut again = ledger::claim_sending(
        pg,
        f.tenant,
        b.epoch,
        &[(a_inflight, f.ip), (b_job, f.ip)],
        &[f.campaign],
        now,
        None,
    )
    .await
    .unwrap();
    again.claimed.sort();
    assert_eq!(again.claimed.len(), 2);
    // (B's claim id with A's epoch: the epoch alone refuses the write.)
    let refused = ledger::record_outcomes(pg, &[f.sent(a_inflight, a.epoch, again.claim)], now)
        .await
        .unwrap();
    assert_eq!(
        refused.written, 0,
        "a status write under a superseded epoch"
    );
    assert_eq!(f.status(a_inflight).await, ("sending".into(), b.epoch));
    let written = ledger::record_outcomes(pg, &[f.sent(a_inflight, b.epoch, again.claim)], now)
        .await
        .unwrap();
    assert_eq!(written.written, 1);
    assert_eq!(written.campaigns, vec![(f.tenant, f.campaign)]);
    assert_eq!(f.status(a_inflight).await, ("sent".into(), b.epoch));

    // A's recoveries would undo B's work: each is refused.
    assert_eq!(
        ledger::release_sending_on_ip(pg, f.tenant, a.epoch, f.ip, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        ledger::release_stale_sending(pg, &[a.epoch], now, now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(f.status(b_job).await, ("sending".into(), b.epoch));
    assert_eq!(
        ledger::release_queued(pg, f.tenant, a.epoch, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        ledger::postpone_queued(pg, f.tenant, a.epoch, &[a_queued], now, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(f.status(a_queued).await.0, "queued");
    assert!(
        ledger::claim_due(pg, f.tenant, a.epoch, 10, now)
            .await
            .unwrap()
            .is_empty()
    );

    // The same recoveries under B's epoch do their work.
    assert_eq!(
        ledger::release_queued(pg, f.tenant, b.epoch, now)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        ledger::claim_due(pg, f.tenant, b.epoch, 10, now)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        ledger::release_sending_on_ip(pg, f.tenant, b.epoch, f.ip, now)
            .await
            .unwrap(),
        Some(1)
    );
}

/// A transaction holding a fence may sit idle for a second at most, so a node
/// the OS stops between two statements cannot block a takeover for longer.
#[tokio::test]
async fn a_transaction_holding_a_fence_may_not_sit_idle() {
    let f = fixture(0).await;
    let now = OffsetDateTime::now_utc();
    let a = f.take("node-a", now).await;
    let mut client = f.env.pg.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let show = "SHOW idle_in_transaction_session_timeout";
    assert_eq!(
        tx.query_one(show, &[]).await.unwrap().get::<_, String>(0),
        "0"
    );
    let held = fences::hold(&tx, &[f.tenant], &[a.epoch]).await.unwrap();
    assert_eq!(held, vec![f.tenant]);
    assert_eq!(
        tx.query_one(show, &[]).await.unwrap().get::<_, String>(0),
        "1s"
    );
    tx.rollback().await.unwrap();
    let after = client.query_one(show, &[]).await.unwrap();
    assert_eq!(after.get::<_, String>(0), "0", "only for that transaction");
}

/// A takeover waits for a claim in progress (the fence row is held `FOR SHARE`
/// by the claim's transaction) and then returns what that claim took: whichever
/// commits first, no job stays `sending` under the old epoch.
#[tokio::test]
async fn a_takeover_returns_claims_that_committed_before_it() {
    let f = fixture(50).await;
    let now = OffsetDateTime::now_utc();
    let a = f.take("node-a", now).await;
    let claims = f.jobs.iter().map(|job| f.claim(a.epoch, *job));
    let takeover = f.take("node-b", now);
    let (claims, taken) = tokio::join!(futures::future::join_all(claims), takeover);
    let claimed = claims.iter().filter(|c| !c.claimed.is_empty()).count();
    let fenced = claims.iter().filter(|c| c.fenced).count();
    assert_eq!(
        claimed + fenced,
        f.jobs.len(),
        "each claim either won or was fenced"
    );
    assert_eq!(
        taken.released as usize, claimed,
        "every claim before the takeover returned"
    );
    let left = f
        .env
        .psql(&format!(
            "SELECT count(*) FROM send_jobs WHERE tenant_id = '{}' AND status = 'sending'",
            f.tenant
        ))
        .await;
    assert_eq!(left[0].get::<_, i64>(0), 0);
}
