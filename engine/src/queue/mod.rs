//! The Redis fast lane: per tenant, three priority lists of compact job payloads,
//! a reliable pop into an in-flight set with deadlines, and the reaper's return of
//! expired in-flight jobs (DESIGN.md §3).
//!
//! Redis is never the only copy of a job: Postgres marks a job `queued` before it is
//! pushed here, and the engine re-feeds every `queued` job Redis lost (see
//! [`RedisQueue::is_live`]). Every key carries the tenant hash tag `{t:<id>}`, so
//! all keys touched by one script share a Redis Cluster slot.

use deadpool_redis::redis::{self, AsyncCommands, Script};
use penguin_config::RedisConfig;
use thiserror::Error;
use uuid::Uuid;

pub mod counters;
pub mod pool;

pub use pool::{RedisConn, RedisPool};

use crate::domain::Band;
use crate::payload::{JobPayload, PayloadError};

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("redis unavailable: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("invalid redis configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// The Redis of one node, one server or a cluster (see [`pool`]).
pub fn redis_pool(config: &RedisConfig) -> Result<RedisPool, QueueError> {
    RedisPool::new(config)
}

/// The key names of one tenant.
pub struct TenantKeys {
    pub lists: [String; 3],
    pub inflight: String,
    pub live: String,
}

impl TenantKeys {
    pub fn new(tenant: Uuid) -> Self {
        let tag = format!("{{t:{tenant}}}");
        Self {
            lists: Band::ALL.map(|band| format!("pq:{tag}:{}", band.as_str())),
            inflight: format!("pq:{tag}:inflight"),
            live: format!("pq:{tag}:live"),
        }
    }

    fn list(&self, band: Band) -> &str {
        &self.lists[band_index(band)]
    }
}

fn band_index(band: Band) -> usize {
    match band {
        Band::High => 0,
        Band::Normal => 1,
        Band::Low => 2,
    }
}

/// One job taken off a list: the stored bytes (needed to acknowledge it) and
/// what they decode to.
#[derive(Debug, Clone)]
pub struct Popped {
    pub raw: Vec<u8>,
    pub payload: JobPayload,
}

#[derive(Clone)]
pub struct RedisQueue {
    pool: RedisPool,
    pop_script: Script,
    requeue_script: Script,
}

impl RedisQueue {
    pub fn new(pool: RedisPool) -> Self {
        Self {
            pool,
            pop_script: Script::new(include_str!("pop.lua")),
            requeue_script: Script::new(include_str!("requeue.lua")),
        }
    }

    pub fn pool(&self) -> &RedisPool {
        &self.pool
    }

    /// Appends encoded jobs to their band's list, in one round trip.
    pub async fn push(&self, tenant: Uuid, jobs: &[(Band, Vec<u8>)]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let keys = TenantKeys::new(tenant);
        let mut pipe = redis::pipe();
        for band in Band::ALL {
            let items: Vec<&[u8]> = jobs
                .iter()
                .filter(|(b, _)| *b == band)
                .map(|(_, raw)| raw.as_slice())
                .collect();
            if !items.is_empty() {
                pipe.rpush(keys.list(band), items).ignore();
            }
        }
        let mut conn = self.pool.get().await?;
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Jobs waiting in each tenant's lists (not counting in-flight): one round
    /// trip, or on a cluster one per tenant (a pipeline keeps to one slot),
    /// sent together.
    pub async fn depths(&self, tenants: &[Uuid]) -> Result<Vec<usize>, QueueError> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let lengths = |tenants: &[Uuid]| {
            let mut pipe = redis::pipe();
            for tenant in tenants {
                for list in &TenantKeys::new(*tenant).lists {
                    pipe.llen(list);
                }
            }
            pipe
        };
        let lens: Vec<usize> = if self.pool.is_cluster() {
            let each = tenants.iter().map(|tenant| async move {
                let mut conn = self.pool.get().await?;
                let lens: Vec<usize> = lengths(&[*tenant]).query_async(&mut conn).await?;
                Ok::<_, QueueError>(lens)
            });
            futures::future::try_join_all(each)
                .await?
                .into_iter()
                .flatten()
                .collect()
        } else {
            let mut conn = self.pool.get().await?;
            lengths(tenants).query_async(&mut conn).await?
        };
        Ok(lens.chunks(3).map(|c| c.iter().sum()).collect())
    }

    /// Everything Redis holds for `tenant`: jobs in its lists plus popped jobs
    /// in its in-flight set (one round trip). Zero means its Tenant actor may
    /// stop: nothing of it waits in Redis.
    pub async fn held(&self, tenant: Uuid) -> Result<usize, QueueError> {
        let keys = TenantKeys::new(tenant);
        let mut pipe = redis::pipe();
        for list in &keys.lists {
            pipe.llen(list);
        }
        pipe.zcard(&keys.inflight);
        let mut conn = self.pool.get().await?;
        let lens: Vec<usize> = pipe.query_async(&mut conn).await?;
        Ok(lens.iter().sum())
    }

    /// Pops up to `max` jobs, most urgent band first, into the in-flight set with
    /// `deadline_ms` (unix ms). Undecodable elements are dropped from in-flight and
    /// reported by count (Postgres still holds those jobs as `queued`).
    pub async fn pop(
        &self,
        tenant: Uuid,
        max: usize,
        deadline_ms: i64,
    ) -> Result<(Vec<Popped>, usize), QueueError> {
        if max == 0 {
            return Ok((Vec::new(), 0));
        }
        let keys = TenantKeys::new(tenant);
        let mut conn = self.pool.get().await?;
        let raws: Vec<Vec<u8>> = self
            .pop_script
            .key(&keys.lists[0])
            .key(&keys.lists[1])
            .key(&keys.lists[2])
            .key(&keys.inflight)
            .arg(max)
            .arg(deadline_ms)
            .invoke_async(&mut conn)
            .await?;
        let mut popped = Vec::with_capacity(raws.len());
        let mut garbage = Vec::new();
        for raw in raws {
            match JobPayload::decode(&raw) {
                Ok(payload) => popped.push(Popped { raw, payload }),
                Err(err) => {
                    tracing::error!(%tenant, error = %err, "dropping undecodable queue element");
                    garbage.push(raw);
                }
            }
        }
        let dropped = garbage.len();
        if !garbage.is_empty() {
            let _: i64 = conn.zrem(&keys.inflight, garbage).await?;
        }
        Ok((popped, dropped))
    }

    /// Acknowledges popped jobs: they leave the in-flight set for good.
    pub async fn ack(&self, tenant: Uuid, raws: &[&[u8]]) -> Result<(), QueueError> {
        if raws.is_empty() {
            return Ok(());
        }
        let keys = TenantKeys::new(tenant);
        let mut conn = self.pool.get().await?;
        let _: i64 = conn.zrem(&keys.inflight, raws).await?;
        Ok(())
    }

    /// Returns in-flight jobs whose deadline passed before `now_ms` to the front of
    /// their lists; at most `limit` per call. Returns how many moved.
    pub async fn requeue_expired(
        &self,
        tenant: Uuid,
        now_ms: i64,
        limit: usize,
    ) -> Result<usize, QueueError> {
        let keys = TenantKeys::new(tenant);
        let mut conn = self.pool.get().await?;
        let expired: Vec<Vec<u8>> = conn
            .zrangebyscore_limit(&keys.inflight, "-inf", now_ms, 0, limit as isize)
            .await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let mut invocation = self.requeue_script.prepare_invoke();
        invocation
            .key(&keys.inflight)
            .key(&keys.lists[0])
            .key(&keys.lists[1])
            .key(&keys.lists[2]);
        for raw in &expired {
            // Undecodable leftovers go to the low band; pop drops them visibly.
            let band = JobPayload::decode(raw)
                .map(|p| p.into_job().band())
                .unwrap_or(Band::Low);
            invocation.arg(raw.as_slice()).arg(band_index(band) + 1);
        }
        let moved: usize = invocation.invoke_async(&mut conn).await?;
        Ok(moved)
    }

    /// Whether Redis still holds this tenant's queue state. `false` means Redis was
    /// emptied or restarted since [`RedisQueue::mark_live`]: the caller must return
    /// the tenant's `queued` jobs to `pending` in Postgres, then mark it live again.
    pub async fn is_live(&self, tenant: Uuid) -> Result<bool, QueueError> {
        let mut conn = self.pool.get().await?;
        Ok(conn.exists(TenantKeys::new(tenant).live).await?)
    }

    pub async fn mark_live(&self, tenant: Uuid) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: () = conn.set(TenantKeys::new(tenant).live, 1).await?;
        Ok(())
    }

    /// Round trip check for `/health/queue`.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_tenant_hash_tag() {
        let tenant = Uuid::from_u128(7);
        let keys = TenantKeys::new(tenant);
        let tag = format!("{{t:{tenant}}}");
        for key in keys.lists.iter().chain([&keys.inflight, &keys.live]) {
            assert!(key.contains(&tag), "{key}");
        }
        assert!(keys.lists[0].ends_with(":high"));
        assert!(keys.lists[2].ends_with(":low"));
    }
}
