//! The control channel (Redis pub/sub, `engine::control`): every notification
//! the API publishes reaches the Cluster actor of each node as
//! `ClusterMsg::Control`. Notifications are hints (Postgres holds the state),
//! so a lost one only costs latency; after each (re)connect a heartbeat
//! catches up on what was missed.
//!
//! On a Redis Cluster the subscription is classic pub/sub on one of the seeds:
//! the cluster forwards every `PUBLISH` to all of its nodes, so any one of
//! them hears every notification. When that node goes away the next seed is
//! tried.

use std::time::Duration;

use futures::StreamExt;
use penguin_config::RedisConfig;
use penguin_engine::control::{CHANNEL, ControlEvent};
use ractor::ActorRef;

use crate::cluster::ClusterMsg;

/// Forwards control notifications to the Cluster actor, reconnecting after Redis
/// errors (to the next seed of a cluster); after each (re)connect a heartbeat
/// catches up on missed changes.
pub(crate) async fn subscribe(config: RedisConfig, cluster: ActorRef<ClusterMsg>) {
    let urls = match config.cluster.is_empty() {
        true => vec![config.url.clone()],
        false => config.cluster.clone(),
    };
    let ca = config
        .ca_file
        .as_ref()
        .and_then(|file| std::fs::read(file).ok());
    for url in urls.iter().cycle() {
        let connected = async {
            let client = match &ca {
                Some(pem) => redis::Client::build_with_tls(
                    url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.clone()),
                    },
                )?,
                None => redis::Client::open(url.as_str())?,
            };
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
            Err(err) => tracing::debug!(%url, error = %err, "control channel unavailable"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
