//! The evaluation loop: every group on its interval at aligned timestamps;
//! a missed evaluation is counted, never replayed in a burst.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use strata_model::now_ms;

use crate::{EVALUATION_FAILURES, EVALUATIONS, GroupState, Ruler};

impl Ruler {
    /// Evaluates groups when due, and re-reads storage every poll interval,
    /// until `shutdown` changes.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut last_sync = std::time::Instant::now() - self.cfg.poll_interval;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            // Rulers joining or dying move groups: re-split at once.
            let resplit = self.shard.as_ref().is_some_and(|s| {
                last_sync.elapsed() >= Duration::from_secs(1)
                    && *self.shard_members.lock() != s.members()
            });
            if resplit || last_sync.elapsed() >= self.cfg.poll_interval {
                if let Err(e) = self.sync().await {
                    tracing::error!(error = %e, "loading rule groups failed; keeping the loaded ones");
                }
                last_sync = std::time::Instant::now();
            }
            let now = now_ms();
            let due: Vec<(Arc<GroupState>, i64)> = self
                .groups
                .read()
                .values()
                .filter_map(|g| {
                    let mut next = g.next_eval.lock();
                    if now < *next {
                        return None;
                    }
                    let interval = g.group.interval.as_millis() as i64;
                    let ts = *next;
                    // Skip, and count, evaluations missed while the ruler was
                    // busy or stopped: never a burst of catch-up evaluations.
                    let missed = (now - ts) / interval;
                    if missed > 0 {
                        EVALUATIONS
                            .with_label_values(&[g.tenant.as_str(), "missed"])
                            .inc_by(missed as u64);
                    }
                    let ts = ts + missed * interval;
                    *next = ts + interval;
                    if g.running.swap(true, Ordering::AcqRel) {
                        EVALUATIONS
                            .with_label_values(&[g.tenant.as_str(), "missed"])
                            .inc();
                        return None;
                    }
                    Some((g.clone(), ts))
                })
                .collect();
            for (g, ts) in due {
                let this = self.clone();
                tokio::spawn(async move {
                    // A fault in one group's evaluation fails that
                    // evaluation; the group runs again at its next interval.
                    let run = AssertUnwindSafe(this.evaluate_group(&g, ts)).catch_unwind();
                    if run.await.is_err() {
                        tracing::error!(
                            tenant = g.tenant,
                            group = g.group.source.name,
                            "rule group evaluation panicked; counted as failed"
                        );
                        EVALUATION_FAILURES
                            .with_label_values(&[g.tenant.as_str()])
                            .inc();
                        EVALUATIONS
                            .with_label_values(&[g.tenant.as_str(), "failed"])
                            .inc();
                    }
                    g.running.store(false, Ordering::Release);
                });
            }
        }
    }

    pub(crate) async fn evaluate_group(&self, g: &GroupState, ts: i64) {
        let started = std::time::Instant::now();
        // The tenant's failure counters exist from its first evaluation on,
        // so that rate() sees their first increment.
        EVALUATION_FAILURES.with_label_values(&[g.tenant.as_str()]);
        for outcome in ["failed", "missed"] {
            EVALUATIONS.with_label_values(&[g.tenant.as_str(), outcome]);
        }
        let query_ts = ts - g.group.query_offset.as_millis() as i64;
        let mut failed = false;
        for (rule, state) in g.group.rules.iter().zip(&g.rules) {
            let rule_started = std::time::Instant::now();
            let res = self.evaluate_rule(g, rule, state, query_ts).await;
            let mut st = state.status.lock();
            st.last_evaluation = Some(ts);
            st.evaluation_seconds = rule_started.elapsed().as_secs_f64();
            match res {
                Ok(()) => {
                    st.health = "ok";
                    st.last_error = None;
                }
                Err(e) => {
                    failed = true;
                    EVALUATION_FAILURES
                        .with_label_values(&[g.tenant.as_str()])
                        .inc();
                    tracing::warn!(tenant = g.tenant, group = g.group.source.name, rule = rule.name(), error = %e, "rule evaluation failed");
                    st.health = "err";
                    st.last_error = Some(e);
                }
            }
        }
        *g.last_evaluation.lock() = Some((ts, started.elapsed().as_secs_f64()));
        EVALUATIONS
            .with_label_values(&[g.tenant.as_str(), if failed { "failed" } else { "success" }])
            .inc();
    }
}
