//! `POST /v1/complaints` (admin or tenant): a recipient reported a message as
//! spam (a feedback loop). The body names the message, as one of:
//!
//! - JSON `{"message_id": "<…>"}` or `{"job_id": "<uuid>"}` (exactly one);
//! - an ARF report (RFC 5965): `multipart/report; report-type=feedback-report`,
//!   `message/feedback-report` alone, or the whole feedback email as
//!   `message/rfc822` — the original message's `Message-ID` names the job and
//!   `Feedback-Type` (default `abuse`) is recorded; `not-spam` is refused.
//!
//! The job is looked up by the Message-ID the engine sent (angle brackets
//! optional) or its id, among the caller's jobs (the admin's: every tenant's); a
//! foreign or unknown one is 404, one that never left through an IP is 409. Then
//! one transaction records a `complaint` delivery event, one more complaint in
//! the IP's daily rollup, and suppresses the recipient for the tenant (see
//! `penguin_engine::store::complaints`), and a `Complaint` control event tells
//! the node owning the IP to count it in the IP's rolling health. Answer: 202
//! `{job_id, ip_id, campaign_id, duplicate}`; a repeated complaint about the same
//! job changes nothing and says `"duplicate": true`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use penguin_engine::arf;
use penguin_engine::control::ControlEvent;
use penguin_engine::store;
use penguin_engine::store::complaints::JobRef;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{RawBody, is_json, mime_of, parse_json};
use crate::openapi::{AnyCaller, JsonBodyErrors};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(complain))
}

/// The ARF content types taken (besides JSON).
const REPORT_TYPES: [&str; 3] = [
    "multipart/report",
    "message/feedback-report",
    "message/rfc822",
];

/// Names the message by exactly one of its `Message-ID` (angle brackets
/// optional) or its job id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ComplaintJson {
    message_id: Option<String>,
    job_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ComplaintAccepted {
    job_id: Uuid,
    ip_id: Uuid,
    campaign_id: Uuid,
    /// The job had a complaint already: nothing changed.
    duplicate: bool,
}

/// What the body names.
enum Named {
    MessageId(String),
    JobId(Uuid),
}

/// Reads the body: which message, and the feedback type. Nothing is looked up.
fn read_body(body: &RawBody) -> ApiResult<(Named, String)> {
    let content_type = body.content_type.as_deref().unwrap_or("");
    if is_json(content_type) {
        let json: ComplaintJson = parse_json(&body.body)?;
        let named = match (json.message_id, json.job_id) {
            (Some(id), None) => Named::MessageId(
                arf::normalize_message_id(&id)
                    .map_err(|e| AppError::invalid(format!("message_id: {e}")))?,
            ),
            (None, Some(id)) => Named::JobId(id),
            _ => {
                return Err(AppError::invalid(
                    "give exactly one of message_id or job_id",
                ));
            }
        };
        return Ok((named, "abuse".to_string()));
    }
    if !REPORT_TYPES.contains(&mime_of(content_type).as_str()) {
        return Err(AppError::unsupported_media_type(
            "expected Content-Type: application/json, multipart/report \
             (ARF), message/feedback-report or message/rfc822",
        ));
    }
    let report = arf::parse(content_type, &body.body)
        .map_err(|e| AppError::invalid(format!("feedback report: {e}")))?;
    if !report.is_complaint() {
        return Err(AppError::invalid(format!(
            "feedback report: Feedback-Type {} is not a complaint",
            report.feedback_type
        )));
    }
    Ok((Named::MessageId(report.message_id), report.feedback_type))
}

/// Records a spam complaint (a feedback loop) about one sent message.
///
/// The body is JSON `{message_id}` or `{job_id}`, or an ARF report (RFC 5965):
/// `multipart/report; report-type=feedback-report`, `message/feedback-report`
/// alone, or the whole feedback email as `message/rfc822`. The message is looked
/// up among the caller's jobs (the admin's: every tenant's). Records a
/// `complaint` event, counts it in the IP's health and suppresses the recipient
/// for the tenant; a repeat says `"duplicate": true` and changes nothing.
#[utoipa::path(post, path = "/v1/complaints", tag = "complaints",
    security(("bearer" = [])),
    request_body(description = "The message complained about", content(
        (ComplaintJson = "application/json"),
        (String = "multipart/report"),
        (String = "message/feedback-report"),
        (String = "message/rfc822"),
    )),
    responses(
        (status = 202, description = "Recorded (or a duplicate)", body = ComplaintAccepted),
        (status = 404, description = "No such message among the caller's (`not_found`)", body = ErrorBody),
        (status = 409, description = "The job never left through an IP (`conflict`)", body = ErrorBody),
        AnyCaller, JsonBodyErrors,
        (status = 415, description = "Neither JSON nor an ARF content type (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "Not exactly one of `message_id`/`job_id`, an unreadable report, \
            or a `Feedback-Type` that is no complaint (`invalid_request`)", body = ErrorBody),
    ))]
async fn complain(
    caller: Caller,
    State(state): State<AppState>,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<ComplaintAccepted>)> {
    let (named, feedback_type) = read_body(&body)?;
    let owner = match caller {
        Caller::Admin => None,
        Caller::Tenant(tenant) => Some(tenant),
    };
    let by = match &named {
        Named::MessageId(id) => JobRef::MessageId(id),
        Named::JobId(id) => JobRef::JobId(*id),
    };
    let mut client = super::connection(&state).await?;
    let tx = super::caller_scope(&mut client, caller).await?;
    let job = store::complaints::find_job(&tx, owner, by)
        .await?
        .ok_or_else(|| match &named {
            Named::MessageId(id) => {
                AppError::not_found(format!("no message with Message-ID <{id}>"))
            }
            Named::JobId(id) => AppError::not_found(format!("no job {id}")),
        })?;
    let Some(ip_id) = job.ip_id else {
        return Err(AppError::conflict(format!(
            "job {} was never sent from an IP: there is nothing to complain about",
            job.job_id
        )));
    };
    let now = OffsetDateTime::now_utc();
    let recorded = store::complaints::record(&tx, &job, ip_id, &feedback_type, now).await?;
    super::commit(tx).await?;
    drop(client);
    if !recorded.duplicate {
        let event = ControlEvent::Complaint {
            tenant_id: job.tenant_id,
            ip_id,
            provider: recorded.provider,
        };
        super::publish(&state, event).await;
        tracing::info!(
            tenant_id = %job.tenant_id, job_id = %job.job_id, %ip_id, feedback_type,
            "complaint recorded"
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(ComplaintAccepted {
            job_id: job.job_id,
            ip_id,
            campaign_id: job.campaign_id,
            duplicate: recorded.duplicate,
        }),
    ))
}
