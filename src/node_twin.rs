//! Two nodes must never run under one `node.id`: they would share a membership
//! record, each undoing the other's, and hand partitions back and forth. A
//! starting node therefore looks for a live record of its id. None (the id is
//! new, or its last holder stopped cleanly and left): it starts. One that is
//! fresh may be a live twin or a predecessor that was killed and whose record
//! has not expired yet; the node watches it for a heartbeat and a half: a live
//! twin writes it again, a dead one does not. A twin refuses the start with an
//! error that names the id; a dead predecessor costs that wait once. Two
//! nodes started within one heartbeat of each other, before either wrote a
//! record, are not told apart.

use std::time::Duration;

use anyhow::bail;
use penguin_config::NodeConfig;
use penguin_engine::clock::unix_ms;
use penguin_engine::membership::Membership;

/// Fails when another live node holds `node.id` (see the module doc).
pub async fn refuse_a_live_twin(
    redis: &penguin_engine::queue::RedisPool,
    node: &NodeConfig,
) -> anyhow::Result<()> {
    let membership = Membership::new(redis.clone());
    let Some(seen) = membership.record(&node.id).await? else {
        return Ok(());
    };
    let heartbeat = node.heartbeat_ms as i64;
    // Its next record is due one heartbeat after the last; allow half a beat more.
    let next_due = seen.heartbeat_at_ms + heartbeat + heartbeat / 2;
    let wait = (next_due - unix_ms()).clamp(0, heartbeat * 3 / 2);
    tracing::info!(
        node = %node.id,
        wait_ms = wait,
        "a record of this node id is live; waiting to see whether its holder still beats"
    );
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    match membership.record(&node.id).await? {
        Some(now) if now.heartbeat_at_ms != seen.heartbeat_at_ms => bail!(
            "node.id {:?} is held by another live node (started at {} ms, heartbeat at {} ms); \
             give every node its own node.id",
            node.id,
            now.started_at_ms,
            now.heartbeat_at_ms
        ),
        _ => Ok(()),
    }
}
