//! A campaign's follow-up steps (`campaign_steps`, V16): written once with the
//! campaign (`POST /v1/campaigns`), read by the node's campaign cache to render
//! them and by the API to show them. Step 1 is the campaign row itself.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::db::StoreError;

/// One follow-up step (2, 3, …) of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStep {
    pub step: i32,
    /// Sent this long after the lead's previous step was sent.
    pub delay_secs: i32,
    /// `None`: threaded, "Re: " and step 1's subject.
    pub subject: Option<String>,
    pub text_body: String,
    pub html_body: Option<String>,
}

/// Stores the follow-ups of `campaign` (numbered 2, 3, … in `steps`' order is
/// the caller's job: each carries its `step`) and sets the campaign's
/// `step_count` to `1 + steps.len()`, in the caller's transaction.
pub async fn insert_steps(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
    steps: &[NewStep],
) -> Result<(), StoreError> {
    if steps.is_empty() {
        return Ok(());
    }
    let numbers: Vec<i32> = steps.iter().map(|s| s.step).collect();
    let delays: Vec<i32> = steps.iter().map(|s| s.delay_secs).collect();
    let subjects: Vec<Option<&str>> = steps.iter().map(|s| s.subject.as_deref()).collect();
    let texts: Vec<&str> = steps.iter().map(|s| s.text_body.as_str()).collect();
    let htmls: Vec<Option<&str>> = steps.iter().map(|s| s.html_body.as_deref()).collect();
    let insert = client
        .prepare_cached(
            "INSERT INTO campaign_steps
                 (tenant_id, campaign_id, step, delay_secs, subject, text_body, html_body)
             SELECT $1, $2, * FROM unnest($3::int4[], $4::int4[], $5::text[], $6::text[],
                                          $7::text[])",
        )
        .await?;
    client
        .execute(
            &insert,
            &[
                &tenant, &campaign, &numbers, &delays, &subjects, &texts, &htmls,
            ],
        )
        .await?;
    let count = client
        .prepare_cached("UPDATE campaigns SET step_count = $3 WHERE tenant_id = $1 AND id = $2")
        .await?;
    client
        .execute(&count, &[&tenant, &campaign, &(1 + steps.len() as i32)])
        .await?;
    Ok(())
}

/// The follow-ups of `campaign`, in step order (empty for a one-step campaign).
pub async fn campaign_steps(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
) -> Result<Vec<NewStep>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT step, delay_secs, subject, text_body, html_body FROM campaign_steps
             WHERE tenant_id = $1 AND campaign_id = $2 ORDER BY step",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&tenant, &campaign])
        .await?
        .iter()
        .map(|row| NewStep {
            step: row.get(0),
            delay_secs: row.get(1),
            subject: row.get(2),
            text_body: row.get(3),
            html_body: row.get(4),
        })
        .collect())
}
