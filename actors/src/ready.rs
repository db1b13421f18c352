//! The ready queues of one Ip actor: claimed jobs waiting for a connection slot
//! of their (IP, unit) pair, per shaping unit key (a provider or an MX site). A worker that finds every slot of
//! a pair taken hands its job here instead of blocking; the slot holders drain it.
//!
//! Each unit's queue serves urgent jobs first (priority order, FIFO within a
//! priority: [`Ordered`]), and a worker without a connection takes the most
//! urgent job among the units with a free slot.

use std::collections::HashMap;

use tokio::sync::Notify;

use crate::delivery::Work;
use crate::priority_queue::Ordered;

/// Jobs waiting for a connection of their (IP, provider) pair, per provider.
#[derive(Default)]
pub struct ReadyQueues {
    queues: std::sync::Mutex<HashMap<String, Ordered<Work>>>,
    /// Woken when a job is handed off or a slot is released with jobs waiting.
    pub wake: Notify,
}

impl ReadyQueues {
    pub fn push(&self, provider: String, work: Work) {
        let priority = work.job.priority;
        self.queues
            .lock()
            .expect("ready lock")
            .entry(provider)
            .or_default()
            .push(priority, work);
        self.wake.notify_waiters();
    }

    /// The next job waiting for `provider`'s slots; an emptied queue is dropped
    /// (units are many: MX sites), so the map holds only units with jobs.
    pub fn pop(&self, provider: &str) -> Option<Work> {
        let mut queues = self.queues.lock().expect("ready lock");
        let queue = queues.get_mut(provider)?;
        let work = queue.pop();
        if queue.is_empty() {
            queues.remove(provider);
        }
        work
    }

    pub fn has_work(&self, provider: &str) -> bool {
        self.queues
            .lock()
            .expect("ready lock")
            .get(provider)
            .is_some_and(|q| !q.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.queues
            .lock()
            .expect("ready lock")
            .values()
            .all(Ordered::is_empty)
    }

    /// The most urgent waiting job of a pair that has a free connection slot,
    /// for a worker without a connection.
    pub fn pop_any(&self, has_free_slot: impl Fn(&str) -> bool) -> Option<Work> {
        let mut queues = self.queues.lock().expect("ready lock");
        let key = queues
            .iter()
            .filter(|(provider, queue)| !queue.is_empty() && has_free_slot(provider))
            .min_by_key(|(_, queue)| queue.front_priority())
            .map(|(provider, _)| provider.clone())?;
        let queue = queues.get_mut(&key)?;
        let work = queue.pop();
        if queue.is_empty() {
            queues.remove(&key);
        }
        work
    }
}

#[cfg(test)]
mod tests {
    use penguin_engine::payload::JobV1;
    use uuid::Uuid;

    use super::*;

    fn work(n: u128, priority: i32) -> Work {
        Work {
            job: JobV1 {
                job_id: Uuid::from_u128(n),
                tenant_id: Uuid::from_u128(1),
                campaign_id: Uuid::from_u128(2),
                priority,
                recipient: format!("r{n}@example.test"),
                fields_json: "{}".into(),
                attempts: 0,
                due_ms: 0,
            },
            first_attempt: time::OffsetDateTime::UNIX_EPOCH,
            step: 1,
            thread: Vec::new(),
            hour_start: time::OffsetDateTime::UNIX_EPOCH,
            fence: 1,
            claim: Uuid::nil(),
            deadline: tokio::time::Instant::now(),
        }
    }

    fn id(work: Option<Work>) -> Option<u128> {
        work.map(|w| w.job.job_id.as_u128())
    }

    #[test]
    fn a_unit_serves_its_urgent_jobs_first_then_bulk_in_order() {
        let ready = ReadyQueues::default();
        ready.push("gmail".into(), work(1, 200));
        ready.push("gmail".into(), work(2, 200));
        ready.push("gmail".into(), work(3, 10));
        ready.push("gmail".into(), work(4, 10));
        let order: Vec<_> = std::iter::from_fn(|| id(ready.pop("gmail"))).collect();
        assert_eq!(order, [3, 4, 1, 2]);
        assert!(ready.is_empty());
    }

    #[test]
    fn a_worker_without_a_connection_takes_the_most_urgent_unit_with_a_free_slot() {
        let ready = ReadyQueues::default();
        ready.push("bulk-site".into(), work(1, 200));
        ready.push("urgent-site".into(), work(2, 10));
        ready.push("full-site".into(), work(3, 0));
        let free = |unit: &str| unit != "full-site";
        assert_eq!(id(ready.pop_any(free)), Some(2), "the urgent unit first");
        assert_eq!(id(ready.pop_any(free)), Some(1));
        assert_eq!(id(ready.pop_any(free)), None, "the full unit's job waits");
        assert!(ready.has_work("full-site"));
    }
}
