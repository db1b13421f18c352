//! Partition leases in Redis: a partition (every tenant hashed into it, with
//! their IPs; `crate::partition`) is worked by the one node holding its lease.
//! A lease is renewed by its holder and expires `node.lease_ttl_ms` after the last
//! renewal, so a dead node's partitions move.
//!
//! All leases live in one hash, [`LEASES_KEY`]: field = partition, value =
//! `<node>|<expiry, unix ms on Redis' clock>`. One script call takes or renews
//! every lease a node wants, so a heartbeat costs a handful of Redis commands
//! whatever the number of partitions or tenants; one key is one slot, so it
//! runs unchanged on Redis Cluster. Expiry is judged by Redis' own clock (`TIME`),
//! never by the nodes'.
//!
//! A lease given up on purpose ([`Leases::release`], after a hand-off or a clean
//! stop) is held by [`RELEASED`] (for a minute) and is taken at once. A lease
//! that is simply missing — expired, or Redis emptied or restarted — may still
//! have a live holder that has not renewed yet; the caller says per partition
//! whether to take it anyway (Cluster does for the partitions it held, and for
//! others once the lease has been missing for a whole TTL, by which time a live
//! holder would have renewed it). So emptying Redis never hands a partition to
//! a second node while its owner sends.
//!
//! The lease says who should work a partition; the fencing token says whose
//! writes Postgres still accepts: each takeover raises the partition's epoch
//! there ([`crate::store::fences`]), so a node whose lease passed on changes nothing.

use crate::queue::RedisPool;
use deadpool_redis::redis::Script;

use crate::partition::Partition;
use crate::queue::QueueError;

/// The holder of a lease its holder gave up (`:` is never in a node id).
pub const RELEASED: &str = ":released";

/// The hash of every partition lease.
pub const LEASES_KEY: &str = "{cluster}:partition_leases";

/// How long a [`RELEASED`] mark stays, in ms.
const RELEASED_MS: u64 = 60_000;

/// Lua's `unpack` has a stack limit: field lists go to Redis in chunks.
const CHUNK: usize = 1_000;

/// Shared by both scripts: `now_ms` on Redis' clock, and `holder(v)`, the node
/// of a lease value if it has not expired.
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function holder(v)
  if not v then return nil end
  local sep = string.find(v, '|', 1, true)
  if not sep or tonumber(string.sub(v, sep + 1)) <= now_ms then return nil end
  return string.sub(v, 1, sep - 1)
end
local function hset_chunked(key, pairs)
  for i = 1, #pairs, 2000 do
    redis.call('HSET', key, unpack(pairs, i, math.min(i + 1999, #pairs)))
  end
end
";

/// ARGV: node, ttl ms, [`RELEASED`], then per partition: field, [`Ask`] code
/// (`0` take a released lease, `1` also a missing one, `2` renew only). Per
/// partition: 1 = held by node now, 0 = another node's, 2 = missing and not
/// taken, 3 = released and not taken.
const ACQUIRE: &str = r"
local node, ttl, released = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local fields = {}
for i = 4, #ARGV, 2 do fields[#fields + 1] = ARGV[i] end
local values = {}
for i = 1, #fields, 1000 do
  local got = redis.call('HMGET', KEYS[1], unpack(fields, i, math.min(i + 999, #fields)))
  for _, v in ipairs(got) do values[#values + 1] = v end
end
local out, sets = {}, {}
local value = node .. '|' .. (now_ms + ttl)
for i, field in ipairs(fields) do
  local owner = holder(values[i])
  local ask = ARGV[3 + 2 * i]
  if owner == node or (owner == released and ask ~= '2') or (owner == nil and ask == '1') then
    sets[#sets + 1] = field
    sets[#sets + 1] = value
    out[i] = 1
  elseif owner == nil then
    out[i] = 2
  elseif owner == released then
    out[i] = 3
  else
    out[i] = 0
  end
end
if #sets > 0 then hset_chunked(KEYS[1], sets) end
return out
";

/// ARGV: node, how long the [`RELEASED`] mark stays, [`RELEASED`], fields.
/// Marks released the leases `node` holds; returns how many.
const RELEASE: &str = r"
local node, keep, released = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local sets = {}
for i = 4, #ARGV do
  if holder(redis.call('HGET', KEYS[1], ARGV[i])) == node then
    sets[#sets + 1] = ARGV[i]
    sets[#sets + 1] = released .. '|' .. (now_ms + keep)
  end
end
if #sets > 0 then hset_chunked(KEYS[1], sets) end
return #sets / 2
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
    /// Its holder gave it up and it was not taken ([`Ask::Renew`]).
    Released,
}

/// What [`Leases::acquire_or_renew`] may do with one partition's lease besides
/// renewing it where the asking node holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Nothing else: a partition being handed off, whose lease the hand-off
    /// may have released already. Taking that back would make the new owner
    /// wait for it to expire and then for a whole TTL more.
    Renew,
    /// Also take it when its holder released it.
    Take,
    /// Also take it when it is released or missing (expired, or Redis emptied).
    TakeMissing,
}

impl Ask {
    fn code(self) -> &'static str {
        match self {
            Ask::Take => "0",
            Ask::TakeMissing => "1",
            Ask::Renew => "2",
        }
    }
}

#[derive(Clone)]
pub struct Leases {
    pool: RedisPool,
    acquire: Script,
    release: Script,
}

impl Leases {
    pub fn new(pool: RedisPool) -> Self {
        Self {
            pool,
            acquire: Script::new(&format!("{PRELUDE}{ACQUIRE}")),
            release: Script::new(&format!("{PRELUDE}{RELEASE}")),
        }
    }

    /// Renews each partition's lease where `node` holds it and takes it where
    /// its [`Ask`] allows: one script call per [`CHUNK`] partitions. Returns
    /// each lease's state, in order.
    pub async fn acquire_or_renew(
        &self,
        asks: &[(Partition, Ask)],
        node: &str,
        ttl_ms: u64,
    ) -> Result<Vec<LeaseState>, QueueError> {
        let mut conn = self.pool.get().await?;
        let mut states = Vec::with_capacity(asks.len());
        for chunk in asks.chunks(CHUNK) {
            let mut call = self.acquire.key(LEASES_KEY);
            call.arg(node).arg(ttl_ms).arg(RELEASED);
            for (partition, ask) in chunk {
                call.arg(*partition).arg(ask.code());
            }
            let got: Vec<i64> = call.invoke_async(&mut conn).await?;
            states.extend(got.into_iter().map(|state| match state {
                1 => LeaseState::Held,
                2 => LeaseState::Missing,
                3 => LeaseState::Released,
                _ => LeaseState::Other,
            }));
        }
        Ok(states)
    }

    /// Gives up the leases of `partitions` that `node` holds. They then read
    /// [`RELEASED`] (for a minute): any node takes them at once.
    pub async fn release(&self, partitions: &[Partition], node: &str) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        for chunk in partitions.chunks(CHUNK) {
            let mut call = self.release.key(LEASES_KEY);
            call.arg(node).arg(RELEASED_MS).arg(RELEASED);
            for partition in chunk {
                call.arg(*partition);
            }
            let _: i64 = call.invoke_async(&mut conn).await?;
        }
        Ok(())
    }

    /// Who holds `partition`'s lease now (`None`: nobody; [`RELEASED`] when
    /// given up), for tests and operators.
    pub async fn holder(&self, partition: Partition) -> Result<Option<String>, QueueError> {
        let mut conn = self.pool.get().await?;
        let holder: Option<String> = Script::new(&format!(
            "{PRELUDE}return holder(redis.call('HGET', KEYS[1], ARGV[1]))"
        ))
        .key(LEASES_KEY)
        .arg(partition)
        .invoke_async(&mut conn)
        .await?;
        Ok(holder)
    }
}
