//! Node membership in Redis: every node writes its [`NodeRecord`] each heartbeat
//! to `{cluster}:node:<id>` (expiring after the lease TTL) and keeps its id in
//! the sorted set `{cluster}:nodes`, scored by when the record expires. A node
//! that stops cleanly [`Membership::leave`]s; one that dies drops out when its
//! record expires. Read by `GET /v1/nodes`. `POST /v1/nodes/{id}/drain` leaves
//! a drain request (`{cluster}:node:<id>:drain`) the node picks up at its next
//! heartbeat.
//!
//! The node keys carry the hash tag `{cluster}`, like the partition leases: a
//! heartbeat writes the record and the set in one pipeline and reading the
//! live nodes gets every record in one, and on Redis Cluster a pipeline keeps
//! to one slot. A record names partitions, not tenants: its size and the
//! heartbeat's cost do not grow with the number of tenants.

use crate::partition::Partition;
use crate::queue::QueueError;
use crate::queue::RedisPool;
use deadpool_redis::redis::{AsyncCommands as _, pipe};
use serde::{Deserialize, Serialize};

/// The sorted set of node ids, scored by record expiry (unix ms).
pub const NODES_KEY: &str = "{cluster}:nodes";

pub fn node_key(id: &str) -> String {
    format!("{{cluster}}:node:{id}")
}

/// What a node says about itself each heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// `node.id` of its configuration.
    pub id: String,
    /// When the process started (unix ms).
    pub started_at_ms: i64,
    /// When this record was written (unix ms).
    pub heartbeat_at_ms: i64,
    /// The partitions whose lease it held at that heartbeat, sorted (its
    /// tenants are those hashed into them, `crate::partition`).
    pub partitions: Vec<Partition>,
    /// Partitions it is handing off (lease still held, IPs draining), sorted.
    #[serde(default)]
    pub handing_off: Vec<Partition>,
    /// Messages it handed to a receiving server since it started.
    pub sent_total: u64,
    /// Its rate over the last heartbeat interval, per minute.
    pub sent_per_minute: f64,
    /// Handing its tenants off to go away (`POST /v1/nodes/{id}/drain`): the
    /// other nodes leave it out when they share the tenants.
    #[serde(default)]
    pub draining: bool,
}

impl NodeRecord {
    /// A node that started now, owns nothing and sent nothing yet.
    pub fn starting(id: &str) -> NodeRecord {
        let now = crate::clock::unix_ms();
        NodeRecord {
            id: id.to_string(),
            started_at_ms: now,
            heartbeat_at_ms: now,
            partitions: Vec::new(),
            handing_off: Vec::new(),
            sent_total: 0,
            sent_per_minute: 0.0,
            draining: false,
        }
    }
}

/// The key that asks node `id` to drain (set by the API, read by the node).
pub fn drain_key(id: &str) -> String {
    format!("{{cluster}}:node:{id}:drain")
}

#[derive(Clone)]
pub struct Membership {
    pool: RedisPool,
}

impl Membership {
    pub fn new(pool: RedisPool) -> Self {
        Membership { pool }
    }

    /// Publishes `record`, live for `ttl_ms` (one round trip).
    pub async fn beat(&self, record: &NodeRecord, ttl_ms: u64) -> Result<(), QueueError> {
        let json = serde_json::to_string(record).expect("a node record serializes");
        let expires = record.heartbeat_at_ms.saturating_add(ttl_ms as i64);
        let mut conn = self.pool.get().await?;
        pipe()
            .pset_ex(node_key(&record.id), json, ttl_ms)
            .ignore()
            .zadd(NODES_KEY, &record.id, expires)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Asks node `id` to drain; it sees the request at its next heartbeat.
    /// The request lives as long as a node record (`ttl_ms`), renewed by the
    /// node while it drains, so a request for a node that died expires.
    pub async fn request_drain(&self, id: &str, ttl_ms: u64) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: () = conn.pset_ex(drain_key(id), 1, ttl_ms).await?;
        Ok(())
    }

    /// Whether node `id` was asked to drain; renews the request (for `ttl_ms`)
    /// when it was, so it outlives no node that is still draining.
    pub async fn drain_requested(&self, id: &str, ttl_ms: u64) -> Result<bool, QueueError> {
        let mut conn = self.pool.get().await?;
        let renewed: bool = conn.pexpire(drain_key(id), ttl_ms as i64).await?;
        Ok(renewed)
    }

    /// Node `id`'s record, if it has a live one.
    pub async fn record(&self, id: &str) -> Result<Option<NodeRecord>, QueueError> {
        let mut conn = self.pool.get().await?;
        let json: Option<String> = conn.get(node_key(id)).await?;
        Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Removes the node at once (a clean stop).
    pub async fn leave(&self, id: &str) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        pipe()
            .del(node_key(id))
            .ignore()
            .del(drain_key(id))
            .ignore()
            .zrem(NODES_KEY, id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// The live nodes, by id. Ids whose record expired before `now_ms` are
    /// pruned from the set on the way.
    pub async fn live(&self, now_ms: i64) -> Result<Vec<NodeRecord>, QueueError> {
        let mut conn = self.pool.get().await?;
        let _: i64 = conn.zrembyscore(NODES_KEY, "-inf", now_ms).await?;
        let ids: Vec<String> = conn.zrange(NODES_KEY, 0, -1).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut gets = pipe();
        for id in &ids {
            gets.get(node_key(id));
        }
        let records: Vec<Option<String>> = gets.query_async(&mut conn).await?;
        let mut live: Vec<NodeRecord> = records
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }
}
