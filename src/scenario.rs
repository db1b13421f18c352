//! A whole sending scenario driven through the control API: tenants with IPs, one
//! campaign per tenant with generated leads over many recipient domains, started
//! together and watched until every job is terminal. `penguin demo` and
//! `penguin bench` run one; the sink tells what actually arrived.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
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
    /// campaigns and leads, one tenant after another. Nothing is started.
    pub async fn setup(
        api_url: &str,
        admin: &str,
        pg: &deadpool_postgres::Pool,
        spec: &ScenarioSpec,
    ) -> anyhow::Result<Scenario> {
        Self::setup_with(api_url, admin, pg, spec, &SetupOptions::default()).await
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
        let options = SetupOptions {
            placement: placement.cloned(),
            ..SetupOptions::default()
        };
        Self::setup_with(api_url, admin, pg, spec, &options).await
    }

    /// [`Self::setup`] with options: up to `options.concurrency` tenants are
    /// set up at once (`penguin bench` creates up to 10,000), and every
    /// campaign gets `options.priority` when given. Tenants keep the order of
    /// `spec.tenants`.
    pub async fn setup_with(
        api_url: &str,
        admin: &str,
        pg: &deadpool_postgres::Pool,
        spec: &ScenarioSpec,
        options: &SetupOptions,
    ) -> anyhow::Result<Scenario> {
        forget_earlier_runs(pg, spec).await?;
        let client = ApiClient::new(api_url);
        let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
            .repeat(spec.body_bytes / 57 + 1);
        let tenants: Vec<TenantRun> =
            futures::stream::iter(spec.tenants.iter().enumerate().map(|(index, addresses)| {
                setup_tenant(&client, pg, admin, spec, options, &filler, index, addresses)
            }))
            .buffered(options.concurrency.max(1))
            .try_collect()
            .await?;
        let total = (spec.leads_per_tenant * spec.tenants.len()) as u64;
        Ok(Scenario {
            client,
            tenants,
            total,
        })
    }

    /// Starts every campaign, one after another.
    pub async fn start(&self) -> anyhow::Result<()> {
        self.start_with(1).await
    }

    /// Starts every campaign, up to `concurrency` at once.
    pub async fn start_with(&self, concurrency: usize) -> anyhow::Result<()> {
        futures::stream::iter(self.tenants.iter().map(|tenant| {
            self.client
                .campaign_action(&tenant.token, tenant.campaign, "start")
        }))
        .buffer_unordered(concurrency.max(1))
        .try_for_each(|_| async { Ok(()) })
        .await
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

/// How [`Scenario::setup_with`] sets up.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// Tenants set up at once (at least 1).
    pub concurrency: usize,
    /// Every campaign's priority; `None` leaves the API's default.
    pub priority: Option<i32>,
    /// Which node each tenant is to be worked by (`None`: anywhere).
    pub placement: Option<Placement>,
}

impl Default for SetupOptions {
    fn default() -> Self {
        Self {
            concurrency: 1,
            priority: None,
            placement: None,
        }
    }
}

/// One tenant of the scenario: the tenant, its IPs, its campaign and its leads.
#[allow(clippy::too_many_arguments)]
async fn setup_tenant(
    client: &ApiClient,
    pg: &deadpool_postgres::Pool,
    admin: &str,
    spec: &ScenarioSpec,
    options: &SetupOptions,
    filler: &str,
    index: usize,
    addresses: &[String],
) -> anyhow::Result<TenantRun> {
    let name = format!("{}-{}", spec.prefix, index + 1);
    let mut tries = 0;
    let (id, token) = loop {
        let (id, token) = client.create_tenant(admin, &name).await?;
        match &options.placement {
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
    // Campaigns send only as verified domains: the run's has no DNS, so the
    // admin vouches for it; its mail is DKIM-signed all the same.
    client
        .trust_domain(admin, id, &format!("{name}.test"))
        .await
        .with_context(|| format!("tenant {name}: registering {name}.test"))?;
    let mut campaign = json!({
        "name": format!("{name} launch"),
        "from": format!("hello@{name}.test"),
        "subject": "Hi {{first_name}}, a quick question",
        "text": format!("Hello {{{{first_name}}}},\n\n{}\n\nBest,\n{name}\n", &filler[..spec.body_bytes.min(filler.len())]),
        "ip_ids": ips.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>(),
    });
    if let Some(priority) = options.priority {
        campaign["priority"] = json!(priority);
    }
    let campaign = client.create_campaign(&token, &campaign).await?;
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
    Ok(TenantRun {
        id,
        token,
        campaign,
        ips,
    })
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
