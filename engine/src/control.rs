//! Control notifications between nodes: "campaign X changed state", "tenant Y's IPs
//! changed". Published by the API on a Redis pub/sub channel and consumed by every
//! engine node's actors, so a pause or a new campaign is seen within milliseconds
//! instead of the next poll.
//!
//! Notifications are hints, never the source of truth: Postgres holds the state and
//! every claim re-checks it, so a lost notification only costs latency.

use deadpool_redis::redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::CampaignStatus;

/// The one channel all nodes subscribe to.
pub const CHANNEL: &str = "penguin:control";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlEvent {
    /// A campaign was started, paused, resumed, cancelled or got new leads.
    CampaignChanged {
        tenant_id: Uuid,
        campaign_id: Uuid,
        status: CampaignStatus,
    },
    /// A tenant was created or its IPs were added, paused or resumed.
    TenantChanged { tenant_id: Uuid },
    /// A complaint (feedback loop) arrived for a message this IP sent; the node
    /// owning the IP counts it in the IP's and the pair's rolling health.
    Complaint {
        tenant_id: Uuid,
        ip_id: Uuid,
        provider: Option<String>,
    },
    /// A bounce reported after delivery (a DSN, `POST /v1/bounces`) for a
    /// message this IP sent; the node owning the IP counts it in the IP's and
    /// the pair's rolling health.
    Bounce {
        tenant_id: Uuid,
        ip_id: Uuid,
        provider: Option<String>,
    },
}

impl ControlEvent {
    pub fn tenant_id(&self) -> Uuid {
        match self {
            ControlEvent::CampaignChanged { tenant_id, .. }
            | ControlEvent::TenantChanged { tenant_id }
            | ControlEvent::Complaint { tenant_id, .. }
            | ControlEvent::Bounce { tenant_id, .. } => *tenant_id,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("control events always serialise")
    }

    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// Publishes an event to every node. Errors are returned, but callers usually only
/// log them: the state change already happened in Postgres.
pub async fn publish(
    redis: &crate::queue::RedisPool,
    event: &ControlEvent,
) -> Result<(), crate::queue::QueueError> {
    let mut conn = redis.get().await?;
    let _: i64 = conn.publish(CHANNEL, event.to_json()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_json() {
        let event = ControlEvent::CampaignChanged {
            tenant_id: Uuid::from_u128(1),
            campaign_id: Uuid::from_u128(2),
            status: CampaignStatus::Paused,
        };
        assert_eq!(ControlEvent::from_json(&event.to_json()), Some(event));
        assert_eq!(ControlEvent::from_json("{\"kind\":\"nope\"}"), None);
    }
}
