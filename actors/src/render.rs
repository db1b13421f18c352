//! Rendering a job's message off the async runtime, under the node's template
//! budget (`[templates]`).
//!
//! Called by the delivery workers ([`crate::delivery`]) once per attempt. The
//! rendered message is DKIM-signed on the same blocking thread, right after
//! the render, with the signers of its From domain ([`crate::signers`]). A render
//! is CPU work on a tenant's template, so it runs on a blocking thread, never on a
//! tokio worker, and at most `render_concurrency` run at once on a node. Each
//! holds its permit until its thread is really done, so renders that missed their
//! deadline still count against the limit: CPU spent on templates stays bounded.
//! Guarantees:
//! - a render answers within `render_timeout_ms` of getting its permit; past it
//!   the job fails with "template: render deadline of N ms exceeded", and the
//!   thread left behind stops by itself when its fuel runs out;
//! - a render that breaks its budget (fuel, subject or part size) or fails in any
//!   other way, including a panic, gives the reason for a `failed` job: such a
//!   job is never retried and never sent, and the node goes on.

use std::sync::Arc;
use std::time::Duration;

use penguin_config::{Config, TemplatesConfig};
use penguin_engine::dkim;
use penguin_engine::message::RenderContext;
use penguin_engine::payload::JobV1;
use penguin_engine::tracking;
use penguin_engine::tracking_html::HtmlTracking;
use tokio::sync::Semaphore;

use crate::campaigns::Campaign;
use crate::signers::Signers;

/// The node's render slots and deadline.
pub struct Renderer {
    permits: Arc<Semaphore>,
    deadline: Duration,
}

/// What a render needs besides the campaign; owned, so it can cross to the
/// blocking thread.
pub struct RenderJob {
    pub recipient: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub message_id: String,
    pub unsubscribe_url: String,
    pub feedback_id: String,
    pub tenant: uuid::Uuid,
    pub job: uuid::Uuid,
    /// Its step in the campaign's sequence (1: the first email).
    pub step: i32,
    /// The Message-IDs of the lead's earlier steps, oldest first.
    pub thread: Vec<String>,
}

impl RenderJob {
    /// The render inputs of a claimed job of `campaign`, step `step` of its
    /// sequence, threaded under `thread`.
    pub fn new(
        config: &Config,
        job: &JobV1,
        message_id: String,
        step: i32,
        thread: Vec<String>,
    ) -> RenderJob {
        RenderJob {
            recipient: job.recipient.clone(),
            fields: serde_json::from_str(&job.fields_json).unwrap_or_default(),
            message_id,
            unsubscribe_url: tracking::unsubscribe_url(
                &config.tracking.base_url,
                &config.tracking.secret,
                job.tenant_id,
                job.job_id,
            ),
            feedback_id: format!(
                "{}:{}:penguin",
                job.campaign_id.simple(),
                job.tenant_id.simple()
            ),
            tenant: job.tenant_id,
            job: job.job_id,
            step,
            thread,
        }
    }
}

impl Renderer {
    pub fn new(config: &TemplatesConfig) -> Renderer {
        Renderer {
            permits: Arc::new(Semaphore::new(config.render_concurrency)),
            deadline: Duration::from_millis(config.render_timeout_ms),
        }
    }

    /// The message bytes, or the reason the job fails (`template: …`).
    pub async fn render(
        &self,
        config: Arc<Config>,
        campaign: Arc<Campaign>,
        input: RenderJob,
        signers: Signers,
    ) -> Result<Vec<u8>, String> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the render semaphore is never closed");
        let rendering = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let template = campaign.step_template(input.step)?;
            template
                .render(&RenderContext {
                    recipient: &input.recipient,
                    fields: &input.fields,
                    message_id: &input.message_id,
                    unsubscribe_url: &input.unsubscribe_url,
                    unsubscribe_mailto: None,
                    feedback_id: &input.feedback_id,
                    tracking: Some(HtmlTracking {
                        base_url: &config.tracking.base_url,
                        secret: &config.tracking.secret,
                        tenant: input.tenant,
                        job: input.job,
                        opens: config.tracking.opens,
                        clicks: config.tracking.clicks,
                    }),
                    thread: &input.thread,
                })
                .map_err(|err| format!("template: {err}"))
                .and_then(|body| {
                    if signers.is_empty() {
                        return Ok(body);
                    }
                    dkim::sign(&body, &signers).map_err(|err| format!("dkim: {err}"))
                })
        });
        match tokio::time::timeout(self.deadline, rendering).await {
            Ok(Ok(rendered)) => rendered,
            Ok(Err(join)) => {
                tracing::error!(error = %join, "template render panicked");
                Err("template: render failed unexpectedly".to_string())
            }
            Err(_) => Err(format!(
                "template: render deadline of {} ms exceeded",
                self.deadline.as_millis()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use penguin_engine::domain::CampaignStatus;
    use penguin_engine::message::{CampaignTemplate, RenderBudget};
    use penguin_engine::store::routing::CampaignSpec;
    use uuid::Uuid;

    use super::*;

    fn campaign(subject: &str, budget: RenderBudget) -> Arc<Campaign> {
        let template = CampaignTemplate::compile_with_budget(
            "a@sender.test",
            None,
            subject,
            "t",
            None,
            budget,
        );
        Arc::new(Campaign {
            spec: CampaignSpec {
                tenant_id: Uuid::from_u128(1),
                id: Uuid::from_u128(3),
                status: CampaignStatus::Running,
                from_address: "a@sender.test".into(),
                from_name: None,
                subject: subject.into(),
                text_body: "t".into(),
                html_body: None,
                ip_ids: vec![],
                steps: Vec::new(),
            },
            template,
            steps: Vec::new(),
            domain: "sender.test".into(),
            read_at: std::time::Instant::now(),
        })
    }

    fn input() -> RenderJob {
        RenderJob {
            recipient: "r@example.com".into(),
            fields: serde_json::Map::new(),
            message_id: "id@sender.test".into(),
            unsubscribe_url: "https://t.sender.test/u/x".into(),
            feedback_id: "c:t:penguin".into(),
            tenant: Uuid::from_u128(1),
            job: Uuid::from_u128(2),
            step: 1,
            thread: Vec::new(),
        }
    }

    fn no_signers() -> Signers {
        Arc::from(Vec::new())
    }

    fn renderer(render_timeout_ms: u64) -> Renderer {
        Renderer::new(&TemplatesConfig {
            render_timeout_ms,
            render_concurrency: 1,
            ..TemplatesConfig::default()
        })
    }

    const BOMB: &str =
        "{% for i in range(100000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}";

    #[tokio::test]
    async fn a_budget_breach_is_the_failure_reason() {
        let config = Arc::new(Config::default());
        let budget = RenderBudget {
            fuel: 10_000,
            ..RenderBudget::default()
        };
        let reason = renderer(60_000)
            .render(
                config.clone(),
                campaign(BOMB, budget),
                input(),
                no_signers(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            reason,
            "template: render fuel of 10000 exhausted in the subject template"
        );
        // The slot came back: the next render runs.
        let ok = renderer(60_000)
            .render(config, campaign("Hi", budget), input(), no_signers())
            .await
            .unwrap();
        assert!(String::from_utf8(ok).unwrap().contains("Subject: Hi"));
    }

    #[tokio::test]
    async fn a_stored_template_outside_the_allowlist_is_the_failure_reason() {
        let config = Arc::new(Config::default());
        let stored = campaign("{{ a ~ a }}", RenderBudget::default());
        let reason = renderer(60_000)
            .render(config, stored, input(), no_signers())
            .await
            .unwrap_err();
        assert_eq!(
            reason,
            "template: subject: the \"~\" operator is not allowed in templates \
             (it can build unbounded strings)"
        );
    }

    #[tokio::test]
    async fn a_render_past_its_deadline_answers_and_keeps_its_slot_until_done() {
        let config = Arc::new(Config::default());
        // 10^8 iterations: far more than 10 ms, bounded by fuel in the end.
        let budget = RenderBudget {
            fuel: 10_000_000,
            ..RenderBudget::default()
        };
        let renderer = renderer(10);
        let reason = renderer
            .render(
                config.clone(),
                campaign(BOMB, budget),
                input(),
                no_signers(),
            )
            .await
            .unwrap_err();
        assert_eq!(reason, "template: render deadline of 10 ms exceeded");
        // The abandoned thread holds the only slot until its fuel runs out, then
        // gives it back.
        let permit = renderer.permits.acquire().await.unwrap();
        drop(permit);
    }
}
