//! Per-tenant write generations: a counter each tenant's writes bump when
//! they carry data older than a horizon. The query-frontend's results cache
//! keys cached answers by it, so a write of old data (backfill, late
//! logs) in this process makes the tenant's cached answers unused at once
//! instead of stale until evicted. Shared by the distributor and the
//! query-frontend of one process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;

/// The generations (see the module doc).
#[derive(Default)]
pub struct WriteGenerations {
    /// Data older than `now - horizon` bumps its tenant's generation, ms.
    horizon_ms: AtomicI64,
    generations: Mutex<HashMap<String, u64>>,
}

impl WriteGenerations {
    /// Generations whose bump horizon is `horizon_ms` before now.
    pub fn new(horizon_ms: i64) -> Self {
        Self {
            horizon_ms: AtomicI64::new(horizon_ms),
            generations: Mutex::default(),
        }
    }

    /// Records that `tenant` was written data as old as `oldest_ms`.
    pub fn record(&self, tenant: &str, oldest_ms: i64) {
        let edge = crate::now_ms().saturating_sub(self.horizon_ms.load(Ordering::Relaxed));
        if oldest_ms < edge {
            *self
                .generations
                .lock()
                .entry(tenant.to_string())
                .or_default() += 1;
        }
    }

    /// The tenant's generation.
    pub fn generation(&self, tenant: &str) -> u64 {
        self.generations.lock().get(tenant).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_data_moves_a_generation() {
        let g = WriteGenerations::new(600_000);
        let now = crate::now_ms();
        g.record("t", now - 1_000);
        assert_eq!(g.generation("t"), 0);
        g.record("t", now - 3_600_000);
        assert_eq!(g.generation("t"), 1);
        assert_eq!(g.generation("u"), 0);
    }
}
