//! Bookkeeping for a supervisor's keyed children: which actor is which key, and the
//! restart backoff per key (100 ms doubling to 10 s, reset after a minute without
//! failure). Supervisors stay explicit about *what* to restart; this only remembers.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use ractor::{ActorCell, ActorId, SupervisionEvent};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const CALM_PERIOD: Duration = Duration::from_secs(60);

pub struct Children<K> {
    live: HashMap<K, ActorCell>,
    by_id: HashMap<ActorId, K>,
    failures: HashMap<K, (u32, Instant)>,
}

impl<K> Default for Children<K> {
    fn default() -> Self {
        Self {
            live: HashMap::new(),
            by_id: HashMap::new(),
            failures: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Children<K> {
    pub fn insert(&mut self, key: K, cell: ActorCell) {
        self.by_id.insert(cell.get_id(), key.clone());
        self.live.insert(key, cell);
    }

    pub fn contains(&self, key: &K) -> bool {
        self.live.contains_key(key)
    }

    pub fn get(&self, key: &K) -> Option<&ActorCell> {
        self.live.get(key)
    }

    pub fn keys(&self) -> Vec<K> {
        self.live.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Forgets a child that is being stopped on purpose; its exit is then ignored.
    pub fn remove(&mut self, key: &K) -> Option<ActorCell> {
        let cell = self.live.remove(key)?;
        self.by_id.remove(&cell.get_id());
        self.failures.remove(key);
        Some(cell)
    }

    /// The key of the live child a supervision event reports dead (failed or
    /// terminated), logging a failure as `what`; `None` for other events and for
    /// children removed on purpose.
    pub fn dead_child(&mut self, event: SupervisionEvent, what: &str) -> Option<K> {
        let cell = match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::error!(error = %err, "{what} failed");
                cell
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => cell,
            _ => return None,
        };
        self.exited(cell.get_id())
    }

    /// Records that the actor `id` exited; returns its key when it was a live child
    /// (an unexpected exit), `None` when it had been removed on purpose.
    pub fn exited(&mut self, id: ActorId) -> Option<K> {
        let key = self.by_id.remove(&id)?;
        self.live.remove(&key);
        Some(key)
    }

    /// The delay before restarting `key`, growing with repeated failures.
    pub fn backoff(&mut self, key: &K) -> Duration {
        let now = Instant::now();
        let entry = self.failures.entry(key.clone()).or_insert((0, now));
        if now.duration_since(entry.1) > CALM_PERIOD {
            entry.0 = 0;
        }
        entry.1 = now;
        let delay = FIRST_BACKOFF.saturating_mul(1u32 << entry.0.min(10));
        entry.0 += 1;
        delay.min(MAX_BACKOFF)
    }

    /// Every live child, for an orderly stop.
    pub fn drain(&mut self) -> Vec<ActorCell> {
        self.by_id.clear();
        self.live.drain().map(|(_, cell)| cell).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut children: Children<u32> = Children::default();
        let delays: Vec<Duration> = (0..10).map(|_| children.backoff(&1)).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[3], Duration::from_millis(800));
        assert_eq!(*delays.last().unwrap(), MAX_BACKOFF);
        assert_eq!(children.backoff(&2), Duration::from_millis(100));
    }
}
