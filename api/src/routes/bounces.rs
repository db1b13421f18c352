//! `POST /v1/bounces` (admin or tenant): a bounce that came back after the
//! receiving server had answered 250: a delivery status notification (DSN,
//! RFC 3464), `multipart/report; report-type=delivery-status` with a
//! `message/delivery-status` part and the original as `message/rfc822` or
//! `text/rfc822-headers`, or the whole bounce email as `message/rfc822`.
//!
//! The original message is found by its `Message-ID` among the caller's jobs
//! (the admin's: every tenant's). Of the report's recipient blocks the first
//! permanent failure counts, else the first delay, else the first block. Then,
//! in one transaction (`penguin_engine::store::bounces`): a permanent failure
//! turns a `sent` job `bounced`, records a `bounced` event with the report's
//! status, code and diagnostic, moves the message from `sent` to `bounced` in
//! the rollups, stops the lead's sequence and, for a failure that says the
//! address is bad, suppresses it for the tenant; a `Bounce` control event makes
//! the node owning the IP count it in the IP's rolling health. A delay records
//! a `delayed` event only. A report of success changes nothing.
//!
//! Answers 202 `{matched, job_id, campaign_id, outcome, status, suppressed}`:
//! `outcome` is `bounced`, `delayed`, `unchanged` (the job was not `sent`: a
//! repeated report, or one about a job that bounced or failed already) or
//! `ignored` (success). A well-formed report that names no message of the
//! caller (no `Message-ID`, a foreign or unknown one) answers 202
//! `{matched: false}` and changes nothing; a body that is no DSN is 415 or 422.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use penguin_engine::control::ControlEvent;
use penguin_engine::dsn::{self, DeliveryReport, DsnError, RecipientStatus, Verdict};
use penguin_engine::store;
use penguin_engine::store::bounces::{LateBounce, Recorded};
use penguin_engine::store::complaints::JobRef;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{RawBody, mime_of};
use crate::openapi::AnyCaller;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(bounce))
}

/// The content types taken.
const REPORT_TYPES: [&str; 2] = ["multipart/report", "message/rfc822"];

#[derive(Debug, Default, Serialize, ToSchema)]
struct BounceAccepted {
    /// Whether the report names a message of the caller.
    matched: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign_id: Option<Uuid>,
    /// `bounced`, `delayed`, `unchanged` or `ignored`; absent when not matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    /// The RFC 3463 status the report gave (`5.1.1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    /// The address was added to the tenant's suppression list.
    suppressed: bool,
    /// Why nothing matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn unmatched(reason: String) -> (StatusCode, Json<BounceAccepted>) {
    (
        StatusCode::ACCEPTED,
        Json(BounceAccepted {
            reason: Some(reason),
            ..BounceAccepted::default()
        }),
    )
}

/// The block that counts: the first permanent failure, else the first delay,
/// else the first.
fn deciding(report: &DeliveryReport) -> &RecipientStatus {
    let find = |v: Verdict| report.recipients.iter().find(|r| r.verdict() == v);
    find(Verdict::Permanent)
        .or_else(|| find(Verdict::Transient))
        .unwrap_or(&report.recipients[0])
}

/// Records a bounce that arrived after delivery (a DSN, RFC 3464).
///
/// The original message is looked up by its `Message-ID` among the caller's
/// jobs (the admin's: every tenant's). A permanent failure turns a `sent` job
/// `bounced`, records the event, stops the lead's sequence, counts in the IP's
/// health and, when the address is bad, suppresses it; a delay is recorded as a
/// `delayed` event only. A report that names no message of the caller answers
/// `{"matched": false}` and changes nothing.
#[utoipa::path(post, path = "/v1/bounces", tag = "complaints",
    security(("bearer" = [])),
    request_body(description = "A delivery status notification", content(
        (String = "multipart/report"),
        (String = "message/rfc822"),
    )),
    responses(
        (status = 202, description = "Recorded, unchanged, or not matched (`matched: false`)", body = BounceAccepted),
        AnyCaller,
        (status = 413, description = "Larger than `api.max_body_bytes` (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "Not multipart/report or message/rfc822 (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "Not a readable delivery status notification (`invalid_request`)", body = ErrorBody),
    ))]
async fn bounce(
    caller: Caller,
    State(state): State<AppState>,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<BounceAccepted>)> {
    let content_type = body.content_type.as_deref().unwrap_or("");
    if !REPORT_TYPES.contains(&mime_of(content_type).as_str()) {
        return Err(AppError::unsupported_media_type(
            "expected Content-Type: multipart/report (report-type=delivery-status) or message/rfc822",
        ));
    }
    let report = match dsn::parse(content_type, &body.body) {
        Ok(report) => report,
        Err(e @ (DsnError::MissingMessageId | DsnError::BadMessageId(_))) => {
            return Ok(unmatched(format!("delivery status notification: {e}")));
        }
        Err(e) => {
            return Err(AppError::invalid(format!(
                "delivery status notification: {e}"
            )));
        }
    };
    let block = deciding(&report);
    let owner = match caller {
        Caller::Admin => None,
        Caller::Tenant(tenant) => Some(tenant),
    };
    let mut client = super::connection(&state).await?;
    let tx = super::caller_scope(&mut client, caller).await?;
    let job =
        store::complaints::find_job(&tx, owner, JobRef::MessageId(&report.message_id)).await?;
    let Some(job) = job else {
        super::commit(tx).await?;
        return Ok(unmatched(format!(
            "no message with Message-ID <{}>",
            report.message_id
        )));
    };
    let mut answer = BounceAccepted {
        matched: true,
        job_id: Some(job.job_id),
        campaign_id: Some(job.campaign_id),
        status: Some(block.status.clone()),
        ..BounceAccepted::default()
    };
    let verdict = block.verdict();
    if verdict == Verdict::Success || job.ip_id.is_none() {
        super::commit(tx).await?;
        answer.outcome = Some(if verdict == Verdict::Success {
            "ignored"
        } else {
            "unchanged"
        });
        return Ok((StatusCode::ACCEPTED, Json(answer)));
    }
    let class = block.class();
    let late = LateBounce {
        status: &block.status,
        smtp_code: block.smtp_code().map(i32::from),
        diagnostic: block.diagnostic.as_deref(),
        class: class.as_str(),
        permanent: verdict == Verdict::Permanent,
        hard: block.is_hard(),
    };
    let recorded = store::bounces::record(&tx, &job, &late, OffsetDateTime::now_utc()).await?;
    super::commit(tx).await?;
    drop(client);
    match recorded {
        Recorded::Bounced {
            provider,
            suppressed,
        } => {
            answer.outcome = Some("bounced");
            answer.suppressed = suppressed;
            if let Some(ip_id) = job.ip_id {
                let event = ControlEvent::Bounce {
                    tenant_id: job.tenant_id,
                    ip_id,
                    provider,
                };
                super::publish(&state, event).await;
            }
            tracing::info!(
                tenant_id = %job.tenant_id, job_id = %job.job_id, status = %block.status,
                class = %class, suppressed, "late bounce recorded"
            );
        }
        Recorded::Delayed => answer.outcome = Some("delayed"),
        Recorded::Unchanged(_) => answer.outcome = Some("unchanged"),
    }
    Ok((StatusCode::ACCEPTED, Json(answer)))
}
