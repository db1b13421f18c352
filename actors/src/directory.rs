//! Where actors find each other. Supervisors register a child when they (re)spawn it
//! and remove it when it stops, so a lookup always yields the live incarnation (or
//! nothing while it restarts). No global registry names: several engines can run in
//! one process (tests do).

use std::collections::HashMap;
use std::sync::RwLock;

use ractor::ActorRef;
use uuid::Uuid;

use crate::analytics::AnalyticsMsg;
use crate::feeder::FeederMsg;
use crate::ip::IpMsg;
use crate::status_writer::StatusMsg;
use crate::tenant::TenantMsg;
use crate::tenant_supervisor::TenantSupMsg;

#[derive(Default)]
pub struct Directory {
    ips: RwLock<HashMap<Uuid, ActorRef<IpMsg>>>,
    tenants: RwLock<HashMap<Uuid, ActorRef<TenantMsg>>>,
    status_writer: RwLock<Option<ActorRef<StatusMsg>>>,
    analytics: RwLock<Option<ActorRef<AnalyticsMsg>>>,
    feeder: RwLock<Option<ActorRef<FeederMsg>>>,
    tenant_supervisor: RwLock<Option<ActorRef<TenantSupMsg>>>,
}

fn read<T: Clone>(slot: &RwLock<T>) -> T {
    slot.read().expect("directory lock").clone()
}

fn write<T>(slot: &RwLock<T>, value: T) {
    *slot.write().expect("directory lock") = value;
}

impl Directory {
    pub fn ip(&self, id: Uuid) -> Option<ActorRef<IpMsg>> {
        self.ips.read().expect("directory lock").get(&id).cloned()
    }

    pub fn set_ip(&self, id: Uuid, actor: Option<ActorRef<IpMsg>>) {
        let mut map = self.ips.write().expect("directory lock");
        match actor {
            Some(actor) => map.insert(id, actor),
            None => map.remove(&id),
        };
    }

    pub fn tenant(&self, id: Uuid) -> Option<ActorRef<TenantMsg>> {
        self.tenants
            .read()
            .expect("directory lock")
            .get(&id)
            .cloned()
    }

    /// The tenants with a live Tenant actor, sorted.
    pub fn tenant_ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .tenants
            .read()
            .expect("directory lock")
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    pub fn tenant_supervisor(&self) -> Option<ActorRef<TenantSupMsg>> {
        read(&self.tenant_supervisor)
    }

    pub fn set_tenant_supervisor(&self, actor: Option<ActorRef<TenantSupMsg>>) {
        write(&self.tenant_supervisor, actor);
    }

    pub fn set_tenant(&self, id: Uuid, actor: Option<ActorRef<TenantMsg>>) {
        let mut map = self.tenants.write().expect("directory lock");
        match actor {
            Some(actor) => map.insert(id, actor),
            None => map.remove(&id),
        };
    }

    pub fn status_writer(&self) -> Option<ActorRef<StatusMsg>> {
        read(&self.status_writer)
    }

    pub fn set_status_writer(&self, actor: Option<ActorRef<StatusMsg>>) {
        write(&self.status_writer, actor);
    }

    pub fn analytics(&self) -> Option<ActorRef<AnalyticsMsg>> {
        read(&self.analytics)
    }

    pub fn set_analytics(&self, actor: Option<ActorRef<AnalyticsMsg>>) {
        write(&self.analytics, actor);
    }

    pub fn feeder(&self) -> Option<ActorRef<FeederMsg>> {
        read(&self.feeder)
    }

    pub fn set_feeder(&self, actor: Option<ActorRef<FeederMsg>>) {
        write(&self.feeder, actor);
    }
}
