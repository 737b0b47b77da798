//! Named crash points for crash-safety tests. With
//! `STRATA_CRASH_AT=<point>[,<point>...]` in its environment, the process
//! sends itself SIGKILL on reaching one of those points: a `kill -9` aimed
//! between two exact steps (upload and mark, copy and mark...), which a
//! signal from outside cannot hit reliably. Without the variable a point
//! costs one comparison against an empty list.

use std::sync::LazyLock;

static ARMED: LazyLock<Vec<String>> = LazyLock::new(|| {
    std::env::var("STRATA_CRASH_AT")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
});

/// Kills this process with SIGKILL if `point` is armed.
pub fn crash_point(point: &str) {
    if ARMED.iter().any(|p| p == point) {
        tracing::error!(
            point,
            "crash point reached (STRATA_CRASH_AT): killing this process with SIGKILL"
        );
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
