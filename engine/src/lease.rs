//! Tenant leases in Redis: a tenant (with its IPs) is worked by the one node holding
//! `lease:{t:<id>}`. A lease is taken when free, renewed by its holder, and expires
//! `node.lease_ttl_ms` after the last renewal, so a dead node's tenants move.
//!
//! Fencing tokens on every status write and graceful hand-off between live nodes
//! build on this in the multi-node step.

use deadpool_redis::Pool;
use deadpool_redis::redis::Script;
use uuid::Uuid;

use crate::queue::QueueError;

const ACQUIRE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

pub fn lease_key(tenant: Uuid) -> String {
    format!("lease:{{t:{tenant}}}")
}

#[derive(Clone)]
pub struct Leases {
    pool: Pool,
    acquire: Script,
    release: Script,
}

impl Leases {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            acquire: Script::new(ACQUIRE),
            release: Script::new(RELEASE),
        }
    }

    /// Takes each tenant's lease for `node` where it is free and renews it where
    /// `node` holds it, in one round trip (a pipeline of one script call per key,
    /// so it stays per-slot on Redis Cluster). Returns, per tenant in order,
    /// whether `node` holds that lease now.
    pub async fn acquire_or_renew_many(
        &self,
        tenants: &[Uuid],
        node: &str,
        ttl_ms: u64,
    ) -> Result<Vec<bool>, QueueError> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = deadpool_redis::redis::pipe();
        pipe.load_script(&self.acquire).ignore();
        for tenant in tenants {
            pipe.invoke_script(self.acquire.key(lease_key(*tenant)).arg(node).arg(ttl_ms));
        }
        let mut conn = self.pool.get().await?;
        let held: Vec<i64> = pipe.query_async(&mut *conn).await?;
        Ok(held.into_iter().map(|h| h == 1).collect())
    }

    /// Gives up the lease if `node` holds it.
    pub async fn release(&self, tenant: Uuid, node: &str) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: i64 = self
            .release
            .key(lease_key(tenant))
            .arg(node)
            .invoke_async(&mut *conn)
            .await?;
        Ok(())
    }
}
