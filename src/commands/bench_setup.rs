//! What every `penguin bench` mode sets up the same way: the source addresses
//! (127.0.x.y), which tenant owns which IP, the bench's own configuration
//! (the API's per-token rate limit off, so that creating 10,000 tenants is not
//! throttled — printed, so a reader knows), and a fleet of bare tenants and IPs
//! created through the control API with bounded concurrency.

use std::time::Instant;

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use penguin_config::Config;
use uuid::Uuid;

use crate::client::ApiClient;

/// The most tenants (and IPs) a bench run creates.
pub const MAX_TENANTS: usize = 10_000;

/// The `index`-th source address: 127.0.0.2 … 127.0.0.251, 127.0.1.2 …; the
/// last octet stays within 2..=251, so no address ends in .0, .1 or .255.
pub fn address(index: usize) -> String {
    format!("127.0.{}.{}", index / 250, index % 250 + 2)
}

/// The owner of IP `ip` when `ips` are dealt round-robin over `tenants`.
pub fn owner_of(ip: usize, tenants: usize) -> usize {
    ip % tenants.max(1)
}

/// Per tenant, the addresses of its IPs, dealt round-robin: with fewer IPs
/// than tenants some tenants have none, with more some have several.
pub fn addresses_per_tenant(tenants: usize, ips: usize) -> Vec<Vec<String>> {
    let mut per_tenant = vec![Vec::new(); tenants];
    for ip in 0..ips {
        per_tenant[owner_of(ip, tenants)].push(address(ip));
    }
    per_tenant
}

/// Loosens what would throttle the bench's own setup and prints what changed:
/// the per-token API rate limit (the admin token creates every tenant and IP).
pub fn tune_config(config: &mut Config) {
    let api = &mut config.api;
    if api.rate_limit_per_minute != 0 {
        println!(
            "bench config: api.rate_limit_per_minute {} → 0 (off), so the setup's \
             thousands of admin requests are not throttled",
            api.rate_limit_per_minute
        );
        api.rate_limit_per_minute = 0;
    }
}

/// A tenant created by [`create_fleet`].
pub struct FleetTenant {
    pub id: Uuid,
    pub token: String,
}

/// Creates `tenants` bare tenants (`{prefix}-1` …), then `ips` IPs dealt
/// round-robin over them, `concurrency` requests at a time. Prints how long it
/// took.
pub async fn create_fleet(
    client: &ApiClient,
    admin: &str,
    prefix: &str,
    tenants: usize,
    ips: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<FleetTenant>> {
    let started = Instant::now();
    let created: Vec<FleetTenant> = futures::stream::iter(0..tenants)
        .map(|n| async move {
            let (id, token) = client
                .create_tenant(admin, &format!("{prefix}-{}", n + 1))
                .await
                .with_context(|| format!("creating tenant {}", n + 1))?;
            Ok::<_, anyhow::Error>(FleetTenant { id, token })
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    let tenant_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let fleet = &created;
    futures::stream::iter(0..ips)
        .map(|ip| async move {
            let owner = &fleet[owner_of(ip, tenants)];
            client
                .add_ip(
                    admin,
                    owner.id,
                    &address(ip),
                    &format!("mta{}.{prefix}.test", ip + 1),
                )
                .await
                .with_context(|| format!("adding IP {}", address(ip)))
        })
        .buffer_unordered(concurrency.max(1))
        .try_for_each(|_| async { Ok(()) })
        .await?;
    println!(
        "setup: {tenants} tenants in {tenant_secs:.1} s, {ips} IPs in {:.1} s \
         (through the API, {concurrency} requests at a time)",
        started.elapsed().as_secs_f64()
    );
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_loopback_hosts() {
        assert_eq!(address(0), "127.0.0.2");
        assert_eq!(address(249), "127.0.0.251");
        assert_eq!(address(250), "127.0.1.2");
        assert_eq!(address(MAX_TENANTS - 1), "127.0.39.251");
        let all: std::collections::HashSet<String> = (0..MAX_TENANTS).map(address).collect();
        assert_eq!(all.len(), MAX_TENANTS);
        assert!(all.iter().all(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
        }));
    }

    #[test]
    fn ips_are_dealt_round_robin() {
        let per = addresses_per_tenant(3, 7);
        assert_eq!(per[0], vec![address(0), address(3), address(6)]);
        assert_eq!(per[1], vec![address(1), address(4)]);
        assert_eq!(per[2], vec![address(2), address(5)]);
        let sparse = addresses_per_tenant(10, 2);
        assert_eq!(sparse.iter().filter(|a| a.is_empty()).count(), 8);
        assert_eq!(owner_of(999, 10_000), 999);
        assert_eq!(owner_of(10_001, 10_000), 1);
    }
}
