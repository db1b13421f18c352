//! Per-node cache of campaign delivery specs with their compiled templates. A
//! campaign's content never changes after creation; its IP pool may
//! (`PATCH /v1/campaigns/{id}`), so an entry is dropped on the campaign's
//! `CampaignChanged` notification and, should that notification be lost, read
//! again once it is [`MAX_AGE`] old.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use penguin_engine::db::StoreError;
use penguin_engine::message::{CampaignTemplate, RenderBudget, TemplateError};
use penguin_engine::store::routing::{CampaignSpec, campaign_spec};
use uuid::Uuid;

/// How long an entry is used without a notification.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// A campaign ready for delivery.
pub struct Campaign {
    pub spec: CampaignSpec,
    /// A template that does not compile fails the campaign's jobs with its reason
    /// (the API checks templates at creation, so this is a safety net).
    pub template: Result<CampaignTemplate, TemplateError>,
    /// The follow-up steps' templates: step n at index n - 2. A step without
    /// a subject of its own is threaded: its subject template is "Re: " and
    /// step 1's, so it renders as "Re: <step 1's rendered subject>".
    pub steps: Vec<Result<CampaignTemplate, TemplateError>>,
    /// Domain of the From address: Message-IDs and Feedback-IDs use it.
    pub domain: String,
    /// When it was read.
    pub read_at: Instant,
}

#[derive(Default)]
pub struct CampaignCache {
    entries: Mutex<HashMap<Uuid, Arc<Campaign>>>,
    /// What every render of a cached template may use (`[templates]`).
    budget: RenderBudget,
}

impl CampaignCache {
    pub fn new(budget: RenderBudget) -> CampaignCache {
        CampaignCache {
            entries: Mutex::default(),
            budget,
        }
    }

    pub async fn get(
        &self,
        pg: &Pool,
        tenant: Uuid,
        campaign: Uuid,
    ) -> Result<Arc<Campaign>, StoreError> {
        if let Some(hit) = self.entries.lock().expect("campaign cache").get(&campaign)
            && hit.read_at.elapsed() < MAX_AGE
        {
            return Ok(hit.clone());
        }
        let spec = campaign_spec(pg, tenant, campaign).await?;
        let template = CampaignTemplate::compile_with_budget(
            &spec.from_address,
            spec.from_name.as_deref(),
            &spec.subject,
            &spec.text_body,
            spec.html_body.as_deref(),
            self.budget,
        );
        let steps = spec
            .steps
            .iter()
            .map(|step| {
                let subject = match &step.subject {
                    Some(subject) => subject.clone(),
                    None => threaded_subject(&spec.subject),
                };
                CampaignTemplate::compile_with_budget(
                    &spec.from_address,
                    spec.from_name.as_deref(),
                    &subject,
                    &step.text_body,
                    step.html_body.as_deref(),
                    self.budget,
                )
            })
            .collect();
        let domain = penguin_engine::domain::email_domain(&spec.from_address).to_string();
        let entry = Arc::new(Campaign {
            spec,
            template,
            steps,
            domain,
            read_at: Instant::now(),
        });
        self.entries
            .lock()
            .expect("campaign cache")
            .insert(campaign, entry.clone());
        Ok(entry)
    }

    /// Drops the cached entry of `campaign`: the next use reads it again.
    pub fn forget(&self, campaign: Uuid) {
        self.entries
            .lock()
            .expect("campaign cache")
            .remove(&campaign);
    }
}

impl Campaign {
    /// The template of sequence step `step` (1: the campaign's own), or the
    /// reason it cannot be rendered.
    pub fn step_template(&self, step: i32) -> Result<&CampaignTemplate, String> {
        let template = match step {
            1 => &self.template,
            n => usize::try_from(n - 2)
                .ok()
                .and_then(|i| self.steps.get(i))
                .ok_or_else(|| format!("template: the campaign has no step {n}"))?,
        };
        template.as_ref().map_err(|err| format!("template: {err}"))
    }
}

/// The subject template of a threaded follow-up: "Re: " and step 1's subject
/// template (the API dry-runs the same text).
pub fn threaded_subject(first: &str) -> String {
    format!("Re: {first}")
}
