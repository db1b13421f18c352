//! Fakes for the Ip actor tests: [`FakeIpPorts`] (a UTC calendar, past usage
//! as Postgres would report it, allowance counters with the semantics of
//! `engine/src/queue/reserve.lua`, and a claim that claims every offered job
//! except those marked stale), and [`FakeTenant`], a stand-in Tenant actor that
//! records what the Ip actor refuses and the credit it returns.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use penguin_engine::db::StoreError;
use penguin_engine::queue::QueueError;
use penguin_engine::queue::counters::{Reserved, Slot};
use penguin_engine::store::fences::Epoch;
use penguin_engine::store::ledger::{ClaimedJob, SendingClaim, UsageMark};
use penguin_engine::store::routing::IpSpec;
use penguin_engine::store::shaping_actions::ShapingAction;
use penguin_engine::store::usage::{DayUsage, LocalHour};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::ip_ports::IpPorts;
use crate::tenant::TenantMsg;

/// One IP's counters of one day: the day's total and each hour's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DayCounters {
    pub day: i64,
    pub hours: HashMap<u8, i64>,
    pub epoch: i64,
}

/// What [`FakeIpPorts`] holds and saw.
#[derive(Default)]
pub(crate) struct IpLog {
    /// Redis: counters per (ip, day); missing until seeded.
    pub counters: HashMap<(Uuid, Date), DayCounters>,
    /// Postgres: what the IP sent on the day and in the hour, for a rebuild;
    /// claims add to it as `ip_hourly_usage` would.
    pub recorded: DayUsage,
    /// Times missing counters were rebuilt from Postgres.
    pub rebuilds: usize,
    /// Times existing counters were reset to Postgres' totals (they disagreed).
    pub resets: usize,
    /// Rebuilds after which Redis loses the counters at once (a flush right
    /// after the rebuild), counted down.
    pub lost_after_rebuild: usize,
    /// Jobs claimed `sending`, in order.
    pub claimed: Vec<Uuid>,
    /// Jobs offered to each claim statement, in order.
    pub claim_sizes: Vec<usize>,
    /// Jobs the claim finds no longer `queued` (stale copies).
    pub stale: HashSet<Uuid>,
    /// Usage marks the claims carried.
    pub marks: Vec<UsageMark>,
    /// Jobs acknowledged in Redis.
    pub acked: usize,
    /// Postgres: shaping actions recorded.
    pub shaping: Vec<ShapingAction>,
}

pub(crate) struct FakeIpPorts {
    pub log: Mutex<IpLog>,
    /// The IP's row as Postgres has it.
    pub spec: IpSpec,
    /// Every claim reads this before it runs: a test that holds the write
    /// lock holds the claim under way.
    pub claim_gate: tokio::sync::RwLock<()>,
}

impl FakeIpPorts {
    pub(crate) fn new(spec: IpSpec, recorded: DayUsage) -> Arc<FakeIpPorts> {
        Arc::new(FakeIpPorts {
            log: Mutex::new(IpLog {
                recorded,
                ..IpLog::default()
            }),
            spec,
            claim_gate: tokio::sync::RwLock::new(()),
        })
    }

    pub(crate) fn claimed(&self) -> Vec<Uuid> {
        self.log.lock().unwrap().claimed.clone()
    }

    /// The counters of the IP's current day.
    pub(crate) fn counters(&self, day: Date) -> Option<DayCounters> {
        let log = self.log.lock().unwrap();
        log.counters.get(&(self.spec.id, day)).cloned()
    }
}

#[async_trait]
impl IpPorts for FakeIpPorts {
    async fn local_hour(
        &self,
        _timezone: &str,
        at: OffsetDateTime,
    ) -> Result<LocalHour, StoreError> {
        let day_start = at.replace_time(time::Time::MIDNIGHT);
        let hour_start = day_start + time::Duration::hours(i64::from(at.hour()));
        Ok(LocalHour {
            day: at.date(),
            hour: at.hour(),
            hour_start,
            hour_end: hour_start + time::Duration::HOUR,
            day_start,
            day_end: day_start + time::Duration::DAY,
        })
    }

    async fn usage(
        &self,
        _tenant: Uuid,
        _ip: Uuid,
        _day: Date,
        _hour_start: OffsetDateTime,
    ) -> Result<DayUsage, StoreError> {
        let log = self.log.lock().unwrap();
        Ok(DayUsage {
            day_total: log.recorded.day_total,
            hour_total: log.recorded.hour_total,
        })
    }

    async fn reserve(
        &self,
        slot: &Slot,
        wanted: u32,
        day_limit: Option<u32>,
        hour_limit: Option<u32>,
    ) -> Result<Reserved, QueueError> {
        let mut log = self.log.lock().unwrap();
        let Some(counters) = log.counters.get_mut(&(slot.ip, slot.day)) else {
            return Ok(Reserved::Missing);
        };
        let hour = counters.hours.entry(slot.hour).or_default();
        let mut n = i64::from(wanted);
        if let Some(limit) = day_limit {
            n = n.min(i64::from(limit) - counters.day);
        }
        if let Some(limit) = hour_limit {
            n = n.min(i64::from(limit) - *hour);
        }
        let granted = n.max(0);
        *hour += granted;
        counters.day += granted;
        Ok(Reserved::Granted {
            granted: granted as u32,
            day: counters.day,
            hour: counters.hours[&slot.hour],
            epoch: counters.epoch,
        })
    }

    async fn reset(&self, slot: &Slot, day_total: i64, hour_total: i64) -> Result<(), QueueError> {
        let mut log = self.log.lock().unwrap();
        if log.counters.contains_key(&(slot.ip, slot.day)) {
            log.resets += 1;
        } else {
            log.rebuilds += 1;
        }
        let counters = log.counters.entry((slot.ip, slot.day)).or_default();
        counters.day = day_total;
        counters.hours.insert(slot.hour, hour_total);
        counters.epoch += 1;
        if log.lost_after_rebuild > 0 {
            log.lost_after_rebuild -= 1;
            log.counters.remove(&(slot.ip, slot.day));
        }
        Ok(())
    }

    async fn give_back(&self, slot: &Slot, n: u32, epoch: Option<i64>) -> Result<(), QueueError> {
        let mut log = self.log.lock().unwrap();
        if let Some(counters) = log.counters.get_mut(&(slot.ip, slot.day))
            && epoch.is_none_or(|e| e == counters.epoch)
        {
            counters.day -= i64::from(n);
            *counters.hours.entry(slot.hour).or_default() -= i64::from(n);
        }
        Ok(())
    }

    async fn catch_up(&self, _ip: &IpSpec, _now: OffsetDateTime) -> anyhow::Result<()> {
        Ok(())
    }

    async fn ips_of(&self, _tenant: Uuid) -> Result<Vec<IpSpec>, StoreError> {
        Ok(vec![self.spec.clone()])
    }

    async fn claim_sending(
        &self,
        _tenant: Uuid,
        _epoch: Epoch,
        pairs: &[(Uuid, Uuid)],
        _campaigns: &[Uuid],
        now: OffsetDateTime,
        mark: Option<UsageMark>,
    ) -> Result<SendingClaim, StoreError> {
        self.log.lock().unwrap().claim_sizes.push(pairs.len());
        let _held = self.claim_gate.read().await;
        let mut log = self.log.lock().unwrap();
        let claimed: Vec<ClaimedJob> = pairs
            .iter()
            .filter(|(job, _)| !log.stale.contains(job))
            .map(|(job, _)| ClaimedJob {
                job: *job,
                first_attempt: now,
                step: 1,
                thread: Vec::new(),
            })
            .collect();
        log.claimed.extend(claimed.iter().map(|c| c.job));
        if let Some(mark) = mark {
            let delta = claimed.len() as i64 - i64::from(mark.given_back);
            log.recorded.day_total += delta;
            log.recorded.hour_total += delta;
        }
        log.marks.extend(mark);
        Ok(SendingClaim {
            claim: Uuid::new_v4(),
            claimed,
            ..SendingClaim::default()
        })
    }

    async fn ack(&self, _tenant: Uuid, raws: &[&[u8]]) -> Result<(), QueueError> {
        self.log.lock().unwrap().acked += raws.len();
        Ok(())
    }

    async fn release_sending_on_ip(
        &self,
        _tenant: Uuid,
        _epoch: Epoch,
        _ip: Uuid,
        _now: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        Ok(Some(0))
    }

    async fn record_shaping(&self, action: &ShapingAction) -> Result<(), StoreError> {
        self.log.lock().unwrap().shaping.push(action.clone());
        Ok(())
    }

    async fn shaping_in_force(
        &self,
        tenant: Uuid,
        ip: Uuid,
        now: OffsetDateTime,
    ) -> Result<Vec<ShapingAction>, StoreError> {
        let log = self.log.lock().unwrap();
        Ok(log
            .shaping
            .iter()
            .filter(|a| a.tenant_id == tenant && a.ip_id == ip && a.until > now)
            .cloned()
            .collect())
    }
}

/// What the stand-in tenant was told.
#[derive(Default)]
pub(crate) struct TenantLog {
    /// Refused jobs and until when, per refusal.
    pub refused: Vec<(Vec<Uuid>, OffsetDateTime)>,
    /// Credit returned (not counting refusals).
    pub credit: usize,
}

impl TenantLog {
    pub(crate) fn refused_jobs(&self) -> Vec<Uuid> {
        self.refused.iter().flat_map(|(j, _)| j.clone()).collect()
    }
}

/// A stand-in Tenant actor: records refusals and returned credit.
pub(crate) struct FakeTenant;

impl Actor for FakeTenant {
    type Msg = TenantMsg;
    type State = Arc<Mutex<TenantLog>>;
    type Arguments = Arc<Mutex<TenantLog>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<TenantMsg>,
        log: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(log)
    }

    async fn handle(
        &self,
        _myself: ActorRef<TenantMsg>,
        msg: TenantMsg,
        log: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let mut log = log.lock().unwrap();
        match msg {
            TenantMsg::Refused { jobs, until, .. } => log
                .refused
                .push((jobs.iter().map(|p| p.payload.job_id()).collect(), until)),
            TenantMsg::Credit { n, .. } => log.credit += n,
            _ => {}
        }
        Ok(())
    }
}
