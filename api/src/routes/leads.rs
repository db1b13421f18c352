//! `POST /v1/campaigns/{id}/leads` (tenant): imports leads as JSON
//! `{leads: [{email, fields}]}` or as `text/csv` (a header row with an `email`
//! column; every other column is a field, see [`crate::csv_leads`]) →
//! `{accepted, rejected: [{row, reason}], suppressed}`.
//!
//! `row` is the 0-based index in `leads` (for CSV: of the data rows, the header
//! not counted). A row is rejected for an invalid email, invalid fields (not an
//! object of scalars), or as a `duplicate` (of an earlier row or of a lead the
//! campaign already has); an address on the tenant's suppression list is skipped
//! and counted in `suppressed`. So `accepted + rejected.len() + suppressed` = rows
//! sent — unless more than [`MAX_REPORTED`] rows were rejected: then only the
//! first are listed and `rejected_truncated` is true. A running or paused
//! campaign gets the new leads' jobs in the same transaction.
//!
//! CSV is streamed: the body is parsed as it arrives and written in batches of
//! [`store::leads::CHUNK`] inside one transaction, so a million-lead file never
//! sits in memory; it may be up to `api.max_import_bytes`. The import is all or
//! nothing: a body error, a bad header or an oversized body changes nothing.
//! Other content types than JSON and CSV answer 415.

use std::collections::HashSet;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use futures::StreamExt;
use penguin_engine::control::ControlEvent;
use penguin_engine::db::StoreError;
use penguin_engine::domain::normalize_email;
use penguin_engine::store;
use penguin_engine::store::leads::{LeadFate, LeadImport, NewLead};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::TenantCaller;
use crate::csv_leads::{CsvLeads, DUPLICATE, RejectedLead};
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

/// The most rejected rows an answer lists.
pub const MAX_REPORTED: usize = 10_000;

/// `accepted + rejected.len() + suppressed` = rows sent (unless
/// `rejected_truncated`).
#[derive(Debug, Default, Serialize, ToSchema)]
struct ImportResult {
    accepted: usize,
    rejected: Vec<RejectedLead>,
    /// Rows on the tenant's suppression list, skipped.
    suppressed: usize,
    /// Present (true) when more than 10,000 rows were rejected: only the first
    /// are listed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    rejected_truncated: bool,
}

impl ImportResult {
    fn reject(&mut self, rejected: impl IntoIterator<Item = RejectedLead>) {
        for row in rejected {
            if self.rejected.len() < MAX_REPORTED {
                self.rejected.push(row);
            } else {
                self.rejected_truncated = true;
            }
        }
    }

    /// Counts what the database made of `rows`.
    fn record(&mut self, rows: Vec<usize>, fates: Vec<LeadFate>) {
        debug_assert_eq!(rows.len(), fates.len());
        let mut duplicates = Vec::new();
        for (row, fate) in rows.into_iter().zip(fates) {
            match fate {
                LeadFate::Accepted => self.accepted += 1,
                LeadFate::Suppressed => self.suppressed += 1,
                LeadFate::Duplicate => duplicates.push(RejectedLead {
                    row,
                    reason: DUPLICATE.to_string(),
                }),
            }
        }
        self.reject(duplicates);
    }
}

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
/// at once. As `text/csv` (a header row with an `email` column; every other
/// column is a field) the body is streamed into one transaction, up to
/// `api.max_import_bytes`; a bad header or an oversized body changes nothing.
#[utoipa::path(post, path = "/v1/campaigns/{id}/leads", tag = "leads",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The campaign")),
    request_body(content(
        (ImportLeads = "application/json"),
        (String = "text/csv", example = "email,first_name\nann@example.com,Ann\n"),
    )),
    responses(
        (status = 200, description = "What became of each row", body = ImportResult),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn import(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(campaign): IdPath,
    request: Request,
) -> ApiResult<Json<ImportResult>> {
    let csv = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/csv"));
    let (status, jobs_created, result) = if csv {
        import_csv(&state, tenant, campaign, request.into_body()).await?
    } else {
        let JsonBody(leads) = JsonBody::<ImportLeads>::from_request(request, &state).await?;
        import_json(&state, tenant, campaign, leads.leads).await?
    };
    if jobs_created && result.accepted > 0 {
        let event = ControlEvent::CampaignChanged {
            tenant_id: tenant,
            campaign_id: campaign,
            status,
        };
        super::publish(&state, event).await;
    }
    tracing::info!(
        tenant_id = %tenant, campaign_id = %campaign, accepted = result.accepted,
        rejected = result.rejected.len(), suppressed = result.suppressed, csv, "leads imported"
    );
    Ok(Json(result))
}

type Imported = (penguin_engine::domain::CampaignStatus, bool, ImportResult);

fn campaign_error(error: StoreError) -> AppError {
    AppError::missing("no such campaign")(error)
}

async fn import_json(
    state: &AppState,
    tenant: uuid::Uuid,
    campaign: uuid::Uuid,
    leads: Vec<LeadIn>,
) -> ApiResult<Imported> {
    let (valid, rejected) = check_rows(leads);
    let (rows, leads): (Vec<usize>, Vec<NewLead>) = valid.into_iter().unzip();
    let outcome = store::leads::import_leads(&state.pg, tenant, campaign, &leads)
        .await
        .map_err(campaign_error)?;
    let mut result = ImportResult::default();
    result.record(rows, outcome.fates);
    result.reject(rejected);
    result.rejected.sort_by_key(|r| r.row);
    Ok((outcome.status, outcome.jobs_created, result))
}

/// Streams a CSV body into one import transaction, a batch at a time. Parsing
/// the next batch overlaps with writing the previous one (two futures of this
/// task, a channel of two batches between them), so Postgres and this process
/// work at the same time.
async fn import_csv(
    state: &AppState,
    tenant: uuid::Uuid,
    campaign: uuid::Uuid,
    body: Body,
) -> ApiResult<Imported> {
    let mut client = state.pg.get().await.map_err(StoreError::from)?;
    let mut import = LeadImport::begin(&mut client, tenant, campaign)
        .await
        .map_err(campaign_error)?;
    let (batches, mut ready) = tokio::sync::mpsc::channel::<(Vec<usize>, Vec<NewLead>)>(2);
    let parse = parse_csv(body, state.config.api.max_import_bytes, batches);
    let write = async {
        let mut written = ImportResult::default();
        while let Some((rows, leads)) = ready.recv().await {
            let fates = import.add(&leads).await.map_err(campaign_error)?;
            written.record(rows, fates);
        }
        Ok::<_, AppError>(written)
    };
    // A parse failure closes the channel: the writer stops, the transaction is
    // dropped (rolled back). A write failure closes it too: the parser stops.
    let (parsed, written) = tokio::join!(parse, write);
    let mut result = written?;
    let refused = parsed?;
    result.reject(refused.rejected);
    result.rejected_truncated |= refused.rejected_truncated;
    let (status, jobs_created) = (import.status, import.jobs_created);
    import.commit().await.map_err(campaign_error)?;
    result.rejected.sort_by_key(|r| r.row);
    Ok((status, jobs_created, result))
}

/// Reads and parses the body, sending batches of [`store::leads::CHUNK`] leads;
/// returns the rows it refused (in `rejected`, capped like every answer). Stops early (without error) when the writer is
/// gone.
async fn parse_csv(
    body: Body,
    max_bytes: usize,
    batches: tokio::sync::mpsc::Sender<(Vec<usize>, Vec<NewLead>)>,
) -> ApiResult<ImportResult> {
    let mut csv = CsvLeads::new();
    let mut refused = ImportResult::default();
    let mut stream = body.into_data_stream();
    let mut received = 0usize;
    loop {
        let done = match stream.next().await {
            Some(piece) => {
                let piece = piece.map_err(|e| {
                    AppError::malformed_body(format!("reading the body failed: {e}"))
                })?;
                received += piece.len();
                if received > max_bytes {
                    return Err(AppError::payload_too_large());
                }
                csv.feed(&piece)?;
                false
            }
            None => {
                csv.finish()?;
                true
            }
        };
        refused.reject(csv.take_rejected());
        let full = csv.pending() >= store::leads::CHUNK || (done && csv.pending() > 0);
        if full && batches.send(csv.take_batch()).await.is_err() {
            break;
        }
        if done {
            break;
        }
    }
    Ok(refused)
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
