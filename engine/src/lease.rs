//! Tenant leases in Redis: a tenant (with its IPs) is worked by the one node holding
//! `lease:{t:<id>}`. A lease is renewed by its holder and expires
//! `node.lease_ttl_ms` after the last renewal, so a dead node's tenants move.
//!
//! A lease given up on purpose ([`Leases::release`], after a hand-off or a clean
//! stop) reads [`RELEASED`] and is taken at once. A lease that is simply missing
//! — expired, or Redis emptied or restarted — may still have a live holder that
//! has not renewed yet; the caller says per tenant whether to take it anyway
//! (Cluster does for the tenants it held, and for others once the lease has been
//! missing for a whole TTL, by which time a live holder would have renewed it).
//! So emptying Redis never hands a tenant to a second node while its owner sends.
//!
//! The lease says who should work a tenant; the fencing token says whose writes
//! Postgres still accepts: each takeover raises the tenant's epoch there
//! ([`crate::store::fences`]), so a node whose lease passed on changes nothing.

use deadpool_redis::Pool;
use deadpool_redis::redis::Script;
use uuid::Uuid;

use crate::queue::QueueError;

/// The value of a lease its holder gave up (`:` is never in a node id).
pub const RELEASED: &str = ":released";

/// ARGV: node, ttl, take when missing (`1`/`0`), [`RELEASED`]. 1 = held by
/// node now, 0 = another node's, 2 = missing and not taken.
const ACQUIRE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v == ARGV[4] or (not v and ARGV[3] == '1') then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if not v then
  return 2
end
return 0
";

/// ARGV: node, how long the [`RELEASED`] mark stays, [`RELEASED`].
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
  return 1
end
return 0
";

/// A lease after [`Leases::acquire_or_renew`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The asking node holds it now.
    Held,
    /// Another node holds it.
    Other,
    /// Nobody holds it and it was not taken (the caller did not ask to).
    Missing,
}

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

    /// Takes each tenant's lease for `node` where it is free (released, or
    /// missing and taking it was asked) and renews it where `node` holds it, in
    /// one round trip (a pipeline of one script call per key, so it stays
    /// per-slot on Redis Cluster). Returns each lease's state, in order.
    pub async fn acquire_or_renew(
        &self,
        asks: &[(Uuid, bool)],
        node: &str,
        ttl_ms: u64,
    ) -> Result<Vec<LeaseState>, QueueError> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = deadpool_redis::redis::pipe();
        pipe.load_script(&self.acquire).ignore();
        for (tenant, take_missing) in asks {
            pipe.invoke_script(
                self.acquire
                    .key(lease_key(*tenant))
                    .arg(node)
                    .arg(ttl_ms)
                    .arg(if *take_missing { "1" } else { "0" })
                    .arg(RELEASED),
            );
        }
        let mut conn = self.pool.get().await?;
        let states: Vec<i64> = pipe.query_async(&mut *conn).await?;
        Ok(states
            .into_iter()
            .map(|state| match state {
                1 => LeaseState::Held,
                2 => LeaseState::Missing,
                _ => LeaseState::Other,
            })
            .collect())
    }

    /// Gives up the lease if `node` holds it.
    /// The lease then reads [`RELEASED`] (for a minute): any node takes it at once.
    pub async fn release(&self, tenant: Uuid, node: &str) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: i64 = self
            .release
            .key(lease_key(tenant))
            .arg(node)
            .arg(60_000)
            .arg(RELEASED)
            .invoke_async(&mut *conn)
            .await?;
        Ok(())
    }
}
