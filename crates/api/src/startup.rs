//! Where a process is in its start-up (and shut-down), for `/ready`: an
//! orchestrator sees not only that it is not ready but what it waits for
//! (the ring, a WAL replay and how far it got).

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// Readiness and, until ready, the step under way.
pub struct Startup {
    ready: AtomicBool,
    phase: Mutex<String>,
}

impl Startup {
    /// Not ready, at `phase`.
    pub fn new(phase: impl Into<String>) -> Self {
        Self {
            ready: AtomicBool::new(false),
            phase: Mutex::new(phase.into()),
        }
    }

    /// The step under way, shown by `/ready` until the process is ready.
    pub fn set_phase(&self, phase: impl Into<String>) {
        *self.phase.lock() = phase.into();
    }

    /// Serving (or, with `false`, stopping: `phase` says so).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// True once the process serves.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The step under way.
    pub fn phase(&self) -> String {
        self.phase.lock().clone()
    }
}
