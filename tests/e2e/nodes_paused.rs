//! A node paused by the OS (SIGSTOP) for 1.5 × the lease TTL, then resumed
//! (SIGCONT). Meanwhile the other node takes its tenants over. Once resumed,
//! the paused node knows its leases may be gone (their deadline passed on the
//! monotonic clock) and sends nothing it had claimed; it pops and claims nothing
//! until it holds a lease again. The only copies the sink may see are of the
//! transactions under way at the pause: jobs the paused node had claimed (still
//! `sending`, no outcome written) whose message came over a connection it had
//! open when it was stopped (one it was in the middle of finishes on resume).
//! No lead is lost.
//!
//! Fencing: the other node's takeover raised the tenants' epochs, so every
//! outcome the paused node writes for a transaction it finishes after the
//! resume is refused (counted by its `penguin_fenced_writes_total`): 0 stale
//! writes accepted. The stop is made to catch at least one such transaction
//! (the sink accepts a message of the paused node while it is stopped), and
//! Postgres is checked for each: the job is `sent` with the outcome of its
//! other copy (the sink's `queued as <seq>` of that copy) under a fence the
//! takeover raised, never the paused node's stale one.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::support::api::ApiClient;
use crate::support::cluster::{
    counter, job_of, jobs_received, node_config, nodes, sending_jobs, shares, shares_of, slow_smtp,
    tenant_per_ip, works,
};
use crate::support::node_process::NodeProcess;
use crate::support::rig::Rig;
use crate::support::{poll_until, wait_for};

const TTL_MS: u64 = 2_000;
/// Every SMTP transaction waits this long at the end of DATA.
const SMTP_DELAY_MS: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_paused_past_its_lease_sends_nothing_it_claimed() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = TTL_MS;
        config.limits.ip_messages_per_second = 10;
        config.delivery.connections_per_ip = 2;
    })
    .await;
    // 100 ms per SMTP transaction: the paused node has some under way.
    slow_smtp(&rig, SMTP_DELAY_MS);
    let api = ApiClient::new(&rig.node().api_url());
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let scenario = rig
        .scenario_on(
            tenant_per_ip(&ips),
            100,
            &["node-a", "node-b"],
            &["node-a", "node-a", "node-b", "node-b"],
        )
        .await;
    let node_b = NodeProcess::start(&node_config(&rig, "node-b")).await;
    wait_for(
        "2 tenants on each node",
        Duration::from_secs(30),
        || async {
            (shares(&api).await == shares_of(&[("node-a", 2), ("node-b", 2)])).then_some(())
        },
    )
    .await;

    scenario.start().await.expect("campaigns start");
    wait_for("node-b sending", Duration::from_secs(30), || async {
        nodes(&api)
            .await
            .iter()
            .any(|n| n["id"] == "node-b" && n["sent_total"].as_u64().unwrap_or(0) >= 10)
            .then_some(())
    })
    .await;

    let tenants_b = works(&api, "node-b").await;
    let ips_b: HashSet<std::net::IpAddr> = scenario
        .tenants
        .iter()
        .filter(|t| tenants_b.contains(&t.id.to_string()))
        .flat_map(|t| t.ips.iter().map(|(_, address)| address.parse().unwrap()))
        .collect();
    let at_stop = stop_mid_transaction(&rig, &node_b, &ips_b).await;
    let stopped = at_stop.at;
    let claimed = sending_jobs(&rig.env, &tenants_b).await;
    // node-b's fencing tokens, which the takeover must make stale.
    let stale_epochs = epochs(&rig, &tenants_b, "node-b").await;
    assert_eq!(
        stale_epochs.len(),
        tenants_b.len(),
        "node-b holds the fences of its tenants"
    );
    wait_for(
        "node-a owning every tenant",
        Duration::from_secs(30),
        || async { (shares(&api).await == shares_of(&[("node-a", 4)])).then_some(()) },
    )
    .await;
    // The fault lasts 1.5 × the lease TTL, and until node-a's takeover of
    // node-b's tenants has raised their epochs in Postgres.
    let takeover_epochs = wait_for(
        "node-b's tenants taken over, 1.5 × TTL into the pause",
        Duration::from_secs(30),
        || async {
            let taken = epochs(&rig, &tenants_b, "node-a").await;
            (taken.len() == tenants_b.len()
                && stopped.elapsed() >= Duration::from_millis(TTL_MS * 3 / 2))
            .then_some(taken)
        },
    )
    .await;
    node_b.signal("CONT");

    rig.wait_until_done(&scenario, Duration::from_secs(120))
        .await;
    rig.wait_until_quiet().await;
    let duplicates = rig.check_delivered(&scenario).await;
    // Transactions node-b had begun at the stop and that finished after it:
    // their outcomes it wrote on resume, under its old epoch. (Once it holds
    // tenants again it sends new transactions; those are not stale.)
    let messages = rig.sink.messages();
    let stale: Vec<(String, u64)> = messages
        .iter()
        .filter(|m| {
            m.transaction <= at_stop.begun
                && m.seq > at_stop.accepted
                && ips_b.contains(&m.source_ip)
        })
        .filter_map(|m| Some((m.message_id.clone()?, m.seq)))
        .collect();
    // node-b writes those outcomes when its StatusWriter flushes, which may be
    // after the jobs went quiet (a refused write changes no job): wait for them.
    let b_api = ApiClient::new(node_b.api_url());
    let refused_writes = || async {
        let refused = counter(&b_api, "penguin_fenced_writes_total{write=\"status\"}").await;
        if refused as usize >= stale.len() {
            Ok(refused)
        } else {
            Err(refused)
        }
    };
    let refused = match poll_until(Duration::from_secs(30), refused_writes).await {
        Ok(refused) | Err(Some(refused)) => refused,
        Err(None) => panic!("node-b's metrics did not answer"),
    };
    eprintln!(
        "stale sends of node-b: {} (stop tried {} times), its outcome writes refused: {refused}",
        stale.len(),
        at_stop.attempts
    );
    assert!(
        !stale.is_empty(),
        "the stop caught no transaction of node-b under way: nothing stale to fence"
    );
    assert!(
        refused as usize >= stale.len(),
        "{} stale sends ({stale:?}) but only {refused} of their outcome writes refused; node-b:\n{}",
        stale.len(),
        node_b.log_tail()
    );
    // In Postgres, each stale job carries the outcome of its other copy (the
    // one sent under the new owner's claim) and a fence from the takeover on,
    // never node-b's stale one.
    for (message_id, stale_seq) in &stale {
        let job = job_of(message_id);
        let others: Vec<u64> = messages
            .iter()
            .filter(|m| m.message_id.as_deref() == Some(message_id.as_str()))
            .map(|m| m.seq)
            .filter(|seq| seq != stale_seq)
            .collect();
        let [winner] = others[..] else {
            panic!(
                "{message_id}: copies {others:?} besides the stale one ({stale_seq}); \
                 exactly one expected, the copy sent under the takeover's fence"
            )
        };
        let row = &rig
            .env
            .psql(&format!(
                "SELECT tenant_id::text, status, fence, coalesce(last_reply, '')
                 FROM send_jobs WHERE id = '{job}'"
            ))
            .await[0];
        let (tenant, status, fence, reply): (String, String, i64, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(status, "sent", "{job}");
        assert!(
            fence >= takeover_epochs[&tenant] && fence > stale_epochs[&tenant],
            "{job} carries fence {fence}: node-b's stale one is {}, node-a's takeover raised {}",
            stale_epochs[&tenant],
            takeover_epochs[&tenant]
        );
        assert!(
            reply.ends_with(&format!(" queued as {winner}")),
            "{job} records {reply:?}: not the outcome of its winning copy ({winner}); \
             the stale one was {stale_seq}"
        );
    }
    // Claimed at the pause, and sent over a connection open then: what the
    // pause can cost.
    let under_way: HashSet<String> = jobs_received(rig.sink.messages(), |m| {
        m.connection_id <= at_stop.connections
    })
    .intersection(&claimed)
    .cloned()
    .collect();
    eprintln!(
        "copies after the pause: {duplicates} ({} under way)",
        under_way.len()
    );
    assert!(
        duplicates as usize <= under_way.len(),
        "{duplicates} copies, {} under way; node-b:\n{}",
        under_way.len(),
        node_b.log_tail()
    );
    for id in rig.sink.message_ids_seen_more_than_once() {
        assert!(
            under_way.contains(job_of(&id)),
            "{id} repeated, not under way at the pause"
        );
    }
    // node-b is back and gets its share again, by hand-off.
    wait_for(
        "2 tenants on each node again",
        Duration::from_secs(30),
        || async {
            (shares(&api).await == shares_of(&[("node-a", 2), ("node-b", 2)])).then_some(())
        },
    )
    .await;
    drop(node_b);
    rig.shutdown().await;
}

/// What the sink had seen when node-b was stopped.
struct AtStop {
    at: Instant,
    connections: u64,
    begun: u64,
    accepted: u64,
    /// Stops it took to catch a transaction under way.
    attempts: u32,
}

/// Stops `node` (SIGSTOP) while one of its SMTP transactions is at the end of
/// DATA: the sink then accepts a message from one of its `ips` while it is
/// stopped, which only a transaction under way can do. When none ends within a
/// few SMTP delays, the node goes on (well within its lease) until the sink
/// hears from it again, and the stop is tried again.
async fn stop_mid_transaction(
    rig: &Rig,
    node: &NodeProcess,
    ips: &HashSet<std::net::IpAddr>,
) -> AtStop {
    // A message of the node accepted after `after`, in a transaction begun by
    // `begun` at the latest (the test's own test for a stale send).
    let from_node = |after: u64, begun: u64| {
        rig.sink
            .messages_after(after, usize::MAX)
            .iter()
            .any(|m| ips.contains(&m.source_ip) && m.transaction <= begun)
    };
    for attempts in 1..=10 {
        node.signal("STOP");
        let at = Instant::now();
        let stats = rig.sink.stats();
        let at_stop = AtStop {
            at,
            connections: stats.connections,
            begun: stats.transactions_begun,
            accepted: stats.messages_accepted,
            attempts,
        };
        let window = Duration::from_millis(SMTP_DELAY_MS * 3);
        let caught = poll_until(window, || {
            std::future::ready(if from_node(at_stop.accepted, at_stop.begun) {
                Ok(())
            } else {
                Err(())
            })
        });
        if caught.await.is_ok() {
            return at_stop;
        }
        node.signal("CONT");
        let resumed = rig.sink.stats().messages_accepted;
        wait_for("node-b sending again", Duration::from_secs(10), || async {
            from_node(resumed, u64::MAX).then_some(())
        })
        .await;
    }
    panic!("ten stops of node-b caught none of its transactions under way");
}

/// The epochs in `partition_fences` that `node` raised for the partitions of
/// `tenants`, by tenant.
async fn epochs(rig: &Rig, tenants: &[String], node: &str) -> HashMap<String, i64> {
    let sql = format!(
        "SELECT t.id::text, f.epoch FROM tenants t
         JOIN partition_fences f ON f.partition = penguin_partition(t.id, {})
         WHERE f.node_id = '{node}' AND t.id::text IN ('{}')",
        rig.config().node.partitions,
        tenants.join("', '")
    );
    rig.env
        .psql(&sql)
        .await
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}
