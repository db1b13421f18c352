//! The ceiling of `penguin bench`: a raw SMTP blast from this process to the
//! same sink — same source IPs, same reuse per connection, prebuilt messages,
//! no Postgres or Redis — so that engine ÷ ceiling says what the engine costs.
//!
//! It never holds more than `--ceiling-connections` connections at once:
//! 8 per IP over 100 IPs was 800 simultaneous connects, and the sink's
//! greetings then timed out. Workers (one connection each) are dealt over the
//! source addresses round-robin; with more addresses than workers, the first
//! ones are used.

use std::net::IpAddr;
use std::time::Instant;

use penguin_config::Config;
use penguin_engine::route::Destination;
use penguin_engine::sink::SinkHandle;
use penguin_engine::smtp::SmtpConnection;

/// Connections the blast opens at once: `connections_per_ip` on each address,
/// at most `cap` in all, at least 1.
pub fn workers(addresses: usize, connections_per_ip: usize, cap: usize) -> usize {
    (addresses * connections_per_ip).min(cap).max(1)
}

/// Messages worker `worker` of `workers` sends so that they sum to `total`.
pub fn share(total: usize, workers: usize, worker: usize) -> usize {
    total / workers + usize::from(worker < total % workers)
}

/// Sends `total` prebuilt messages of about `size` bytes over at most `cap`
/// connections; returns `(seconds, connections used)`.
pub async fn blast(
    sink: &SinkHandle,
    addresses: &[String],
    cap: usize,
    config: &Config,
    total: usize,
    size: usize,
) -> anyhow::Result<(f64, usize)> {
    anyhow::ensure!(!addresses.is_empty(), "the ceiling blast needs an address");
    let dest = Destination {
        host: "127.0.0.1".into(),
        port: sink.smtp_addr().port(),
    };
    let body_text = "x".repeat(size.saturating_sub(300));
    let workers = workers(addresses.len(), config.delivery.connections_per_ip, cap);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let source: IpAddr = addresses[worker % addresses.len()].parse()?;
        let dest = dest.clone();
        let timeouts = config.delivery.timeouts.clone();
        let per_connection = config.delivery.messages_per_connection;
        let body_text = body_text.clone();
        let share = share(total, workers, worker);
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<SmtpConnection> = None;
            for n in 0..share {
                if conn
                    .as_ref()
                    .is_none_or(|c| !c.is_usable() || c.messages_sent() >= per_connection)
                {
                    if let Some(old) = conn.take() {
                        old.quit().await;
                    }
                    conn = Some(
                        SmtpConnection::connect(source, &dest, "blast.test", &timeouts)
                            .await
                            .map_err(|o| anyhow::anyhow!("connect: {o:?}"))?,
                    );
                }
                let body = format!(
                    "From: <blast@bench.test>\r\nTo: <r{n}@domain.test>\r\nSubject: ceiling\r\nMessage-ID: <blast-{worker}-{n}@bench.test>\r\n\r\n{body_text}\r\n"
                );
                let c = conn.as_mut().expect("connected");
                let outcome = c
                    .send("blast@bench.test", &format!("r{n}@domain.test"), body.as_bytes())
                    .await;
                anyhow::ensure!(outcome.is_sent(), "blast message refused: {outcome:?}");
            }
            if let Some(c) = conn {
                c.quit().await;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((started.elapsed().as_secs_f64(), workers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_bounds_the_connections() {
        assert_eq!(workers(10, 8, 64), 64);
        assert_eq!(workers(100, 8, 64), 64, "800 was what failed");
        assert_eq!(workers(1, 8, 64), 8);
        assert_eq!(workers(10_000, 8, 64), 64);
        assert_eq!(workers(3, 8, 0), 1, "never zero workers");
    }

    #[test]
    fn shares_sum_to_the_total() {
        for (total, workers) in [(40_000, 64), (7, 3), (3, 8), (100_000, 1)] {
            let sum: usize = (0..workers).map(|w| share(total, workers, w)).sum();
            assert_eq!(sum, total);
        }
    }
}
