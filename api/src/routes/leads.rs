//! `POST /v1/campaigns/{id}/leads` (tenant): imports leads as JSON
//! `{leads: [{email, fields}]}` → `{accepted, rejected: [{row, reason}], suppressed}`.
//!
//! `row` is the 0-based index in `leads`. A row is rejected for an invalid email,
//! invalid fields (not an object of scalars), or as a `duplicate` (of an earlier
//! row or of a lead the campaign already has); an address on the tenant's
//! suppression list is skipped and counted in `suppressed`. So
//! `accepted + rejected.len() + suppressed` = rows sent. A running or paused
//! campaign gets the new leads' jobs in the same transaction. `text/csv` comes
//! later: any other content type than JSON answers 415.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use penguin_engine::control::ControlEvent;
use penguin_engine::db::StoreError;
use penguin_engine::domain::normalize_email;
use penguin_engine::store;
use penguin_engine::store::leads::{LeadFate, NewLead};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{IdPath, JsonBody};
use crate::openapi::{JsonBodyErrors, TenantOnly};
use crate::validate;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ImportLeads {
    leads: Vec<LeadIn>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LeadIn {
    #[schema(example = "ann@example.com")]
    email: String,
    /// An object of scalars (strings, numbers, booleans, null) for the
    /// templates' `{{field}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"first_name": "Ann"}))]
    fields: Option<Value>,
}

#[derive(Debug, Serialize, PartialEq, Eq, ToSchema)]
struct RejectedLead {
    /// The 0-based index in `leads`.
    row: usize,
    /// What is wrong, or `duplicate`.
    reason: String,
}

/// `accepted + rejected.len() + suppressed` = rows sent.
#[derive(Debug, Serialize, ToSchema)]
struct ImportResult {
    accepted: usize,
    rejected: Vec<RejectedLead>,
    /// Rows on the tenant's suppression list, skipped.
    suppressed: usize,
}

const DUPLICATE: &str = "duplicate";

/// Splits the rows into valid leads (with their row numbers) and rejections.
fn check_rows(rows: Vec<LeadIn>) -> (Vec<(usize, NewLead)>, Vec<RejectedLead>) {
    let mut valid = Vec::with_capacity(rows.len());
    let mut rejected = Vec::new();
    let mut seen = HashSet::with_capacity(rows.len());
    for (row, lead) in rows.into_iter().enumerate() {
        let email = match normalize_email(&lead.email) {
            Ok(email) => email,
            Err(e) => {
                let reason = format!("email {e}");
                rejected.push(RejectedLead { row, reason });
                continue;
            }
        };
        let fields = match validate::lead_fields(lead.fields) {
            Ok(fields) => fields,
            Err(reason) => {
                rejected.push(RejectedLead { row, reason });
                continue;
            }
        };
        if !seen.insert(email.clone()) {
            rejected.push(RejectedLead {
                row,
                reason: DUPLICATE.to_string(),
            });
            continue;
        }
        valid.push((row, NewLead { email, fields }));
    }
    (valid, rejected)
}

/// Imports leads into a campaign of the calling tenant.
///
/// A row is rejected for an invalid email, invalid fields, or as a `duplicate`
/// (of an earlier row or of a lead the campaign has); a suppressed address is
/// skipped and counted. A running or paused campaign gets the new leads' jobs
/// at once. Only JSON for now (`text/csv` is planned).
#[utoipa::path(post, path = "/v1/campaigns/{id}/leads", tag = "leads",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The campaign")),
    request_body = ImportLeads,
    responses(
        (status = 200, description = "What became of each row", body = ImportResult),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn import(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(campaign): IdPath,
    JsonBody(request): JsonBody<ImportLeads>,
) -> ApiResult<Json<ImportResult>> {
    let (valid, mut rejected) = check_rows(request.leads);
    let (rows, leads): (Vec<usize>, Vec<NewLead>) = valid.into_iter().unzip();
    let outcome = store::leads::import_leads(&state.pg, tenant, campaign, &leads)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => AppError::not_found("no such campaign"),
            other => other.into(),
        })?;
    debug_assert_eq!(outcome.fates.len(), rows.len());

    let mut result = ImportResult {
        accepted: 0,
        rejected: Vec::new(),
        suppressed: 0,
    };
    for (row, fate) in rows.into_iter().zip(outcome.fates) {
        match fate {
            LeadFate::Accepted => result.accepted += 1,
            LeadFate::Suppressed => result.suppressed += 1,
            LeadFate::Duplicate => rejected.push(RejectedLead {
                row,
                reason: DUPLICATE.to_string(),
            }),
        }
    }
    rejected.sort_by_key(|r| r.row);
    result.rejected = rejected;

    if outcome.jobs_created && result.accepted > 0 {
        let event = ControlEvent::CampaignChanged {
            tenant_id: tenant,
            campaign_id: campaign,
            status: outcome.status,
        };
        super::publish(&state, event).await;
    }
    tracing::info!(
        tenant_id = %tenant, campaign_id = %campaign, accepted = result.accepted,
        rejected = result.rejected.len(), suppressed = result.suppressed, "leads imported"
    );
    Ok(Json(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lead(email: &str, fields: Option<Value>) -> LeadIn {
        LeadIn {
            email: email.to_string(),
            fields,
        }
    }

    #[test]
    fn rows_are_checked_and_deduplicated() {
        let (valid, rejected) = check_rows(vec![
            lead("Ann@Example.com", Some(json!({"first_name": "Ann"}))),
            lead("not-an-email", None),
            lead("ann@example.com", None),
            lead("bob@example.com", Some(json!({"nested": {"x": 1}}))),
            lead("cy@example.com", None),
        ]);
        let emails: Vec<(usize, &str)> =
            valid.iter().map(|(r, l)| (*r, l.email.as_str())).collect();
        assert_eq!(emails, vec![(0, "ann@example.com"), (4, "cy@example.com")]);
        let rows: Vec<usize> = rejected.iter().map(|r| r.row).collect();
        assert_eq!(rows, vec![1, 2, 3]);
        assert_eq!(rejected[1].reason, DUPLICATE);
        assert_eq!(valid[1].1.fields, json!({}));
    }
}
