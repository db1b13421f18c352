//! Campaign templates judged before a campaign is stored (`POST /v1/campaigns`):
//! compiled (the syntax allowlist included), then dry-run without lead data under
//! the node's `[templates]` budget ([`CampaignTemplate::dry_run`]). What already
//! breaks it answers 422 naming the field (`subject: …`, `text: …`, `html: …`).
//!
//! The work runs on a blocking thread, at most `templates.render_concurrency`
//! dry runs at once per process, so a flood of bomb campaigns cannot take every
//! core of an API node (each dry run is bounded by up to 3 parts ×
//! `templates.fuel` instructions). The gate is sized by the first request's
//! configuration: one configuration per process in production.

use std::sync::{Arc, OnceLock};

use penguin_config::TemplatesConfig;
use penguin_engine::message::{CampaignTemplate, RenderBudget};
use tokio::sync::Semaphore;

use crate::{AppError, validate};

/// Dry runs under way in this process.
static DRY_RUNS: OnceLock<Arc<Semaphore>> = OnceLock::new();

/// The sender and templates of a campaign being created.
#[derive(Debug, Clone)]
pub struct Templates {
    pub from_address: String,
    pub from_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// Compiles and dry-runs `templates` under `config`'s budget, off the runtime.
pub async fn dry_run(config: &TemplatesConfig, templates: Templates) -> Result<(), AppError> {
    let budget = RenderBudget::from(config);
    let slot = DRY_RUNS
        .get_or_init(|| Arc::new(Semaphore::new(config.render_concurrency)))
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| AppError::internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        CampaignTemplate::dry_run(
            &templates.from_address,
            templates.from_name.as_deref(),
            &templates.subject,
            &templates.text,
            templates.html.as_deref(),
            budget,
        )
    })
    .await
    .map_err(|e| AppError::internal(e.to_string()))?
    .map_err(validate::template_error)
}
