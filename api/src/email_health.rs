//! The periodic SMTP check behind `GET /health/email`. One background task per
//! node ([`EmailHealth::start`], called by whoever builds the
//! [`crate::AppState`]: `penguin::node::Node`, the tests' API) asks every
//! `[[delivery.routes]]` host for its greeting (connect, read the `220` line,
//! `QUIT`) at start and then every `api.email_health_interval_ms`, and keeps the
//! last result with the time it finished. The route only reads that result:
//! no request, however many, opens an SMTP connection.
//!
//! The task stops when its [`EmailChecker`] is dropped.

use std::sync::Arc;
use std::time::Duration;

use penguin_config::Route;
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// How long one route may take to greet.
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(3);

/// One round of checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailCheck {
    /// When the round finished.
    pub checked_at: OffsetDateTime,
    /// One entry per route, in configuration order.
    pub routes: Vec<RouteCheck>,
}

/// One route's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCheck {
    /// The route's domain (`*` for every domain).
    pub domain: String,
    /// `host:port` asked.
    pub address: String,
    /// The `220` line, or why there was none.
    pub greeting: Result<String, String>,
}

/// The last result; cheap to clone, read by the route.
#[derive(Debug, Clone)]
pub struct EmailHealth {
    last: watch::Receiver<Option<Arc<EmailCheck>>>,
}

/// Owns the checking task; dropping it stops the task.
#[derive(Debug)]
pub struct EmailChecker {
    task: JoinHandle<()>,
}

impl Drop for EmailChecker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EmailHealth {
    /// Starts the task checking `routes` now and every `interval`.
    pub fn start(routes: Vec<Route>, interval: Duration) -> (EmailHealth, EmailChecker) {
        let (publish, last) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let check = check_routes(&routes).await;
                for route in &check.routes {
                    if let Err(error) = &route.greeting {
                        tracing::warn!(address = %route.address, %error, "SMTP route does not greet");
                    }
                }
                publish.send_replace(Some(Arc::new(check)));
            }
        });
        (EmailHealth { last }, EmailChecker { task })
    }

    /// The last finished round; `None` until the first one finishes.
    pub fn last(&self) -> Option<Arc<EmailCheck>> {
        self.last.borrow().clone()
    }
}

/// Asks every route at once; the round ends when each has answered or timed out.
pub async fn check_routes(routes: &[Route]) -> EmailCheck {
    let greetings = futures::future::join_all(
        routes
            .iter()
            .map(|route| greeting(route.host.as_str(), route.port)),
    )
    .await;
    let routes = routes
        .iter()
        .zip(greetings)
        .map(|(route, greeting)| RouteCheck {
            domain: route.domain.clone(),
            address: format!("{}:{}", route.host, route.port),
            greeting,
        })
        .collect();
    EmailCheck {
        checked_at: OffsetDateTime::now_utc(),
        routes,
    }
}

/// The first line an SMTP server sends, if it is a `220` greeting.
async fn greeting(host: &str, port: u16) -> Result<String, String> {
    let check = async {
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading the greeting: {e}"))?;
        let line = line.trim_end().to_string();
        if !line.starts_with("220") {
            return Err(format!("no 220 greeting: {line:?}"));
        }
        let _ = reader.get_mut().write_all(b"QUIT\r\n").await;
        Ok(line)
    };
    tokio::time::timeout(GREETING_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err("no greeting in time".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_route_is_a_result_not_an_error() {
        // Nothing listens on port 1 of loopback.
        let route = Route {
            domain: "*".into(),
            host: "127.0.0.1".into(),
            port: 1,
        };
        let check = check_routes(&[route]).await;
        assert_eq!(check.routes.len(), 1);
        assert_eq!(check.routes[0].address, "127.0.0.1:1");
        assert!(check.routes[0].greeting.is_err());
    }

    #[tokio::test]
    async fn the_first_round_is_published_at_start() {
        let (health, _checker) = EmailHealth::start(Vec::new(), Duration::from_secs(3600));
        let mut last = health.last.clone();
        let check = last
            .wait_for(Option::is_some)
            .await
            .expect("the task runs")
            .clone()
            .expect("a round");
        assert!(check.routes.is_empty());
    }
}
