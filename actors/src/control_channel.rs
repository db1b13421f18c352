//! The control channel (Redis pub/sub, `engine::control`): every notification
//! the API publishes reaches the Cluster actor of each node as
//! `ClusterMsg::Control`. Notifications are hints (Postgres holds the state),
//! so a lost one only costs latency; after each (re)connect a heartbeat
//! catches up on what was missed.

use std::time::Duration;

use futures::StreamExt;
use penguin_engine::control::{CHANNEL, ControlEvent};
use ractor::ActorRef;

use crate::cluster::ClusterMsg;

/// Forwards control notifications to the Cluster actor, reconnecting after Redis
/// errors; after each (re)connect a heartbeat catches up on missed changes.
pub(crate) async fn subscribe(url: String, cluster: ActorRef<ClusterMsg>) {
    loop {
        let connected = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        match connected {
            Ok(mut pubsub) => {
                let _ = cluster.cast(ClusterMsg::Heartbeat);
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Ok(text) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Some(event) = ControlEvent::from_json(&text)
                        && cluster.cast(ClusterMsg::Control(event)).is_err()
                    {
                        return;
                    }
                }
            }
            Err(err) => tracing::debug!(error = %err, "control channel unavailable"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
