//! Actor tests of the Tenant credit scheme: the real [`TenantActor`] on ractor,
//! with in-memory Redis lists, campaign pools and Postgres behind
//! [`TenantPorts`](crate::tenant_ports::TenantPorts), and stand-in Ip actors
//! that hold what they are given ([`crate::fakes`]). Each test counts what was
//! popped and what each IP holds: a tenant never holds more popped jobs than
//! its IPs' credits, a credit given back lets it pop exactly that many more,
//! and jobs an IP refuses go to another IP of the pool, or back to Postgres
//! until the earliest reopening once every IP of the pool refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use penguin_config::Config;
use ractor::{Actor, ActorRef};
use uuid::Uuid;

use super::{TenantActor, TenantArgs, TenantMsg};
use crate::context::Ctx;
use crate::fakes::{self, FakeIp, FakePorts, Held};

const WITHIN: Duration = Duration::from_secs(5);

/// One tenant with two IPs (credit 5 each: 2 connections + a backlog of 3), one
/// campaign over both, and `jobs` jobs in its lists.
struct Rig {
    ctx: Ctx,
    tenant: ActorRef<TenantMsg>,
    ports: Arc<FakePorts>,
    ips: [Uuid; 2],
    held: [Arc<Mutex<Held>>; 2],
}

const CREDIT: usize = 5;

impl Rig {
    async fn start(jobs: usize) -> Rig {
        let mut config = Config::default();
        config.delivery.connections_per_ip = 2;
        config.delivery.ip_backlog = CREDIT - 2;
        config.queue.feed_idle_ms = 100;
        let ctx = fakes::context(config);
        let tenant_id = Uuid::new_v4();
        let campaign = Uuid::new_v4();
        let specs = [fakes::ip_spec(tenant_id, 2), fakes::ip_spec(tenant_id, 3)];
        let ips = [specs[0].id, specs[1].id];
        let held = [Arc::default(), Arc::default()];
        for (ip, held) in ips.iter().zip(&held) {
            let (actor, _) = Actor::spawn(None, FakeIp, Arc::clone(held)).await.unwrap();
            ctx.directory.set_ip(*ip, Some(actor));
        }
        ctx.fences
            .write()
            .unwrap()
            .insert(ctx.partition(tenant_id), 7);
        let lists = (0..jobs)
            .map(|n| fakes::job(tenant_id, campaign, n))
            .collect();
        let ports = FakePorts::new(lists, HashMap::from([(campaign, ips.to_vec())]));
        let args = TenantArgs {
            ctx: ctx.clone(),
            ports: ports.clone(),
            tenant_id,
            ips: specs.to_vec(),
        };
        let (tenant, _) = Actor::spawn(None, TenantActor, args).await.unwrap();
        ctx.directory.set_tenant(tenant_id, Some(tenant.clone()));
        Rig {
            ctx,
            tenant,
            ports,
            ips,
            held,
        }
    }

    fn holding(&self) -> [usize; 2] {
        [0, 1].map(|i| self.held[i].lock().unwrap().jobs.len())
    }

    fn most(&self) -> [usize; 2] {
        [0, 1].map(|i| self.held[i].lock().unwrap().most)
    }

    /// IP `i` finished `n` of its jobs: they leave it and their credit returns.
    fn finish(&self, i: usize, n: usize) {
        self.held[i].lock().unwrap().jobs.drain(..n);
        self.tenant
            .cast(TenantMsg::Credit { ip: self.ips[i], n })
            .unwrap();
    }

    /// IP `i` refuses everything it holds until `until`.
    fn refuse(&self, i: usize, until: time::OffsetDateTime) -> Vec<Uuid> {
        let jobs: Vec<_> = self.held[i].lock().unwrap().jobs.drain(..).collect();
        let ids = jobs.iter().map(|p| p.payload.job_id()).collect();
        self.tenant
            .cast(TenantMsg::Refused {
                ip: self.ips[i],
                jobs,
                until,
            })
            .unwrap();
        ids
    }

    /// Nothing moves over a quiet period, however often the tenant is woken.
    async fn quiet(&self, what: &str) -> (usize, [usize; 2]) {
        stays_with_nudges(self, what).await
    }

    /// Waits until the tenant popped `at_least` jobs in all, then for a quiet
    /// period: (jobs popped, jobs each IP holds).
    async fn settle(&self, at_least: usize) -> (usize, [usize; 2]) {
        fakes::wait_until(
            &format!("the tenant popped {at_least} jobs in all"),
            WITHIN,
            || self.ports.popped() >= at_least,
        )
        .await;
        self.quiet(&format!("after {at_least} jobs popped")).await
    }

    fn stop(self) {
        self.tenant.stop(None);
        for ip in self.ips {
            if let Some(actor) = self.ctx.directory.ip(ip) {
                actor.stop(None);
            }
        }
    }
}

async fn stays_with_nudges(rig: &Rig, what: &str) -> (usize, [usize; 2]) {
    fakes::stays(
        what,
        8,
        || {
            let _ = rig.tenant.cast(TenantMsg::JobsAvailable);
        },
        || (rig.ports.popped(), rig.holding()),
    )
    .await
}

#[tokio::test]
async fn a_tenant_pops_no_more_than_its_ips_credit() {
    let rig = Rig::start(40).await;
    let (popped, holding) = rig.settle(2 * CREDIT).await;
    assert_eq!(popped, 2 * CREDIT, "popped exactly the credit of both IPs");
    assert_eq!(holding, [CREDIT, CREDIT]);
    assert_eq!(rig.ports.log.lock().unwrap().lists.len(), 40 - 2 * CREDIT);
    assert!(
        rig.ports
            .log
            .lock()
            .unwrap()
            .pops
            .iter()
            .all(|max| *max <= 2 * CREDIT),
        "no pop asked for more than the free credit: {:?}",
        rig.ports.log.lock().unwrap().pops
    );
    assert_eq!(
        rig.most(),
        [CREDIT, CREDIT],
        "no IP ever held more than its credit"
    );
    rig.stop();
}

#[tokio::test]
async fn credit_given_back_lets_the_tenant_pop_exactly_that_many_more() {
    let rig = Rig::start(40).await;
    let spent = rig.settle(2 * CREDIT).await;
    assert_eq!(spent, (2 * CREDIT, [CREDIT, CREDIT]), "popped its credit");

    rig.finish(0, 3);
    let (popped, holding) = rig.settle(2 * CREDIT + 3).await;
    assert_eq!(popped, 2 * CREDIT + 3, "three credits, three jobs");
    assert_eq!(holding, [CREDIT, CREDIT]);
    assert_eq!(rig.held[0].lock().unwrap().total, CREDIT + 3);
    assert_eq!(
        rig.held[1].lock().unwrap().total,
        CREDIT,
        "the full IP got none"
    );

    // Both finish everything: ten more, and never more than the credit at once.
    rig.finish(0, CREDIT);
    rig.finish(1, CREDIT);
    let (popped, holding) = rig.settle(4 * CREDIT + 3).await;
    assert_eq!((popped, holding), (4 * CREDIT + 3, [CREDIT, CREDIT]));
    assert_eq!(
        rig.most(),
        [CREDIT, CREDIT],
        "no IP ever held more than its credit"
    );
    rig.stop();
}

#[tokio::test]
async fn refused_jobs_go_to_another_ip_of_the_pool_then_wait_in_postgres() {
    let rig = Rig::start(40).await;
    let spent = rig.settle(2 * CREDIT).await;
    assert_eq!(spent, (2 * CREDIT, [CREDIT, CREDIT]), "popped its credit");
    let now = rig.ctx.clock.now();
    let first_reopens = now + time::Duration::hours(1);

    // The first IP used its allowance: its jobs wait for the second IP's credit
    // (nothing new is popped for them, nothing goes to the blocked IP).
    let refused = rig.refuse(0, first_reopens);
    let (popped, holding) = rig.quiet("the refused jobs wait for credit").await;
    assert_eq!((popped, holding), (2 * CREDIT, [0, CREDIT]));
    rig.finish(1, CREDIT);
    fakes::wait_until("the refused jobs reach the second IP", WITHIN, || {
        rig.holding() == [0, CREDIT] && rig.held[1].lock().unwrap().total == 2 * CREDIT
    })
    .await;
    let (popped, _) = rig.quiet("the second IP holds the refused jobs").await;
    assert_eq!(
        popped,
        2 * CREDIT,
        "the refused jobs spent the credit, not a pop"
    );
    let rerouted: Vec<Uuid> = rig.held[1]
        .lock()
        .unwrap()
        .jobs
        .iter()
        .map(|p| p.payload.job_id())
        .collect();
    assert_eq!(rerouted, refused);

    // The second IP refuses them too, until later: every IP of the pool is
    // blocked, so they go back to Postgres until the earliest reopening, and
    // out of Redis.
    rig.refuse(1, now + time::Duration::hours(2));
    fakes::wait_until("the jobs are postponed", WITHIN, || {
        !rig.ports.log.lock().unwrap().postponed.is_empty()
    })
    .await;
    let (popped, holding) = rig.quiet("nothing is routed while the pool waits").await;
    assert_eq!((popped, holding), (2 * CREDIT, [0, 0]));
    let log = rig.ports.log.lock().unwrap();
    let postponed: Vec<Uuid> = log
        .postponed
        .iter()
        .flat_map(|(ids, _)| ids.clone())
        .collect();
    let mut expected = refused.clone();
    expected.sort();
    let mut got = postponed.clone();
    got.sort();
    assert_eq!(got, expected, "exactly the refused jobs wait in Postgres");
    assert!(
        log.postponed
            .iter()
            .all(|(_, run_at)| *run_at == first_reopens)
    );
    let refused_raws: Vec<&Vec<u8>> = log
        .inflight
        .iter()
        .filter(|raw| {
            let id = penguin_engine::payload::JobPayload::decode(raw)
                .unwrap()
                .job_id();
            refused.contains(&id)
        })
        .collect();
    assert!(
        refused_raws.is_empty(),
        "postponed jobs are acknowledged in Redis"
    );
    drop(log);
    rig.stop();
}

/// One tenant with two IPs: a bulk campaign and an urgent one both only on the
/// first IP, a third campaign on the second. `bulk` bulk jobs wait in the lists.
async fn start_lanes(bulk: usize) -> (Rig, Uuid, Uuid) {
    let mut config = Config::default();
    config.delivery.connections_per_ip = 2;
    config.delivery.ip_backlog = CREDIT - 2;
    config.queue.feed_idle_ms = 100;
    let ctx = fakes::context(config);
    let tenant_id = Uuid::new_v4();
    let (bulk_campaign, urgent_campaign) = (Uuid::new_v4(), Uuid::new_v4());
    let specs = [fakes::ip_spec(tenant_id, 2), fakes::ip_spec(tenant_id, 3)];
    let ips = [specs[0].id, specs[1].id];
    let held = [Arc::default(), Arc::default()];
    for (ip, held) in ips.iter().zip(&held) {
        let (actor, _) = Actor::spawn(None, FakeIp, Arc::clone(held)).await.unwrap();
        ctx.directory.set_ip(*ip, Some(actor));
    }
    ctx.fences
        .write()
        .unwrap()
        .insert(ctx.partition(tenant_id), 7);
    let lists = (0..bulk)
        .map(|n| fakes::job_with_priority(tenant_id, bulk_campaign, n, 200))
        .collect();
    let pools = HashMap::from([
        (bulk_campaign, vec![ips[0]]),
        (urgent_campaign, vec![ips[0]]),
        (Uuid::new_v4(), vec![ips[1]]),
    ]);
    let ports = FakePorts::new(lists, pools);
    let args = TenantArgs {
        ctx: ctx.clone(),
        ports: ports.clone(),
        tenant_id,
        ips: specs.to_vec(),
    };
    let (tenant, _) = Actor::spawn(None, TenantActor, args).await.unwrap();
    ctx.directory.set_tenant(tenant_id, Some(tenant.clone()));
    let rig = Rig {
        ctx,
        tenant,
        ports,
        ips,
        held,
    };
    (rig, tenant_id, urgent_campaign)
}

#[tokio::test]
async fn an_urgent_job_takes_the_first_credit_ahead_of_the_overflow() {
    // Ten bulk jobs popped for the two IPs' credit: five reach the first IP
    // (their only one), five wait in the overflow for its credit.
    let (rig, tenant_id, urgent_campaign) = start_lanes(2 * CREDIT).await;
    let (popped, holding) = rig.settle(2 * CREDIT).await;
    assert_eq!((popped, holding), (2 * CREDIT, [CREDIT, 0]));

    // An urgent job of the same IP arrives; the overflow already spends the
    // whole free credit, so it waits in Redis.
    let urgent = fakes::job_with_priority(tenant_id, urgent_campaign, 99, 10);
    let urgent_id = urgent.payload.job_id();
    rig.ports.log.lock().unwrap().lists.push_back(urgent);
    rig.tenant.cast(TenantMsg::UrgentAvailable).unwrap();
    let (popped, holding) = rig.quiet("no credit for the urgent job yet").await;
    assert_eq!((popped, holding), (2 * CREDIT, [CREDIT, 0]));

    // The first IP gives one credit back: the urgent job takes it, ahead of the
    // five bulk jobs that waited in the overflow before it.
    rig.finish(0, 1);
    let (popped, holding) = rig.settle(2 * CREDIT + 1).await;
    assert_eq!((popped, holding), (2 * CREDIT + 1, [CREDIT, 0]));
    let last = rig.held[0]
        .lock()
        .unwrap()
        .jobs
        .last()
        .map(|p| p.payload.job_id());
    assert_eq!(last, Some(urgent_id), "the urgent job got the credit");

    // Then bulk resumes from the overflow, in its order.
    rig.finish(0, 1);
    let (_, holding) = rig.quiet("one more bulk job routed").await;
    assert_eq!(holding, [CREDIT, 0]);
    let newest = rig.held[0]
        .lock()
        .unwrap()
        .jobs
        .last()
        .map(|p| p.payload.job().priority);
    assert_eq!(newest, Some(200));
    rig.stop();
}
