//! The follow-up steps of a campaign (`POST /v1/campaigns` `steps`, issue 18):
//! their request and answer shapes and their validation.
//!
//! Guarantees of [`check_steps`]: at most `[sequences] max_steps − 1` entries
//! (step 1 is the campaign's top-level content), every `delay_secs` within
//! `[sequences] min_delay_secs` ..= [`MAX_STEP_DELAY_SECS`], and every subject,
//! text and html under the same checks as step 1's. [`dry_run_steps`] then
//! compiles and dry-runs each step like step 1 (a threaded step, without
//! `subject`, with "Re: " and step 1's subject, as the engine renders it).
//! Every refusal is 422 `invalid_request` opening with the field, named by its
//! array index and its step number: `steps[0] (step 2).delay_secs must be at
//! least 60`.

use std::collections::BTreeMap;

use penguin_config::{MAX_STEP_DELAY_SECS, SequencesConfig};
use penguin_engine::store::campaigns::Campaign;
use penguin_engine::store::sequences::NewStep;
use penguin_engine::store::step_stats::StepCounts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiResult, AppError};
use crate::template_check::{self, Templates};
use crate::validate;

/// A follow-up: sent `delay_secs` after the lead's previous step was sent.
/// Without `subject` it is threaded: "Re: " and step 1's subject.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// Seconds after the previous step was sent: at least `[sequences]
    /// min_delay_secs` (default 60), at most 31,622,400 (366 days).
    #[schema(example = 259200)]
    pub delay_secs: i64,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

/// One step of a campaign with its counts (step 1 is the campaign's top-level
/// content, `delay_secs` 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StepBody {
    pub step: i32,
    pub delay_secs: i32,
    /// Null for a threaded follow-up ("Re: " and step 1's subject).
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    /// Accepted by the receiving server.
    pub sent: i64,
    pub bounced: i64,
    /// Jobs of the step opened (first open per job).
    pub opened: i64,
    /// Jobs of the step clicked (first click per job, any link).
    pub clicked: i64,
    /// Replies recorded on the step's messages (`POST /v1/replies`).
    pub replied: i64,
    /// Jobs of the step `pending`, `deferred`, `queued` or `sending` now.
    pub waiting: i64,
}

/// How a step's field is named in an error: `steps[0] (step 2).text`.
fn field(index: usize, name: &str) -> String {
    format!("steps[{index}] (step {}).{name}", index + 2)
}

/// Checks `steps` without a render and numbers them 2, 3, …
pub fn check_steps(steps: &[StepRequest], config: &SequencesConfig) -> ApiResult<Vec<NewStep>> {
    let most = config.max_steps.saturating_sub(1) as usize;
    if steps.len() > most {
        return Err(AppError::invalid(format!(
            "steps holds {} follow-ups; at most {most} ([sequences] max_steps = {}, step 1 included)",
            steps.len(),
            config.max_steps
        )));
    }
    let min = i64::from(config.min_delay_secs);
    let max = i64::from(MAX_STEP_DELAY_SECS);
    let mut checked = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        if step.delay_secs < min {
            return Err(AppError::invalid(format!(
                "{} must be at least {min}",
                field(index, "delay_secs")
            )));
        }
        if step.delay_secs > max {
            return Err(AppError::invalid(format!(
                "{} must be at most {max} (366 days)",
                field(index, "delay_secs")
            )));
        }
        if let Some(subject) = &step.subject {
            validate::header_text(&field(index, "subject"), subject, validate::MAX_SUBJECT)?;
        }
        validate::body_template(&field(index, "text"), &step.text)?;
        if let Some(html) = &step.html {
            validate::body_template(&field(index, "html"), html)?;
        }
        checked.push(NewStep {
            step: index as i32 + 2,
            delay_secs: step.delay_secs as i32,
            subject: step.subject.clone(),
            text_body: step.text.clone(),
            html_body: step.html.clone(),
        });
    }
    Ok(checked)
}

/// Compiles and dry-runs every step like step 1 (`first`), one after another;
/// an error names the step.
pub async fn dry_run_steps(
    config: &penguin_config::TemplatesConfig,
    first: &Templates,
    steps: &[NewStep],
) -> ApiResult<()> {
    for (index, step) in steps.iter().enumerate() {
        let templates = Templates {
            from_address: first.from_address.clone(),
            from_name: first.from_name.clone(),
            subject: step
                .subject
                .clone()
                .unwrap_or_else(|| format!("Re: {}", first.subject)),
            text: step.text_body.clone(),
            html: step.html_body.clone(),
        };
        template_check::dry_run(config, templates)
            .await
            .map_err(|error| name_step(error, index))?;
    }
    Ok(())
}

/// A refused template of step `index` (`subject: …`) named as
/// `steps[0] (step 2).subject: …`; any other error as it is.
fn name_step(error: AppError, index: usize) -> AppError {
    if error.code != "invalid_request" {
        return error;
    }
    AppError::invalid(format!("{}{}", field(index, ""), error.message))
}

/// Every step of `campaign`, step 1 first, with its counts (zeros where the
/// rollup has no row yet).
pub fn step_bodies(
    campaign: &Campaign,
    follow_ups: Vec<NewStep>,
    counts: &BTreeMap<i32, StepCounts>,
) -> Vec<StepBody> {
    let first = NewStep {
        step: 1,
        delay_secs: 0,
        subject: Some(campaign.subject.clone()),
        text_body: campaign.text_body.clone(),
        html_body: campaign.html_body.clone(),
    };
    std::iter::once(first)
        .chain(follow_ups)
        .map(|step| {
            let c = counts.get(&step.step).copied().unwrap_or_default();
            StepBody {
                step: step.step,
                delay_secs: step.delay_secs,
                subject: step.subject,
                text: step.text_body,
                html: step.html_body,
                sent: c.sent,
                bounced: c.bounced,
                opened: c.opened,
                clicked: c.clicked,
                replied: c.replied,
                waiting: c.waiting,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(delay_secs: i64) -> StepRequest {
        StepRequest {
            delay_secs,
            subject: None,
            text: "Following up".into(),
            html: None,
        }
    }

    fn message(result: ApiResult<Vec<NewStep>>) -> String {
        let error = result.unwrap_err();
        assert_eq!(error.code, "invalid_request");
        error.message
    }

    #[test]
    fn steps_are_numbered_from_two() {
        let steps = check_steps(&[step(60), step(3_600)], &SequencesConfig::default()).unwrap();
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.step, s.delay_secs))
                .collect::<Vec<_>>(),
            vec![(2, 60), (3, 3_600)]
        );
        assert!(
            check_steps(&[], &SequencesConfig::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn too_many_steps_count_step_one() {
        let config = SequencesConfig {
            max_steps: 3,
            min_delay_secs: 60,
        };
        check_steps(&[step(60), step(60)], &config).unwrap();
        let err = message(check_steps(&[step(60), step(60), step(60)], &config));
        assert!(
            err.contains("at most 2") && err.contains("max_steps = 3"),
            "{err}"
        );
    }

    #[test]
    fn delays_are_bounded_and_name_the_step() {
        let config = SequencesConfig::default();
        let err = message(check_steps(&[step(60), step(59)], &config));
        assert_eq!(err, "steps[1] (step 3).delay_secs must be at least 60");
        let err = message(check_steps(&[step(-1)], &config));
        assert!(err.starts_with("steps[0] (step 2).delay_secs"), "{err}");
        let too_long = i64::from(MAX_STEP_DELAY_SECS) + 1;
        let err = message(check_steps(&[step(too_long)], &config));
        assert!(err.contains("at most 31622400"), "{err}");
        check_steps(&[step(i64::from(MAX_STEP_DELAY_SECS))], &config).unwrap();
    }

    #[test]
    fn contents_are_checked_like_step_one() {
        let config = SequencesConfig::default();
        let mut bad = step(60);
        bad.subject = Some("two\r\nlines".into());
        let err = message(check_steps(&[step(60), bad], &config));
        assert!(err.starts_with("steps[1] (step 3).subject"), "{err}");
        let mut blank = step(60);
        blank.text = "  ".into();
        let err = message(check_steps(&[blank], &config));
        assert!(err.starts_with("steps[0] (step 2).text"), "{err}");
        let mut nul = step(60);
        nul.html = Some("a\0b".into());
        let err = message(check_steps(&[nul], &config));
        assert!(err.starts_with("steps[0] (step 2).html"), "{err}");
    }
}
