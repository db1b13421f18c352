//! Where a node is in its life, for orchestrators (`/health/ready`): starting
//! until its first membership round has placed it in the cluster, ready while
//! it takes work, draining once asked to hand its partitions off, stopping once
//! its shutdown began. Only `Ready` takes traffic; `/health/live` does not look
//! at this (a draining node is alive and must not be restarted).

use std::sync::Arc;

use tokio::sync::watch;

/// A node's phase; it only moves forward, except that a drain request that
/// lapses is not undone (a node that began to drain stays draining).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Starting,
    Ready,
    Draining,
    Stopping,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Draining => "draining",
            Phase::Stopping => "stopping",
        }
    }
}

/// The phase of one node, shared by its engine (which moves it) and its API
/// (which reports it).
#[derive(Debug, Clone)]
pub struct Readiness(Arc<watch::Sender<Phase>>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(watch::channel(Phase::Starting).0))
    }
}

impl Readiness {
    /// The phase now.
    pub fn phase(&self) -> Phase {
        *self.0.borrow()
    }

    /// Moves to `phase` if it lies ahead of the current one.
    pub fn advance(&self, phase: Phase) {
        self.0.send_if_modified(|now| {
            let ahead = phase > *now;
            if ahead {
                *now = phase;
            }
            ahead
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_moves_forward() {
        let readiness = Readiness::default();
        assert_eq!(readiness.phase(), Phase::Starting);
        readiness.advance(Phase::Ready);
        readiness.advance(Phase::Draining);
        readiness.advance(Phase::Ready);
        assert_eq!(readiness.phase(), Phase::Draining);
        readiness.clone().advance(Phase::Stopping);
        assert_eq!(readiness.phase(), Phase::Stopping);
    }
}
