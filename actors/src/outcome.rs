//! How one delivery attempt ends, and the records it leaves: the job's status
//! transition (with the retry schedule of a deferral) and its delivery event.

use penguin_engine::dns::{DnsError, Refused};
use penguin_engine::domain::JobStatus;
use penguin_engine::greylist::is_greylisting;
use penguin_engine::retry::{self, GiveUpReason, RetryDecision};
use penguin_engine::site::ShapingUnit;
use penguin_engine::smtp::{DeliveryOutcome, Stage, classify};
use penguin_engine::store::events::Event;
use penguin_engine::store::ledger::Outcome;
use penguin_engine::store::routing::IpSpec;
use time::OffsetDateTime;

use crate::context::Ctx;
use crate::delivery::Work;

/// How one job ended on this worker.
pub(crate) enum Finish {
    Smtp {
        outcome: DeliveryOutcome,
        message_id: String,
        /// The shaping unit (and provider) of the destination, when one was found.
        provider: Option<ShapingUnit>,
    },
    /// Could not be attempted and never will (e.g. the template does not render).
    Failed(String),
    /// Not attempted; back to `pending` for a later feed.
    Released,
    /// Not attempted: the (IP, provider) pair cannot take it before `until`.
    Postponed {
        until: OffsetDateTime,
        why: &'static str,
    },
    /// Every connection slot of the pair is taken: the job goes to the pair's
    /// ready queue, which the slot holders drain (no worker blocks on a slot).
    HandOff(String),
    /// Not attempted, and nothing written: this node's leases may have passed
    /// to another node (`EngineContext::lease_valid`). The job stays `sending`
    /// for whoever holds its tenant's lease now (a takeover returns it at once).
    Abandoned,
}

/// The records of one attempt's end by the IP `ip`; counts it (outcome, per
/// IP and provider) unless nothing was attempted.
pub(crate) fn outcome_records(
    ctx: &Ctx,
    ip: &IpSpec,
    work: &Work,
    finish: Finish,
    now: OffsetDateTime,
) -> (Outcome, Option<Event>) {
    let (job, first_attempt) = (&work.job, work.first_attempt);
    let mut transition = Outcome {
        tenant_id: job.tenant_id,
        job_id: job.job_id,
        to: JobStatus::Pending,
        run_at: None,
        message_id: None,
        reply: None,
        fence: work.fence,
        claim: work.claim,
    };
    let mut event = Event {
        tenant_id: job.tenant_id,
        campaign_id: job.campaign_id,
        job_id: job.job_id,
        ip_id: Some(ip.id),
        kind: String::new(),
        smtp_code: None,
        enhanced_code: None,
        class: None,
        provider: None,
        reply: None,
        at: now,
        step: work.step,
    };
    match finish {
        Finish::Released | Finish::HandOff(_) | Finish::Abandoned => return (transition, None),
        Finish::Postponed { until, why } => {
            ctx.metrics.postponed(why);
            transition.run_at = Some(until);
            transition.reply = Some(format!("postponed: {why}"));
            return (transition, None);
        }
        Finish::Failed(reason) => {
            transition.to = JobStatus::Failed;
            transition.reply = Some(reason.clone());
            event.reply = Some(reason);
        }
        Finish::Smtp {
            outcome,
            message_id,
            provider,
        } => {
            event.class = classify(&outcome).map(|c| c.as_str().to_string());
            event.provider = provider.map(|u| u.provider.name);
            event.smtp_code = outcome.code().map(i32::from);
            event.enhanced_code = outcome.enhanced().map(str::to_string);
            event.reply = Some(outcome.reply().to_string());
            transition.message_id = Some(message_id);
            transition.reply = Some(outcome.reply().to_string());
            transition.to = match &outcome {
                DeliveryOutcome::Sent { .. } => {
                    let latency = (now.unix_timestamp_nanos() / 1_000_000) as i64 - job.due_ms;
                    ctx.metrics.pickup_latency(latency.max(0) as f64 / 1000.0);
                    JobStatus::Sent
                }
                DeliveryOutcome::Bounced { .. } => JobStatus::Bounced,
                DeliveryOutcome::Deferred { .. } => {
                    let attempts = (job.attempts + 1).max(1) as u32;
                    let jitter = rand::random::<f64>();
                    // The server's own "retry in N seconds" wins; else greylisting
                    // gets a short first retry, then the normal schedule.
                    let greylist = &ctx.config.delivery.greylist;
                    let hint = retry::retry_hint(outcome.reply()).or_else(|| {
                        (is_greylisting(&outcome) && attempts == 1)
                            .then(|| std::time::Duration::from_secs(greylist.first_retry_secs))
                    });
                    match retry::decide_with_hint(
                        &ctx.config.delivery.retry,
                        attempts,
                        first_attempt,
                        now,
                        jitter,
                        hint,
                    ) {
                        RetryDecision::RetryAt(at) => {
                            transition.run_at = Some(at);
                            JobStatus::Deferred
                        }
                        RetryDecision::GiveUp(reason) => {
                            let why = format!("{} ({})", outcome.reply(), reason.as_str());
                            transition.reply = Some(why.clone());
                            event.reply = Some(why);
                            JobStatus::Failed
                        }
                    }
                }
            };
        }
    }
    ctx.metrics.message(transition.to.as_str());
    let provider = event.provider.as_deref().unwrap_or("default");
    ctx.metrics
        .ip_provider_message(ip.address, provider, transition.to.as_str());
    if transition.to == JobStatus::Sent {
        ctx.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    event.kind = transition.to.as_str().to_string();
    (transition, Some(event))
}

/// A job first attempted longer than `[delivery.retry] max_age_secs` ago (its
/// retry came due late: a paused campaign or IP, a full allowance, a node that
/// was down) is not attempted again: it fails, saying so.
pub(crate) fn past_max_age(ctx: &Ctx, work: &Work, now: OffsetDateTime) -> Option<Finish> {
    let config = &ctx.config.delivery.retry;
    if !retry::past_max_age(config, work.first_attempt, now) {
        return None;
    }
    let age = (now - work.first_attempt).whole_seconds();
    Some(Finish::Failed(format!(
        "{}: first attempted {age} s ago, limit {} s; not attempted again",
        GiveUpReason::TooOld.as_str(),
        config.max_age_secs
    )))
}

/// The outcome of a failed address lookup of one MX host (the next host is
/// tried; this is the outcome when none answers): deferred, as a connection
/// failure would be — another host or a later attempt may do better.
pub(crate) fn address_lookup_outcome(err: &DnsError) -> DeliveryOutcome {
    DeliveryOutcome::Deferred {
        code: None,
        enhanced: Some("4.4.3".into()),
        reply: format!("dns: {err}"),
        stage: Stage::Connect,
    }
}

/// Why a job whose mail hosts resolve only to addresses that are not globally
/// routable fails (permanently: retrying cannot change where its DNS points).
pub(crate) fn refusal_reason(refused: &[Refused]) -> String {
    let list: Vec<String> = refused.iter().take(8).map(Refused::to_string).collect();
    format!(
        "refused: the mail hosts resolve only to addresses that are not globally \
         routable, never connected to: {} (only a host named by [[delivery.routes]] may be)",
        list.join(", ")
    )
}

/// The outcome of a failed MX lookup: permanent failures (NXDOMAIN, null MX, no
/// mail host) bounce with the reason; anything else defers.
pub(crate) fn dns_outcome(err: Option<&DnsError>) -> DeliveryOutcome {
    match err {
        Some(err) if err.is_permanent() => DeliveryOutcome::Bounced {
            code: 550,
            enhanced: Some("5.1.2".into()),
            reply: format!("550 5.1.2 {err}"),
            stage: Stage::Connect,
        },
        Some(err) => DeliveryOutcome::Deferred {
            code: None,
            enhanced: Some("4.4.3".into()),
            reply: format!("dns: {err}"),
            stage: Stage::Connect,
        },
        None => DeliveryOutcome::Deferred {
            code: None,
            enhanced: Some("4.4.3".into()),
            reply: "no reachable mail host".into(),
            stage: Stage::Connect,
        },
    }
}
