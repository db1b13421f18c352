//! Delivery workers of one Ip actor: each worker owns at most one SMTP connection
//! bound to the IP's source address and takes claimed jobs (already `sending` in
//! Postgres) from the IP's work queue, one at a time.
//!
//! For every job it renders the message, reuses or opens a connection, runs one SMTP
//! transaction and reports the outcome straight to StatusWriter (job state) and
//! Analytics (event), then returns one credit to the tenant. A job of a campaign
//! that was paused meanwhile, or met while draining, is released to `pending`
//! without any SMTP. Workers are tasks owned by the Ip actor and aborted with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use penguin_engine::domain::{JobStatus, email_domain};
use penguin_engine::message::{RenderContext, new_message_id};
use penguin_engine::payload::JobV1;
use penguin_engine::retry::{self, RetryDecision};
use penguin_engine::route::Destination;
use penguin_engine::smtp::{DeliveryOutcome, SmtpConnection};
use penguin_engine::store::events::Event;
use penguin_engine::store::jobs::Transition;
use penguin_engine::store::routing::IpSpec;
use penguin_engine::tracking;
use time::OffsetDateTime;
use tokio::sync::{Mutex, mpsc};

use crate::context::Ctx;
use crate::tenant::TenantMsg;
use crate::{analytics, metrics, status_writer};

/// A claimed job waiting for a worker.
pub struct Work {
    pub job: JobV1,
    pub first_attempt: OffsetDateTime,
}

pub type WorkQueue = Arc<Mutex<mpsc::UnboundedReceiver<Work>>>;

/// How one job ended on this worker.
enum Finish {
    Smtp {
        outcome: DeliveryOutcome,
        message_id: String,
    },
    /// Could not be attempted and never will (e.g. the template does not render).
    Failed(String),
    /// Not attempted; back to `pending` for a later feed.
    Released,
}

pub struct Worker {
    pub ctx: Ctx,
    pub ip: Arc<IpSpec>,
    pub queue: WorkQueue,
    pub draining: Arc<AtomicBool>,
}

struct Open {
    conn: SmtpConnection,
    dest: Destination,
}

impl Worker {
    pub async fn run(self) {
        let idle = Duration::from_millis(self.ctx.config.delivery.idle_timeout_ms);
        let mut open: Option<Open> = None;
        loop {
            let next = {
                let mut queue = self.queue.lock().await;
                tokio::time::timeout(idle, queue.recv()).await
            };
            let work = match next {
                Ok(Some(work)) => work,
                Ok(None) => break,
                Err(_idle) => {
                    if let Some(idle_conn) = open.take() {
                        idle_conn.conn.quit().await;
                    }
                    continue;
                }
            };
            let finish = self.attempt(&work.job, &mut open).await;
            self.report(work, finish).await;
        }
        if let Some(last) = open.take() {
            last.conn.quit().await;
        }
    }

    async fn attempt(&self, job: &JobV1, open: &mut Option<Open>) -> Finish {
        if self.draining.load(Ordering::Acquire) || self.ctx.is_stopped(job.campaign_id) {
            return Finish::Released;
        }
        let campaign = match self
            .ctx
            .campaigns
            .get(&self.ctx.pg, job.tenant_id, job.campaign_id)
            .await
        {
            Ok(campaign) => campaign,
            Err(err) => {
                tracing::warn!(error = %err, "campaign unavailable; job released");
                return Finish::Released;
            }
        };
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&job.fields_json).unwrap_or_default();
        let message_id = new_message_id(job.job_id, &campaign.domain);
        let config = &self.ctx.config;
        let unsubscribe_url = tracking::unsubscribe_url(
            &config.tracking.base_url,
            &config.tracking.secret,
            job.job_id,
        );
        let feedback_id = format!(
            "{}:{}:penguin",
            job.campaign_id.simple(),
            job.tenant_id.simple()
        );
        let template = match &campaign.template {
            Ok(template) => template,
            Err(err) => return Finish::Failed(format!("template: {err}")),
        };
        let body = match template.render(&RenderContext {
            recipient: &job.recipient,
            fields: &fields,
            message_id: &message_id,
            unsubscribe_url: &unsubscribe_url,
            unsubscribe_mailto: None,
            feedback_id: &feedback_id,
        }) {
            Ok(body) => body,
            Err(err) => return Finish::Failed(format!("template: {err}")),
        };

        let dest = self.ctx.routes.resolve(email_domain(&job.recipient));
        let reusable = open.as_ref().is_some_and(|o| {
            o.dest == dest
                && o.conn.is_usable()
                && o.conn.messages_sent() < config.delivery.messages_per_connection
        });
        if !reusable {
            if let Some(old) = open.take() {
                old.conn.quit().await;
            }
            match SmtpConnection::connect(
                self.ip.address,
                &dest,
                &self.ip.helo_name,
                &config.delivery.timeouts,
            )
            .await
            {
                Ok(conn) => {
                    metrics::smtp_connection();
                    *open = Some(Open { conn, dest });
                }
                Err(outcome) => {
                    return Finish::Smtp {
                        outcome,
                        message_id,
                    };
                }
            }
        }
        let conn = &mut open.as_mut().expect("connection just ensured").conn;
        let span = tracing::debug_span!("delivery", job = %job.job_id, ip = %self.ip.address);
        let _entered = span.enter();
        let outcome = conn
            .send(&campaign.spec.from_address, &job.recipient, &body)
            .await;
        Finish::Smtp {
            outcome,
            message_id,
        }
    }

    async fn report(&self, work: Work, finish: Finish) {
        let now = self.ctx.clock.now();
        let job = &work.job;
        let (transition, event) = self.outcome_records(job, work.first_attempt, finish, now);
        if let Some(event) = event {
            analytics::record(&self.ctx, vec![event]);
        }
        let mut pending = vec![transition];
        // StatusWriter is only ever briefly absent (restart); wait for it rather
        // than lose an outcome.
        for _ in 0..200 {
            match status_writer::record(&self.ctx, pending) {
                Ok(()) => break,
                Err(back) => {
                    pending = back;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if let Some(tenant) = self.ctx.directory.tenant(job.tenant_id) {
            let _ = tenant.cast(TenantMsg::Credit {
                ip: self.ip.id,
                n: 1,
            });
        }
    }

    fn outcome_records(
        &self,
        job: &JobV1,
        first_attempt: OffsetDateTime,
        finish: Finish,
        now: OffsetDateTime,
    ) -> (Transition, Option<Event>) {
        let mut transition = Transition {
            tenant_id: job.tenant_id,
            job_id: job.job_id,
            to: JobStatus::Pending,
            run_at: None,
            message_id: None,
            reply: None,
        };
        let mut event = Event {
            tenant_id: job.tenant_id,
            campaign_id: job.campaign_id,
            job_id: job.job_id,
            ip_id: Some(self.ip.id),
            kind: String::new(),
            smtp_code: None,
            enhanced_code: None,
            class: None,
            provider: None,
            reply: None,
            at: now,
        };
        match finish {
            Finish::Released => return (transition, None),
            Finish::Failed(reason) => {
                transition.to = JobStatus::Failed;
                transition.reply = Some(reason.clone());
                event.reply = Some(reason);
            }
            Finish::Smtp {
                outcome,
                message_id,
            } => {
                event.smtp_code = outcome.code().map(i32::from);
                event.enhanced_code = outcome.enhanced().map(str::to_string);
                event.reply = Some(outcome.reply().to_string());
                transition.message_id = Some(message_id);
                transition.reply = Some(outcome.reply().to_string());
                transition.to = match &outcome {
                    DeliveryOutcome::Sent { .. } => {
                        let latency = (now.unix_timestamp_nanos() / 1_000_000) as i64 - job.due_ms;
                        metrics::pickup_latency(latency.max(0) as f64 / 1000.0);
                        JobStatus::Sent
                    }
                    DeliveryOutcome::Bounced { .. } => JobStatus::Bounced,
                    DeliveryOutcome::Deferred { .. } => {
                        let attempts = (job.attempts + 1).max(1) as u32;
                        let jitter = rand::random::<f64>();
                        match retry::decide(
                            &self.ctx.config.delivery.retry,
                            attempts,
                            first_attempt,
                            now,
                            jitter,
                        ) {
                            RetryDecision::RetryAt(at) => {
                                transition.run_at = Some(at);
                                JobStatus::Deferred
                            }
                            RetryDecision::GiveUp(reason) => {
                                transition.reply =
                                    Some(format!("{} ({})", outcome.reply(), reason.as_str()));
                                JobStatus::Failed
                            }
                        }
                    }
                };
            }
        }
        metrics::message(transition.to.as_str());
        event.kind = transition.to.as_str().to_string();
        (transition, Some(event))
    }
}
