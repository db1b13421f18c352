//! A whole sending scenario driven through the control API: tenants with IPs, one
//! campaign per tenant with generated leads over many recipient domains, started
//! together and watched until every job is terminal. `penguin demo` and
//! `penguin bench` run one; the sink tells what actually arrived.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::client::ApiClient;

/// What to set up.
#[derive(Debug, Clone)]
pub struct ScenarioSpec {
    /// Tenant names start with this; earlier runs' tenants with it are deleted.
    pub prefix: String,
    /// Per tenant, the source addresses of its IPs.
    pub tenants: Vec<Vec<String>>,
    pub leads_per_tenant: usize,
    pub recipient_domains: usize,
    /// Approximate size of each text body, in bytes.
    pub body_bytes: usize,
}

/// Which node each tenant of a scenario is to be worked by, once `nodes` share
/// the `partitions` (`engine::assignment`).
#[derive(Debug, Clone)]
pub struct Placement {
    pub partitions: u32,
    pub nodes: Vec<String>,
    /// The node of each tenant, in the order of `ScenarioSpec::tenants`.
    pub owners: Vec<String>,
}

impl Placement {
    fn fits(&self, tenant: Uuid, index: usize) -> bool {
        let partition = penguin_engine::partition::of(tenant, self.partitions);
        let owners = penguin_engine::assignment::assign(self.partitions, &self.nodes);
        owners.get(&partition) == self.owners.get(index)
    }
}

pub struct TenantRun {
    pub id: Uuid,
    pub token: String,
    pub campaign: Uuid,
    pub ips: Vec<(Uuid, String)>,
}

pub struct Scenario {
    pub client: ApiClient,
    pub tenants: Vec<TenantRun>,
    pub total: u64,
}

/// Job counts over all campaigns of a scenario.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub counts: std::collections::BTreeMap<String, u64>,
    pub terminal: u64,
    pub total: u64,
}

const TERMINAL: [&str; 5] = ["sent", "bounced", "failed", "suppressed", "cancelled"];

impl Scenario {
    /// Deletes earlier runs with the same prefix, then creates tenants, IPs,
    /// campaigns and leads. Nothing is started.
    pub async fn setup(
        api_url: &str,
        admin: &str,
        pg: &deadpool_postgres::Pool,
        spec: &ScenarioSpec,
    ) -> anyhow::Result<Scenario> {
        Scenario::setup_placed(api_url, admin, pg, spec, None).await
    }

    /// As [`Scenario::setup`], with each tenant on the node `placement` names
    /// for it: a tenant created in another node's partition is deleted and
    /// created again (tenant ids are random), so tests of several nodes know
    /// which node works which tenant.
    pub async fn setup_placed(
        api_url: &str,
        admin: &str,
        pg: &deadpool_postgres::Pool,
        spec: &ScenarioSpec,
        placement: Option<&Placement>,
    ) -> anyhow::Result<Scenario> {
        forget_earlier_runs(pg, spec).await?;
        let client = ApiClient::new(api_url);
        let mut tenants = Vec::with_capacity(spec.tenants.len());
        let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
            .repeat(spec.body_bytes / 57 + 1);
        for (index, addresses) in spec.tenants.iter().enumerate() {
            let name = format!("{}-{}", spec.prefix, index + 1);
            let mut tries = 0;
            let (id, token) = loop {
                let (id, token) = client.create_tenant(admin, &name).await?;
                match placement {
                    Some(placement) if !placement.fits(id, index) => {
                        tries += 1;
                        if tries > 1_000 {
                            bail!("no tenant id landed on {}", placement.owners[index]);
                        }
                        pg.get()
                            .await?
                            .execute("DELETE FROM tenants WHERE id = $1", &[&id])
                            .await
                            .context("deleting a misplaced tenant")?;
                    }
                    _ => break (id, token),
                }
            };
            let mut ips = Vec::new();
            for address in addresses {
                let ip = client
                    .add_ip(
                        admin,
                        id,
                        address,
                        &format!("mta{}.{}.test", ips.len() + 1, name),
                    )
                    .await?;
                ips.push((ip, address.clone()));
            }
            let campaign = client
                .create_campaign(
                    &token,
                    &json!({
                        "name": format!("{name} launch"),
                        "from": format!("hello@{name}.test"),
                        "subject": "Hi {{first_name}}, a quick question",
                        "text": format!("Hello {{{{first_name}}}},\n\n{}\n\nBest,\n{name}\n", &filler[..spec.body_bytes.min(filler.len())]),
                        "ip_ids": ips.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>(),
                    }),
                )
                .await?;
            let leads: Vec<Value> = (0..spec.leads_per_tenant)
                .map(|n| {
                    json!({
                        "email": format!("lead{n}@domain{}.test", n % spec.recipient_domains.max(1)),
                        "fields": { "first_name": format!("Lead{n}") },
                    })
                })
                .collect();
            let accepted = client.add_leads(&token, campaign, &leads, 5_000).await?;
            if accepted != spec.leads_per_tenant as u64 {
                bail!(
                    "tenant {name}: {accepted} of {} leads accepted",
                    spec.leads_per_tenant
                );
            }
            tenants.push(TenantRun {
                id,
                token,
                campaign,
                ips,
            });
        }
        let total = (spec.leads_per_tenant * spec.tenants.len()) as u64;
        Ok(Scenario {
            client,
            tenants,
            total,
        })
    }

    pub async fn start(&self) -> anyhow::Result<()> {
        for tenant in &self.tenants {
            self.client
                .campaign_action(&tenant.token, tenant.campaign, "start")
                .await?;
        }
        Ok(())
    }

    pub async fn progress(&self) -> anyhow::Result<Progress> {
        let mut progress = Progress {
            total: self.total,
            ..Progress::default()
        };
        for tenant in &self.tenants {
            let body = self.client.campaign(&tenant.token, tenant.campaign).await?;
            let counts = body["counts"]
                .as_object()
                .context("campaign without counts")?;
            for (state, n) in counts {
                let n = n.as_u64().unwrap_or(0);
                *progress.counts.entry(state.clone()).or_default() += n;
                if TERMINAL.contains(&state.as_str()) {
                    progress.terminal += n;
                }
            }
        }
        Ok(progress)
    }

    /// Polls until every job is terminal, calling `on_progress` after each poll.
    pub async fn wait(
        &self,
        timeout: Duration,
        mut on_progress: impl FnMut(&Progress),
    ) -> anyhow::Result<Progress> {
        let started = Instant::now();
        loop {
            let progress = self.progress().await?;
            on_progress(&progress);
            if progress.terminal >= self.total {
                return Ok(progress);
            }
            if started.elapsed() > timeout {
                bail!(
                    "scenario not finished after {timeout:?}: {:?}",
                    progress.counts
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every IP address of the scenario, with the tenant index it belongs to.
    pub fn addresses(&self) -> Vec<(usize, String)> {
        self.tenants
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.ips.iter().map(move |(_, a)| (i, a.clone())))
            .collect()
    }
}

/// Deletes the tenants (and, by cascade, everything they own) of earlier runs
/// with the same prefix, and frees the addresses the new run needs.
async fn forget_earlier_runs(
    pg: &deadpool_postgres::Pool,
    spec: &ScenarioSpec,
) -> anyhow::Result<()> {
    let client = pg.get().await?;
    let addresses: Vec<String> = spec.tenants.iter().flatten().cloned().collect();
    client
        .execute(
            "DELETE FROM tenants WHERE name LIKE $1 || '-%'
                OR id IN (SELECT tenant_id FROM smtp_ips WHERE host(address) = ANY($2))",
            &[&spec.prefix, &addresses],
        )
        .await
        .context("removing earlier runs")?;
    Ok(())
}
