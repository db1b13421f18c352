//! The per-step counts of a sequence campaign (`GET /v1/campaigns/{id}`'s
//! `steps`): the rollup `campaign_step_stats` (sent and bounced from the
//! Analytics batches, opened and clicked from the tracking routes, replied from
//! `POST /v1/replies`) and, live, how many of each step's jobs still wait
//! (`pending`, `deferred`, `queued` or `sending`). Two queries, both bounded by
//! the campaign's steps; steps without a row read as zeros.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::db::StoreError;

/// The counts of one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepCounts {
    pub sent: i64,
    pub bounced: i64,
    pub opened: i64,
    pub clicked: i64,
    pub replied: i64,
    /// Jobs of the step in `pending`, `deferred`, `queued` or `sending` now.
    pub waiting: i64,
}

/// The counts of `campaign`'s steps that have any, by step number.
pub async fn step_counts(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
) -> Result<BTreeMap<i32, StepCounts>, StoreError> {
    let rollup = client
        .prepare_cached(
            "SELECT step, sent, bounced, opened, clicked, replied FROM campaign_step_stats
             WHERE tenant_id = $1 AND campaign_id = $2",
        )
        .await?;
    let mut steps = BTreeMap::new();
    for row in client.query(&rollup, &[&tenant, &campaign]).await? {
        steps.insert(
            row.get::<_, i32>(0),
            StepCounts {
                sent: row.get(1),
                bounced: row.get(2),
                opened: row.get(3),
                clicked: row.get(4),
                replied: row.get(5),
                waiting: 0,
            },
        );
    }
    let waiting = client
        .prepare_cached(
            "SELECT step, count(*) FROM send_jobs
             WHERE tenant_id = $1 AND campaign_id = $2
               AND status IN ('pending', 'deferred', 'queued', 'sending')
             GROUP BY step",
        )
        .await?;
    for row in client.query(&waiting, &[&tenant, &campaign]).await? {
        steps
            .entry(row.get::<_, i32>(0))
            .or_insert_with(StepCounts::default)
            .waiting = row.get(1);
    }
    Ok(steps)
}
