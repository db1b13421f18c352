//! What bounds a lead import (`POST /v1/campaigns/{id}/leads`, see
//! [`crate::routes`] `leads`) beyond its size: an import holds a pooled
//! Postgres connection, one transaction and a share lock on its campaign for as
//! long as its upload lasts, so neither how many run nor how slowly they arrive
//! is left to the client.
//!
//! - [`ImportSlots`]: at most `api.max_concurrent_imports_per_tenant` imports
//!   per tenant run at once **on this node** (the count lives in this process;
//!   with N nodes a tenant may run N times as many). Another answers 429
//!   `too_many_imports` before anything is read or opened. A slot is an RAII
//!   [`ImportSlot`]: it is given back however the import ends (answer, error,
//!   client gone, request timeout).
//! - [`UploadRate`]: the minimum upload rate. Over every window of
//!   `api.import_rate_window_ms` spent *waiting for the body* the client must
//!   send `api.import_min_bytes_per_sec` × the window; a client that trickles
//!   below is cut off with 408 `upload_too_slow` and its transaction rolls back.
//!   Time the import spends writing to Postgres is not counted against the
//!   client (it is not reading then, so the client cannot send).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use crate::error::AppError;
use crate::metrics::{self, Limit};

/// Running imports per tenant on this node.
pub struct ImportSlots {
    max: u32,
    running: Mutex<HashMap<Uuid, u32>>,
}

/// One running import's slot; given back when dropped.
pub struct ImportSlot {
    slots: Arc<ImportSlots>,
    tenant: Uuid,
}

impl ImportSlots {
    pub fn new(max_per_tenant: u32) -> Self {
        ImportSlots {
            max: max_per_tenant.max(1),
            running: Mutex::new(HashMap::new()),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, u32>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one more import of `tenant`, or 429 `too_many_imports` when
    /// it already runs the most it may.
    pub fn acquire(self: &Arc<Self>, tenant: Uuid) -> Result<ImportSlot, AppError> {
        let mut running = self.running();
        let count = running.entry(tenant).or_insert(0);
        if *count >= self.max {
            metrics::refused(Limit::ImportSlots);
            return Err(AppError::too_many_imports(self.max));
        }
        *count += 1;
        Ok(ImportSlot {
            slots: self.clone(),
            tenant,
        })
    }

    /// How many imports of `tenant` run now.
    pub fn running_for(&self, tenant: Uuid) -> u32 {
        self.running().get(&tenant).copied().unwrap_or(0)
    }
}

impl Drop for ImportSlot {
    fn drop(&mut self) {
        let mut running = self.slots.running();
        if let Some(count) = running.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                // Only tenants importing now have an entry: the map stays small.
                running.remove(&self.tenant);
            }
        }
    }
}

/// The minimum-rate check of one upload (see the module doc).
#[derive(Debug, Clone)]
pub struct UploadRate {
    min_bytes_per_sec: u64,
    window: Duration,
    /// Time spent waiting for the body in the current window.
    waited: Duration,
    /// Bytes received in the current window.
    bytes: u64,
}

impl UploadRate {
    /// `min_bytes_per_sec` = 0 turns the check off.
    pub fn new(min_bytes_per_sec: u64, window: Duration) -> Self {
        UploadRate {
            min_bytes_per_sec,
            window,
            waited: Duration::ZERO,
            bytes: 0,
        }
    }

    /// From `[api]`.
    pub fn from_config(config: &penguin_config::ApiConfig) -> Self {
        Self::new(
            config.import_min_bytes_per_sec,
            Duration::from_millis(config.import_rate_window_ms),
        )
    }

    /// The longest the next read may wait before the current window closes;
    /// `None` when the check is off.
    pub fn read_budget(&self) -> Option<Duration> {
        (self.min_bytes_per_sec > 0 && !self.window.is_zero())
            .then(|| self.window.saturating_sub(self.waited))
    }

    /// The bytes a whole window must bring.
    fn required(&self) -> u64 {
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        self.min_bytes_per_sec.saturating_mul(window_ms) / 1_000
    }

    /// Counts a read that waited `waited` and brought `bytes` (0 when the wait
    /// ran out). Fails (408 `upload_too_slow`) when a window closed with fewer
    /// bytes than it needs; a window that had enough starts the next one.
    pub fn record(&mut self, waited: Duration, bytes: usize) -> Result<(), AppError> {
        if self.read_budget().is_none() {
            return Ok(());
        }
        self.waited += waited;
        self.bytes = self.bytes.saturating_add(bytes as u64);
        if self.waited < self.window {
            return Ok(());
        }
        if self.bytes < self.required() {
            metrics::refused(Limit::UploadRate);
            return Err(AppError::upload_too_slow(format!(
                "the upload sent {} bytes in {} ms, under the minimum of {} bytes/s \
                 (api.import_min_bytes_per_sec); nothing was imported",
                self.bytes,
                self.window.as_millis(),
                self.min_bytes_per_sec
            )));
        }
        self.waited = Duration::ZERO;
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_tenant_and_given_back_on_drop() {
        let slots = Arc::new(ImportSlots::new(2));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let first = slots.acquire(a).unwrap();
        let second = slots.acquire(a).unwrap();
        let refused = slots.acquire(a).err().expect("a third is refused");
        assert_eq!(
            (refused.status.as_u16(), refused.code),
            (429, "too_many_imports")
        );
        let other = slots.acquire(b).expect("another tenant has its own");
        drop(first);
        assert_eq!(slots.running_for(a), 1);
        let again = slots.acquire(a).expect("a slot came back");
        drop((second, again, other));
        assert_eq!(slots.running_for(a), 0);
        assert!(slots.running().is_empty(), "idle tenants leave no entry");
    }

    const WINDOW: Duration = Duration::from_secs(10);

    #[test]
    fn a_window_with_enough_bytes_starts_the_next() {
        let mut rate = UploadRate::new(100, WINDOW); // 1,000 bytes per window
        assert_eq!(rate.read_budget(), Some(WINDOW));
        rate.record(Duration::from_secs(4), 600).unwrap();
        assert_eq!(rate.read_budget(), Some(Duration::from_secs(6)));
        rate.record(Duration::from_secs(6), 400).unwrap();
        assert_eq!(rate.read_budget(), Some(WINDOW), "a fresh window");
        // The wait runs out with enough bytes in: the next window starts.
        rate.record(Duration::from_secs(3), 2_000).unwrap();
        rate.record(Duration::from_secs(7), 0).unwrap();
        assert_eq!(rate.read_budget(), Some(WINDOW));
    }

    #[test]
    fn a_trickle_is_cut_off_when_its_window_closes() {
        let mut rate = UploadRate::new(100, WINDOW);
        for _ in 0..9 {
            rate.record(Duration::from_secs(1), 10).unwrap();
        }
        let error = rate.record(Duration::from_secs(1), 10).unwrap_err();
        assert_eq!(
            (error.status.as_u16(), error.code),
            (408, "upload_too_slow")
        );
        assert!(
            error.message.contains("100 bytes in 10000 ms"),
            "{}",
            error.message
        );
        // Silence is a trickle too.
        let mut silent = UploadRate::new(100, WINDOW);
        assert!(silent.record(WINDOW, 0).is_err());
    }

    #[test]
    fn zero_is_off() {
        let mut rate = UploadRate::new(0, WINDOW);
        assert_eq!(rate.read_budget(), None);
        rate.record(Duration::from_secs(3_600), 0).unwrap();
    }
}
