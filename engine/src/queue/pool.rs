//! The node's way to Redis, one server or a Redis Cluster (`[redis] cluster`):
//! [`RedisPool::get`] hands out a [`RedisConn`] that commands, pipelines and
//! scripts use alike, whichever it is.
//!
//! - **One server** (`[redis] url`): a deadpool of connections, at most
//!   `[redis] pool_size`.
//! - **A cluster** (`[redis] cluster = ["redis://host:port", ...]`, any of its
//!   masters as seeds): one multiplexed cluster connection, shared. It learns
//!   the slot map from the seeds, sends each command to the master of its
//!   key's slot and follows `MOVED`/`ASK` while slots move or a replica takes
//!   over. A pipeline or a script must keep to one slot: every key of a tenant
//!   carries the hash tag `{t:<tenant>}`, and the keys of the cluster's own
//!   state (leases, membership) the tag `{cluster}` (DESIGN.md §3a).
//!
//! Timeouts are short and explicit in both modes: 2 s to connect and 2 s for
//! an answer; in a cluster a command is retried at most twice (after a
//! failover the slot map is refreshed on the way), so a master restart costs
//! seconds, never a stall.

use std::time::Duration;

use deadpool_redis::redis::aio::ConnectionLike;
use deadpool_redis::redis::cluster::ClusterClientBuilder;
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{self, AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};
use deadpool_redis::{Manager, Pool, Runtime, Status};
use penguin_config::RedisConfig;
use tokio::sync::OnceCell;

use super::QueueError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a node's Redis commands go.
#[derive(Clone)]
pub enum RedisPool {
    Single(Pool),
    Cluster(ClusterPool),
}

/// One connection of a [`RedisPool`]: a pooled one, or the shared cluster
/// connection.
pub enum RedisConn {
    Single(deadpool_redis::Connection),
    Cluster(ClusterConnection),
}

/// The shared cluster connection, made on first use (so a node starts while
/// the cluster is still forming, as it does with one server) and made again
/// after it failed to be made.
#[derive(Clone)]
pub struct ClusterPool {
    client: std::sync::Arc<redis::cluster::ClusterClient>,
    connection: std::sync::Arc<OnceCell<ClusterConnection>>,
}

impl RedisPool {
    /// The pool `config` describes (nothing connects yet). A `rediss://` URL
    /// connects over TLS (rustls), checking the server's certificate against
    /// `[redis] ca_file` or else the system's trust store.
    pub fn new(config: &RedisConfig) -> Result<RedisPool, QueueError> {
        if config.cluster.is_empty() {
            return single(config).map(RedisPool::Single);
        }
        let mut builder = ClusterClientBuilder::new(config.cluster.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(2)
            .min_retry_wait(100)
            .max_retry_wait(1_000);
        if let Some(ca_file) = &config.ca_file {
            let pem = std::fs::read(ca_file).map_err(|e| {
                QueueError::Config(format!("redis.ca_file {}: {e}", ca_file.display()))
            })?;
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            });
        }
        let client = builder
            .build()
            .map_err(|e| QueueError::Config(format!("redis.cluster: {e}")))?;
        Ok(RedisPool::Cluster(ClusterPool {
            client: std::sync::Arc::new(client),
            connection: Default::default(),
        }))
    }

    /// A connection, waiting at most a few seconds for one.
    pub async fn get(&self) -> Result<RedisConn, QueueError> {
        match self {
            RedisPool::Single(pool) => Ok(RedisConn::Single(pool.get().await?)),
            RedisPool::Cluster(cluster) => {
                let connection = cluster
                    .connection
                    .get_or_try_init(|| async {
                        tokio::time::timeout(
                            CONNECT_TIMEOUT * 2,
                            cluster.client.get_async_connection(),
                        )
                        .await
                        .map_err(|_| {
                            redis::RedisError::from((
                                redis::ErrorKind::Io,
                                "timed out connecting to the redis cluster",
                            ))
                        })?
                    })
                    .await?;
                Ok(RedisConn::Cluster(connection.clone()))
            }
        }
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisPool::Cluster(_))
    }

    /// The pool's gauges; the cluster's one shared connection counts as a pool
    /// of one that is always available once made.
    pub fn status(&self) -> Status {
        match self {
            RedisPool::Single(pool) => pool.status(),
            RedisPool::Cluster(cluster) => {
                let made = usize::from(cluster.connection.initialized());
                Status {
                    max_size: 1,
                    size: made,
                    available: made,
                    waiting: 0,
                }
            }
        }
    }
}

fn single(config: &RedisConfig) -> Result<Pool, QueueError> {
    let connection = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let info = connection_info(config)?;
    let manager = Manager::new_with_config(info, connection)
        .map_err(|e| QueueError::Config(format!("redis.url: {e}")))?;
    Pool::builder(manager)
        .max_size(config.pool_size)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| QueueError::Config(format!("redis pool: {e}")))
}

/// Where and how to connect: the URL, with the CA file's certificates as the
/// only roots when one is given.
fn connection_info(config: &RedisConfig) -> Result<redis::ConnectionInfo, QueueError> {
    let Some(ca_file) = &config.ca_file else {
        return redis::IntoConnectionInfo::into_connection_info(config.url.as_str())
            .map_err(|e| QueueError::Config(format!("redis.url: {e}")));
    };
    let pem = std::fs::read(ca_file)
        .map_err(|e| QueueError::Config(format!("redis.ca_file {}: {e}", ca_file.display())))?;
    let client = redis::Client::build_with_tls(
        config.url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
    .map_err(|e| QueueError::Config(format!("redis.ca_file {}: {e}", ca_file.display())))?;
    Ok(client.get_connection_info().clone())
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_command(cmd),
            RedisConn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(conn) => conn.get_db(),
            RedisConn::Cluster(conn) => conn.get_db(),
        }
    }
}
