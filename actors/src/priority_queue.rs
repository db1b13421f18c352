//! The urgent lane inside an Ip actor: its work queue (claimed jobs waiting for
//! a delivery worker) and its ready queues (jobs waiting for a connection slot
//! of their unit, [`crate::ready`]) serve the lowest priority number first and,
//! within one priority, in arrival order. An urgent job (priority ≤ 50,
//! [`penguin_engine::domain::URGENT_MAX_PRIORITY`]) therefore waits for the
//! transactions under way, never behind the IP's bulk backlog.
//!
//! Nothing else changes with the order: every job in these queues was already
//! admitted by the IP's allowance, warm-up and breakers and claimed `sending`
//! once; the queues only decide which admitted job a free worker takes next.
//! Both stay short: the tenant's credit bounds what an IP holds
//! (`connections_per_ip + ip_backlog`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Items ordered by (priority, arrival); not synchronised.
pub struct Ordered<T> {
    items: BTreeMap<(i32, u64), T>,
    /// Arrival number of the next push: FIFO within a priority.
    next: u64,
}

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            next: 0,
        }
    }
}

impl<T> Ordered<T> {
    pub fn push(&mut self, priority: i32, item: T) {
        self.items.insert((priority, self.next), item);
        self.next += 1;
    }

    /// The most urgent item, the earliest of its priority.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_first().map(|(_, item)| item)
    }

    /// The priority [`Ordered::pop`] would serve next.
    pub fn front_priority(&self) -> Option<i32> {
        self.items
            .first_key_value()
            .map(|((priority, _), _)| *priority)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// An async multi-consumer queue in [`Ordered`] order: the Ip actor pushes,
/// its delivery workers [`PriorityQueue::recv`]. Closing it lets the workers
/// take what is left, then tells them to stop (as closing a channel would).
pub struct PriorityQueue<T> {
    state: Mutex<QueueState<T>>,
    /// Woken on every push (one waiter) and on close (all of them).
    ready: Notify,
}

struct QueueState<T> {
    items: Ordered<T>,
    closed: bool,
}

impl<T> Default for PriorityQueue<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(QueueState {
                items: Ordered::default(),
                closed: false,
            }),
            ready: Notify::new(),
        }
    }
}

impl<T> PriorityQueue<T> {
    /// Queues `item`; hands it back when the queue was closed.
    pub fn push(&self, priority: i32, item: T) -> Result<(), T> {
        {
            let mut state = self.state.lock().expect("queue lock");
            if state.closed {
                return Err(item);
            }
            state.items.push(priority, item);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// The most urgent item, waiting for one; `None` once the queue is closed
    /// and empty. Cancel-safe: an item is only taken by a call that returns it.
    pub async fn recv(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            // Registered before looking, so a push or close in between wakes us.
            notified.as_mut().enable();
            {
                let mut state = self.state.lock().expect("queue lock");
                if let Some(item) = state.items.pop() {
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// No more pushes; receivers drain what is queued, then get `None`.
    pub fn close(&self) {
        self.state.lock().expect("queue lock").closed = true;
        self.ready.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.state.lock().expect("queue lock").items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    const BULK: i32 = 200;
    const URGENT: i32 = 10;

    #[test]
    fn urgent_items_overtake_bulk_and_each_priority_stays_fifo() {
        let mut queue = Ordered::default();
        for n in 0..5 {
            queue.push(BULK, format!("bulk{n}"));
        }
        queue.push(URGENT, "urgent0".to_string());
        queue.push(100, "normal0".to_string());
        queue.push(URGENT, "urgent1".to_string());
        queue.push(BULK, "bulk5".to_string());
        assert_eq!(queue.front_priority(), Some(URGENT));
        let order: Vec<String> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(
            order,
            [
                "urgent0", "urgent1", "normal0", "bulk0", "bulk1", "bulk2", "bulk3", "bulk4",
                "bulk5"
            ]
        );
        assert!(queue.is_empty());
        assert_eq!(queue.front_priority(), None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_gets_the_most_urgent_item_queued_meanwhile() {
        let queue = Arc::new(PriorityQueue::default());
        for n in 0..3 {
            queue.push(BULK, n).unwrap();
        }
        queue.push(URGENT, 100).unwrap();
        assert_eq!(queue.recv().await, Some(100), "urgent first");
        assert_eq!(queue.recv().await, Some(0), "then bulk in order");

        // A receiver waiting on an empty queue is woken by a push.
        queue.recv().await;
        queue.recv().await;
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.recv().await }
        });
        tokio::task::yield_now().await;
        queue.push(URGENT, 7).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the push")
            .unwrap();
        assert_eq!(got, Some(7));
    }

    #[tokio::test]
    async fn closing_lets_receivers_drain_then_stop_and_refuses_pushes() {
        let queue = Arc::new(PriorityQueue::default());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.recv().await })
            })
            .collect();
        tokio::task::yield_now().await;
        queue.close();
        for waiter in waiters {
            let got = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("every waiter woken by the close")
                .unwrap();
            assert_eq!(got, None::<u32>);
        }

        let queue = PriorityQueue::default();
        queue.push(BULK, 1).unwrap();
        queue.push(URGENT, 2).unwrap();
        queue.close();
        assert_eq!(
            queue.push(URGENT, 3),
            Err(3),
            "a closed queue takes nothing"
        );
        assert_eq!(queue.recv().await, Some(2), "what was queued still drains");
        assert_eq!(queue.recv().await, Some(1));
        assert_eq!(queue.recv().await, None);
    }
}
