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
//! Both are streamed: the body is parsed as it arrives ([`crate::json_leads`],
//! [`crate::csv_leads`]) and written in batches of [`store::leads::CHUNK`]
//! inside one transaction, so a million-lead import never sits in memory; a body
//! may be up to `api.max_import_bytes`. The import is all or nothing: broken
//! JSON, a bad CSV header or an oversized body changes nothing. Other content
//! types than JSON and CSV answer 415.
//!
//! An import holds a connection, a transaction and its campaign's share lock
//! while the body arrives, so [`crate::import_guard`] bounds both: at most
//! `api.max_concurrent_imports_per_tenant` per tenant at once on this node
//! (another: 429 `too_many_imports`), and an upload slower than
//! `api.import_min_bytes_per_sec` over `api.import_rate_window_ms` is cut off
//! (408 `upload_too_slow`) and rolls back.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use futures::StreamExt;
use penguin_engine::control::ControlEvent;
use penguin_engine::db::StoreError;
use penguin_engine::store;
use penguin_engine::store::leads::{LeadFate, LeadImport, NewLead};
use serde::Serialize;
use tokio::time::Instant;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::TenantCaller;
use crate::csv_leads::CsvLeads;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{IdPath, is_json, mime_of};
use crate::import_guard::UploadRate;
use crate::json_leads::{JsonLeads, LeadIn};
use crate::lead_rows::{DUPLICATE, LeadRows, RejectedLead};
use crate::openapi::{JsonBodyErrors, TenantOnly};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

/// The JSON body (its schema; parsed as it streams by [`JsonLeads`]).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
struct ImportLeads {
    leads: Vec<LeadIn>,
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
        (status = 408, description = "The upload was slower than `api.import_min_bytes_per_sec` (`upload_too_slow`); nothing was imported", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn import(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(campaign): IdPath,
    request: Request,
) -> ApiResult<Json<ImportResult>> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let csv = mime_of(content_type) == "text/csv";
    // A declared length over the limit is refused before a byte is read.
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.config.api.max_import_bytes as u64) {
        return Err(AppError::payload_too_large());
    }
    let parser = if csv {
        Parser::Csv(Box::default())
    } else if is_json(content_type) {
        Parser::Json(JsonLeads::new())
    } else {
        return Err(AppError::unsupported_media_type(
            "expected Content-Type: application/json or text/csv",
        ));
    };
    // Held until the answer: given back however the import ends.
    let _slot = state.limits.imports.acquire(tenant)?;
    let (status, jobs_created, result) =
        import_stream(&state, tenant, campaign, parser, request.into_body()).await?;
    if let Some(status) = status
        && jobs_created
        && result.accepted > 0
    {
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

/// The campaign's status during the import (`None` when nothing was
/// written), whether jobs were created, and what became of the rows.
type Imported = (
    Option<penguin_engine::domain::CampaignStatus>,
    bool,
    ImportResult,
);

fn campaign_error(error: StoreError) -> AppError {
    AppError::missing("no such campaign")(error)
}

/// The body's parser: both take the body piece by piece and hand out batches.
enum Parser {
    Csv(Box<CsvLeads>),
    Json(JsonLeads),
}

impl Parser {
    fn feed(&mut self, piece: &[u8]) -> ApiResult<()> {
        match self {
            Parser::Csv(p) => p.feed(piece),
            Parser::Json(p) => p.feed(piece),
        }
    }

    fn finish(&mut self) -> ApiResult<()> {
        match self {
            Parser::Csv(p) => p.finish(),
            Parser::Json(p) => p.finish(),
        }
    }

    /// The rows parsed so far, whichever the format.
    fn rows(&mut self) -> &mut LeadRows {
        match self {
            Parser::Csv(p) => &mut p.rows,
            Parser::Json(p) => &mut p.rows,
        }
    }
}

/// A batch of parsed leads with their row numbers.
type Batch = (Vec<usize>, Vec<NewLead>);

/// Streams a body into one import transaction, a batch at a time. Parsing
/// the next batch overlaps with writing the previous one (two futures of this
/// task, a channel of two batches between them), so Postgres and this process
/// work at the same time.
///
/// The campaign is checked (404, 409) before a byte is read, on a connection
/// given back at once; the import's own connection, transaction and campaign
/// lock are taken only when the first batch is parsed. So a client that is
/// still sending its first [`store::leads::CHUNK`] leads holds no connection.
async fn import_stream(
    state: &AppState,
    tenant: uuid::Uuid,
    campaign: uuid::Uuid,
    parser: Parser,
    body: Body,
) -> ApiResult<Imported> {
    {
        let mut client = state.pg.get().await.map_err(StoreError::from)?;
        LeadImport::begin(&mut client, tenant, campaign)
            .await
            .map_err(campaign_error)?;
        // Dropped: rolled back, the connection back in the pool.
    }
    let (batches, ready) = tokio::sync::mpsc::channel::<Batch>(2);
    let (parse_done, parse_ok) = tokio::sync::oneshot::channel::<bool>();
    let rate = UploadRate::from_config(&state.config.api);
    let max_bytes = state.config.api.max_import_bytes;
    let parse = async move {
        let parsed = parse_body(parser, body, max_bytes, rate, batches).await;
        let _ = parse_done.send(parsed.is_ok());
        parsed
    };
    // A parse failure closes the channel: the writer stops and rolls back. A
    // write failure closes it too: the parser stops.
    let (parsed, written) = tokio::join!(
        parse,
        write_batches(state, tenant, campaign, ready, parse_ok)
    );
    let (status, jobs_created, mut result) = written?;
    let refused = parsed?;
    result.reject(refused.rejected);
    result.rejected_truncated |= refused.rejected_truncated;
    result.rejected.sort_by_key(|r| r.row);
    Ok((status, jobs_created, result))
}

/// Writes the batches from `ready` into one import transaction, begun when the
/// first arrives, and commits it once the channel closes if the parser says it
/// succeeded (`parse_ok`); otherwise it rolls back. No batch at all: nothing
/// to write (`status` is `None`).
async fn write_batches(
    state: &AppState,
    tenant: uuid::Uuid,
    campaign: uuid::Uuid,
    mut ready: tokio::sync::mpsc::Receiver<Batch>,
    parse_ok: tokio::sync::oneshot::Receiver<bool>,
) -> ApiResult<Imported> {
    let Some(first) = ready.recv().await else {
        return Ok((None, false, ImportResult::default()));
    };
    let mut client = state.pg.get().await.map_err(StoreError::from)?;
    let import = LeadImport::begin(&mut client, tenant, campaign)
        .await
        .map_err(campaign_error)?;
    let written = {
        let importing = &import;
        // Two batches in flight: the next statement is on the wire while
        // Postgres runs the one before (they run in order, in one transaction).
        let rest = futures::stream::unfold(ready, |mut ready| async move {
            ready.recv().await.map(|batch| (batch, ready))
        });
        let mut written_batches = std::pin::pin!(
            futures::stream::iter([first])
                .chain(rest)
                .map(|(rows, leads)| async move { (rows, importing.add(&leads).await) })
                .buffered(2)
        );
        let mut written = ImportResult::default();
        while let Some((rows, fates)) = written_batches.next().await {
            written.record(rows, fates.map_err(campaign_error)?);
        }
        written
    };
    if parse_ok.await != Ok(true) {
        // The parser failed (its error is the answer): `import` rolls back.
        return Ok((None, false, written));
    }
    let (status, jobs_created) = (import.status, import.jobs_created);
    import.commit().await.map_err(campaign_error)?;
    Ok((Some(status), jobs_created, written))
}

/// Reads and parses the body, sending batches of [`store::leads::CHUNK`] leads;
/// returns the rows it refused (in `rejected`, capped like every answer). Stops
/// early (without error) when the writer is gone. Fails (408) when the client
/// sends slower than `rate` allows: only the time spent waiting for the body
/// counts, not the time spent handing batches to the writer.
async fn parse_body(
    mut parser: Parser,
    body: Body,
    max_bytes: usize,
    mut rate: UploadRate,
    batches: tokio::sync::mpsc::Sender<Batch>,
) -> ApiResult<ImportResult> {
    let mut refused = ImportResult::default();
    let mut stream = body.into_data_stream();
    let mut received = 0usize;
    loop {
        let waiting = Instant::now();
        let next = match rate.read_budget() {
            None => Some(stream.next().await),
            Some(budget) => tokio::time::timeout(budget, stream.next()).await.ok(),
        };
        let Some(next) = next else {
            // The window closed with nothing more: enough before, or cut off.
            rate.record(waiting.elapsed(), 0)?;
            continue;
        };
        if let Some(Ok(piece)) = &next {
            rate.record(waiting.elapsed(), piece.len())?;
        }
        let done = match next {
            Some(piece) => {
                let piece = piece.map_err(|e| {
                    AppError::malformed_body(format!("reading the body failed: {e}"))
                })?;
                received += piece.len();
                if received > max_bytes {
                    return Err(AppError::payload_too_large());
                }
                parser.feed(&piece)?;
                false
            }
            None => {
                parser.finish()?;
                true
            }
        };
        refused.reject(parser.rows().take_rejected());
        let full =
            parser.rows().pending() >= store::leads::CHUNK || (done && parser.rows().pending() > 0);
        if full && batches.send(parser.rows().take_batch()).await.is_err() {
            break;
        }
        if done {
            break;
        }
    }
    Ok(refused)
}
