//! The ready queues of one Ip actor: claimed jobs waiting for a connection slot
//! of their (IP, provider) pair, per provider. A worker that finds every slot of
//! a pair taken hands its job here instead of blocking; the slot holders drain it.

use std::collections::{HashMap, VecDeque};

use tokio::sync::Notify;

use crate::delivery::Work;

/// Jobs waiting for a connection of their (IP, provider) pair, per provider.
#[derive(Default)]
pub struct ReadyQueues {
    queues: std::sync::Mutex<HashMap<String, VecDeque<Work>>>,
    /// Woken when a job is handed off or a slot is released with jobs waiting.
    pub wake: Notify,
}

impl ReadyQueues {
    pub fn push(&self, provider: String, work: Work) {
        self.queues
            .lock()
            .expect("ready lock")
            .entry(provider)
            .or_default()
            .push_back(work);
        self.wake.notify_waiters();
    }

    pub fn pop(&self, provider: &str) -> Option<Work> {
        self.queues
            .lock()
            .expect("ready lock")
            .get_mut(provider)?
            .pop_front()
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
            .all(VecDeque::is_empty)
    }

    /// A waiting job of a pair that has a free connection slot, for a worker
    /// without a connection.
    pub fn pop_any(&self, has_free_slot: impl Fn(&str) -> bool) -> Option<Work> {
        let mut queues = self.queues.lock().expect("ready lock");
        queues
            .iter_mut()
            .find(|(provider, queue)| !queue.is_empty() && has_free_slot(provider))
            .and_then(|(_, queue)| queue.pop_front())
    }
}
