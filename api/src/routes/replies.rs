//! `POST /v1/replies` (tenant): a lead replied to one of a campaign's messages
//! (the platform reads the mailboxes elsewhere and posts it here), so its
//! sequence stops: no further step of that lead is sent.
//!
//! The body names the lead as exactly one of `{message_id}` (the Message-ID the
//! engine sent, angle brackets optional) or `{campaign_id, email}`; `auto: true`
//! marks an auto-reply (RFC 3834 `Auto-Submitted`), recorded as an
//! `auto_replied` event and stopping nothing. Answer: 200 `{stopped_steps,
//! campaign_id, job_id, recorded}`. Idempotent: a repeat answers the same
//! `stopped_steps` with `recorded: false` and changes nothing. 404 when no such
//! message or lead of the caller; 422 for neither or both forms.
//!
//! Everything happens in one transaction under the tenant scope
//! (`penguin_engine::store::replies`): the lead row locked first, its waiting
//! jobs cancelled by the ledger, at most one `replied` event per job.

use axum::Json;
use axum::extract::State;
use penguin_engine::arf;
use penguin_engine::db::StoreError;
use penguin_engine::domain::normalize_email;
use penguin_engine::store;
use penguin_engine::store::replies::ReplyTo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{commit, connection, tenant_scope};
use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::JsonBody;
use crate::openapi::{JsonBodyErrors, TenantOnly};

/// Longest `message_id` taken, in bytes (RFC 5322's line limit).
const MAX_MESSAGE_ID_BYTES: usize = 998;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(reply))
}

/// A reply: exactly one of `message_id` or `campaign_id` + `email`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplyRequest {
    /// The Message-ID of the message replied to (angle brackets optional).
    #[schema(example = "<0190f3a2-7c1e-7000-8000-000000000001@sender.example.com>")]
    message_id: Option<String>,
    /// With `email`: the campaign of the lead that replied.
    campaign_id: Option<Uuid>,
    /// With `campaign_id`: the lead's address.
    email: Option<String>,
    /// An auto-reply (RFC 3834 `Auto-Submitted`): recorded, stops nothing.
    #[serde(default)]
    auto: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct ReplyAnswer {
    /// Steps of the lead that will now never be sent: the campaign's steps
    /// minus those that reached SMTP (0 for an auto-reply); the same on a repeat.
    stopped_steps: i64,
    campaign_id: Uuid,
    /// The job the event is recorded on (the message's, or the lead's latest
    /// sent step, else its first); null when the lead has no job.
    job_id: Option<Uuid>,
    /// This call recorded the reply; false on a repeat.
    recorded: bool,
}

/// Which lead the request names, normalized; 422 unless exactly one form.
fn reply_to(request: &ReplyRequest) -> ApiResult<ReplyTo> {
    match (&request.message_id, request.campaign_id, &request.email) {
        (Some(message_id), None, None) => {
            if message_id.len() > MAX_MESSAGE_ID_BYTES {
                return Err(AppError::invalid(format!(
                    "message_id must be at most {MAX_MESSAGE_ID_BYTES} bytes"
                )));
            }
            let id = arf::normalize_message_id(message_id)
                .map_err(|e| AppError::invalid(format!("message_id: {e}")))?;
            Ok(ReplyTo::MessageId(id))
        }
        (None, Some(campaign), Some(email)) => {
            let email = normalize_email(email).map_err(|e| AppError::invalid_field("email", &e))?;
            Ok(ReplyTo::Lead { campaign, email })
        }
        _ => Err(AppError::invalid(
            "give exactly one of message_id, or campaign_id with email",
        )),
    }
}

/// Records a lead's reply and stops its sequence.
///
/// Names the lead by the `message_id` it replied to, or by `campaign_id` and
/// `email`. The first reply stops the lead (its waiting steps end `cancelled`)
/// and records one `replied` event; a repeat changes nothing (`recorded:
/// false`). `auto: true` records an `auto_replied` event and stops nothing.
#[utoipa::path(post, path = "/v1/replies", tag = "replies",
    security(("bearer" = [])),
    request_body = ReplyRequest,
    responses(
        (status = 200, description = "Recorded, or a repeat (`recorded: false`)", body = ReplyAnswer),
        (status = 404, description = "No such message or lead of the caller (`not_found`)", body = ErrorBody),
        (status = 422, description = "Not exactly one of `message_id` or `campaign_id` + `email`, \
            or a malformed one (`invalid_request`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn reply(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ReplyRequest>,
) -> ApiResult<Json<ReplyAnswer>> {
    let to = reply_to(&request)?;
    let mut client = connection(&state).await?;
    let tx = tenant_scope(&mut client, tenant).await?;
    let outcome = store::replies::record_reply(&tx, tenant, &to, request.auto)
        .await
        .map_err(|error| match error {
            StoreError::NotFound => AppError::not_found(match &to {
                ReplyTo::MessageId(_) => "no message with that Message-ID",
                ReplyTo::Lead { .. } => "no such lead in that campaign",
            }),
            other => other.into(),
        })?;
    commit(tx).await?;
    if outcome.recorded {
        tracing::info!(tenant_id = %tenant, campaign_id = %outcome.campaign_id,
            job_id = ?outcome.job_id, auto = request.auto, stopped_steps = outcome.stopped_steps,
            "reply recorded");
    }
    Ok(Json(ReplyAnswer {
        stopped_steps: outcome.stopped_steps,
        campaign_id: outcome.campaign_id,
        job_id: outcome.job_id,
        recorded: outcome.recorded,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        message_id: Option<&str>,
        campaign: Option<Uuid>,
        email: Option<&str>,
    ) -> ReplyRequest {
        ReplyRequest {
            message_id: message_id.map(str::to_owned),
            campaign_id: campaign,
            email: email.map(str::to_owned),
            auto: false,
        }
    }

    #[test]
    fn exactly_one_form_is_taken() {
        let campaign = Uuid::nil();
        assert_eq!(
            reply_to(&request(Some("<A@b.example>"), None, None)).unwrap(),
            ReplyTo::MessageId("a@b.example".into())
        );
        assert_eq!(
            reply_to(&request(None, Some(campaign), Some(" Lead@Example.COM "))).unwrap(),
            ReplyTo::Lead {
                campaign,
                email: "lead@example.com".into()
            }
        );
        for bad in [
            request(None, None, None),
            request(Some("a@b"), Some(campaign), Some("x@y.example")),
            request(None, Some(campaign), None),
            request(None, None, Some("x@y.example")),
            request(Some("a@b"), Some(campaign), None),
        ] {
            let error = reply_to(&bad).unwrap_err();
            assert_eq!(error.code, "invalid_request", "{bad:?}");
        }
    }

    #[test]
    fn inputs_are_bounded() {
        let long = format!("<{}@b.example>", "a".repeat(MAX_MESSAGE_ID_BYTES));
        let error = reply_to(&request(Some(&long), None, None)).unwrap_err();
        assert!(error.message.contains("998"), "{}", error.message);
        let error = reply_to(&request(Some("no-at-sign"), None, None)).unwrap_err();
        assert!(error.message.starts_with("message_id"), "{}", error.message);
        let long_email = format!("{}@example.com", "a".repeat(300));
        let error = reply_to(&request(None, Some(Uuid::nil()), Some(&long_email))).unwrap_err();
        assert!(error.message.starts_with("email"), "{}", error.message);
    }
}
