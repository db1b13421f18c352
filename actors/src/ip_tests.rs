//! Actor tests of Ip admission: the real [`IpActor`] on ractor and the real
//! allowance arithmetic ([`crate::allowance`]), with Postgres and Redis behind
//! in-memory [`IpPorts`](crate::ip_ports::IpPorts) fakes and a stand-in Tenant
//! ([`crate::fakes::ip`]). Each test offers batches and counts what was
//! claimed `sending` and what went back to the tenant, and until when: an IP
//! admits at most its allowance (hourly cap, daily volume, counting what
//! Postgres recorded when its counters are rebuilt), uses a send a stale job
//! left unused for a refused one, and a paused IP admits nothing.
//!
//! The IP runs without delivery workers (`connections_per_ip = 0`): admission
//! ends at the claim, and delivery has tests of its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use penguin_config::Config;
use penguin_engine::queue::Popped;
use penguin_engine::store::usage::DayUsage;
use ractor::{Actor, ActorRef};
use time::macros::datetime;
use uuid::Uuid;

use super::{IpActor, IpArgs, IpMsg};
use crate::fakes::ip::{FakeIpPorts, FakeTenant, TenantLog};
use crate::fakes::{self, NOW};

const WITHIN: Duration = Duration::from_secs(5);
/// `limits.ip_hourly_cap`; the daily volume (2,400 over 24 active hours) allows
/// 100 an hour, so the cap binds.
const CAP: usize = 5;

struct Rig {
    ip: ActorRef<IpMsg>,
    tenant: ActorRef<crate::tenant::TenantMsg>,
    ports: Arc<FakeIpPorts>,
    told: Arc<Mutex<TenantLog>>,
    tenant_id: Uuid,
    campaign: Uuid,
    offered: usize,
}

impl Rig {
    /// An IP whose Postgres recorded `recorded` for today, `active` or paused
    /// until `paused_until`.
    async fn start(recorded: DayUsage, paused_until: Option<time::OffsetDateTime>) -> Rig {
        let mut config = Config::default();
        config.delivery.connections_per_ip = 0;
        config.limits.ip_hourly_cap = CAP as u32;
        config.limits.warm_daily_volume = 2_400;
        let ctx = fakes::context(config);
        let tenant_id = Uuid::new_v4();
        ctx.fences
            .write()
            .unwrap()
            .insert(ctx.partition(tenant_id), 3);
        let mut spec = fakes::ip_spec(tenant_id, 2);
        spec.active = paused_until.is_none();
        spec.paused_until = paused_until;
        let told = Arc::<Mutex<TenantLog>>::default();
        let (tenant, _) = Actor::spawn(None, FakeTenant, told.clone()).await.unwrap();
        ctx.directory.set_tenant(tenant_id, Some(tenant.clone()));
        let ports = FakeIpPorts::new(spec.clone(), recorded);
        let args = IpArgs {
            ctx,
            ports: ports.clone(),
            spec,
        };
        let (ip, _) = Actor::spawn(None, IpActor, args).await.unwrap();
        Rig {
            ip,
            tenant,
            ports,
            told,
            tenant_id,
            campaign: Uuid::new_v4(),
            offered: 0,
        }
    }

    /// Offers `n` jobs, as the tenant routes them; returns their ids.
    fn offer(&mut self, n: usize) -> Vec<Uuid> {
        let batch: Vec<Popped> = (0..n)
            .map(|i| fakes::job(self.tenant_id, self.campaign, self.offered + i))
            .collect();
        self.offered += n;
        let ids = batch.iter().map(|p| p.payload.job_id()).collect();
        self.ip.cast(IpMsg::Deliver(batch)).unwrap();
        ids
    }

    /// Waits until every offered job was claimed or refused, then for a quiet
    /// period: (claimed, refused with until when).
    async fn settle(&self) -> (Vec<Uuid>, Vec<(Vec<Uuid>, time::OffsetDateTime)>) {
        let answered =
            || self.ports.claimed().len() + self.told.lock().unwrap().refused_jobs().len();
        fakes::wait_until(
            &format!("all {} offered jobs claimed or refused", self.offered),
            WITHIN,
            || answered() >= self.offered,
        )
        .await;
        fakes::stays("claims and refusals", 6, || {}, answered).await;
        let refused = self.told.lock().unwrap().refused.clone();
        (self.ports.claimed(), refused)
    }

    fn stop(self) {
        self.ip.stop(None);
        self.tenant.stop(None);
    }
}

/// Deliveries that arrive while a claim is under way wait in the inbox and
/// share the next claim statement: a job waits for the claim under way and
/// its own, never for one claim per delivery ahead of it in the mailbox.
#[tokio::test]
async fn deliveries_during_a_claim_share_the_next_claim() {
    let mut rig = Rig::start(DayUsage::default(), None).await;
    let ports = rig.ports.clone();
    let held = ports.claim_gate.write().await;
    let first = rig.offer(1);
    fakes::wait_until("the first claim under way", WITHIN, || {
        rig.ports.log.lock().unwrap().claim_sizes.len() == 1
    })
    .await;
    let mut later = Vec::new();
    for _ in 0..3 {
        later.extend(rig.offer(1));
    }
    drop(held);
    let (claimed, refused) = rig.settle().await;
    assert_eq!(claimed, [first, later].concat());
    assert!(refused.is_empty());
    assert_eq!(
        rig.ports.log.lock().unwrap().claim_sizes,
        [1, 3],
        "the three deliveries made during the first claim share one"
    );
    rig.stop();
}

#[tokio::test]
async fn an_ip_admits_its_hourly_cap_and_refuses_the_rest_until_the_next_hour() {
    let mut rig = Rig::start(DayUsage::default(), None).await;
    let first = rig.offer(8);
    let (claimed, refused) = rig.settle().await;
    assert_eq!(claimed, first[..CAP], "the first {CAP} are admitted");
    let next_hour = datetime!(2026-12-06 11:00 UTC);
    assert_eq!(refused, [(first[CAP..].to_vec(), next_hour)]);

    // The hour is used up: a later batch is refused whole.
    let second = rig.offer(2);
    let (claimed, refused) = rig.settle().await;
    assert_eq!(claimed.len(), CAP, "nothing more admitted this hour");
    assert_eq!(refused[1], (second, next_hour));
    let counters = rig.ports.counters(NOW.date()).unwrap();
    assert_eq!(
        (counters.day, counters.hours[&10]),
        (CAP as i64, CAP as i64)
    );
    assert_eq!(rig.ports.log.lock().unwrap().rebuilds, 1);
    let marks = rig.ports.log.lock().unwrap().marks.clone();
    assert!(
        marks
            .iter()
            .all(|m| m.hour_start == datetime!(2026-12-06 10:00 UTC))
    );
    rig.stop();
}

#[tokio::test]
async fn what_postgres_recorded_counts_when_the_counters_are_rebuilt() {
    let recorded = DayUsage {
        day_total: 40,
        hour_total: 3,
    };
    let mut rig = Rig::start(recorded, None).await;
    let offered = rig.offer(4);
    let (claimed, refused) = rig.settle().await;
    assert_eq!(
        claimed,
        offered[..CAP - 3],
        "3 of the hour's {CAP} already went"
    );
    assert_eq!(
        refused,
        [(offered[CAP - 3..].to_vec(), datetime!(2026-12-06 11:00 UTC))]
    );
    let counters = rig.ports.counters(NOW.date()).unwrap();
    assert_eq!((counters.day, counters.hours[&10]), (42, CAP as i64));
    rig.stop();
}

#[tokio::test]
async fn reservations_no_claim_counted_are_reset_to_what_postgres_recorded() {
    let recorded = DayUsage {
        day_total: 1,
        hour_total: 1,
    };
    let mut rig = Rig::start(recorded, None).await;
    // A killed incarnation reserved the rest of the hour and never claimed.
    rig.ports.log.lock().unwrap().counters.insert(
        (rig.ports.spec.id, NOW.date()),
        crate::fakes::ip::DayCounters {
            day: 9,
            hours: [(10, CAP as i64)].into(),
            epoch: 7,
        },
    );
    let offered = rig.offer(CAP);
    let (claimed, refused) = rig.settle().await;
    assert_eq!(claimed, offered[..CAP - 1], "the hour less Postgres' one");
    assert_eq!(refused.len(), 1);
    let counters = rig.ports.counters(NOW.date()).unwrap();
    assert_eq!(
        (counters.day, counters.hours[&10]),
        (CAP as i64, CAP as i64)
    );
    assert_eq!(rig.ports.log.lock().unwrap().resets, 1);
    rig.stop();
}

/// Redis lost the counters again right after their rebuild (a flush while it
/// ran): the hour is unknown, not used up. The batch is neither claimed nor
/// refused until the next hour; its credit returns, and the next delivery
/// rebuilds the counters and is admitted.
#[tokio::test]
async fn counters_lost_during_their_rebuild_refuse_nothing() {
    let recorded = DayUsage {
        day_total: 2,
        hour_total: 2,
    };
    let mut rig = Rig::start(recorded, None).await;
    rig.ports.log.lock().unwrap().lost_after_rebuild = 1;
    rig.offer(2);
    fakes::wait_until("the batch's credit returned", WITHIN, || {
        rig.told.lock().unwrap().credit >= 2
    })
    .await;
    assert!(rig.ports.claimed().is_empty());
    assert!(
        rig.told.lock().unwrap().refused.is_empty(),
        "nothing refused until the next hour"
    );
    rig.offered = 0;
    let offered = rig.offer(2);
    let (claimed, refused) = rig.settle().await;
    assert_eq!(claimed, offered, "the hour had room for both");
    assert!(refused.is_empty());
    assert_eq!(rig.ports.log.lock().unwrap().rebuilds, 2);
    rig.stop();
}

#[tokio::test]
async fn a_send_a_stale_job_left_unused_goes_to_a_refused_one() {
    let mut rig = Rig::start(DayUsage::default(), None).await;
    // Mark the second job of the batch stale before offering it.
    let batch: Vec<Popped> = (0..8)
        .map(|n| fakes::job(rig.tenant_id, rig.campaign, n))
        .collect();
    let offered: Vec<Uuid> = batch.iter().map(|p| p.payload.job_id()).collect();
    rig.ports.log.lock().unwrap().stale.insert(offered[1]);
    rig.offered = 8;
    rig.ip.cast(IpMsg::Deliver(batch)).unwrap();
    let answered = || rig.ports.claimed().len() + rig.told.lock().unwrap().refused_jobs().len();
    fakes::wait_until("all but the stale job answered", WITHIN, || answered() >= 7).await;
    fakes::stays("claims and refusals", 6, || {}, answered).await;
    let claimed = rig.ports.claimed();
    let mut expected = vec![offered[0]];
    expected.extend(&offered[2..CAP + 1]);
    assert_eq!(
        claimed, expected,
        "the stale job's send went to the sixth job"
    );
    let refused = rig.told.lock().unwrap().refused.clone();
    assert_eq!(
        refused,
        [(offered[CAP + 1..].to_vec(), datetime!(2026-12-06 11:00 UTC))]
    );
    let counters = rig.ports.counters(NOW.date()).unwrap();
    assert_eq!(
        counters.hours[&10], CAP as i64,
        "the hour is used in full, not beyond"
    );
    rig.stop();
}

#[tokio::test]
async fn a_used_up_day_refuses_everything_until_the_next_day() {
    let recorded = DayUsage {
        day_total: 2_400,
        hour_total: 0,
    };
    let mut rig = Rig::start(recorded, None).await;
    let offered = rig.offer(3);
    let (claimed, refused) = rig.settle().await;
    assert_eq!(claimed, Vec::<Uuid>::new());
    assert_eq!(refused, [(offered, datetime!(2026-12-07 00:00 UTC))]);
    rig.stop();
}

#[tokio::test]
async fn a_paused_ip_admits_nothing_until_its_pause_ends() {
    let until = NOW + time::Duration::minutes(20);
    let mut rig = Rig::start(DayUsage::default(), Some(until)).await;
    let offered = rig.offer(3);
    let (claimed, refused) = rig.settle().await;
    assert_eq!(claimed, Vec::<Uuid>::new());
    assert_eq!(refused, [(offered, until)]);
    assert_eq!(rig.ports.counters(NOW.date()), None, "nothing was reserved");
    rig.stop();
}

#[tokio::test]
async fn urgent_jobs_of_a_batch_are_admitted_first_and_bulk_is_refused() {
    let mut rig = Rig::start(DayUsage::default(), None).await;
    // Six bulk jobs, then two urgent ones (priority 10), in one batch: the
    // hour's cap of five goes to the urgent pair first, then to bulk in order.
    let mut batch: Vec<Popped> = (0..6)
        .map(|n| fakes::job_with_priority(rig.tenant_id, rig.campaign, n, 200))
        .collect();
    batch.extend((6..8).map(|n| fakes::job_with_priority(rig.tenant_id, rig.campaign, n, 10)));
    let offered: Vec<Uuid> = batch.iter().map(|p| p.payload.job_id()).collect();
    rig.offered = batch.len();
    rig.ip.cast(IpMsg::Deliver(batch)).unwrap();
    let (claimed, refused) = rig.settle().await;
    let mut expected = offered[6..].to_vec();
    expected.extend(&offered[..3]);
    assert_eq!(
        claimed, expected,
        "urgent first, then bulk in arrival order"
    );
    assert_eq!(
        refused,
        [(offered[3..6].to_vec(), datetime!(2026-12-06 11:00 UTC))],
        "the allowance still binds: the bulk tail waits for the next hour"
    );
    rig.stop();
}
