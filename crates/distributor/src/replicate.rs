//! Replication of a validated batch: each series goes to the replicas the
//! ring picks for `hash(tenant, labels)`, all replicas are written in
//! parallel, and the push is acknowledged once every series is durable on
//! a quorum of them. A series that cannot reach its quorum fails the whole
//! push with a 5xx, so the sender retries and nothing unreplicated is ever
//! acknowledged; replicas still in flight finish in the background.

use std::collections::HashMap;
use std::sync::Arc;

use strata_ingester::grpc::{ClientError, SharedBatch};
use strata_ingester::{PushLimits, PushOutcome, RejectedSeries};
use strata_model::{Labels, Sample};
use strata_ring::shard_key;

use crate::{Distributor, PushError};

fn unavailable(e: impl std::fmt::Display) -> PushError {
    PushError::Unavailable(format!("cannot replicate the write: {e}"))
}

impl Distributor {
    /// Writes `batch` to the ring's ingesters and waits for a quorum per series.
    pub(crate) async fn replicate(
        &self,
        tenant: &str,
        batch: Vec<(Labels, Vec<Sample>)>,
        mut limits: PushLimits,
    ) -> Result<PushOutcome, PushError> {
        let view = self.ring.ingesters();
        let cfg = self.ring.config();
        let now = strata_ring::now_ms();
        let timeout = cfg.heartbeat_timeout.as_millis() as i64;
        let rf = view.effective_rf(cfg.replication_factor);
        let n_instances = view.instances().len();
        // The tenant's series limit is global: each ingester holds about
        // rf/n of the series, so it enforces that share (Mimir's rule).
        if limits.max_series > 0 && n_instances > 0 {
            limits.max_series = (limits.max_series * rf).div_ceil(n_instances);
        }
        let n = batch.len();
        let mut per_instance: Vec<Vec<u32>> = vec![Vec::new(); n_instances];
        let mut min_success: Vec<u8> = Vec::with_capacity(n);
        let mut max_failures: Vec<u8> = Vec::with_capacity(n);
        if n_instances == 1 {
            // One ingester (a single-process cluster): every series has the
            // same replica set; skip hashing.
            let set = view.write_set(0, rf, now, timeout).map_err(unavailable)?;
            per_instance[set.instances[0]] = (0..n as u32).collect();
            min_success.resize(n, 1);
            max_failures.resize(n, 0);
        } else {
            for (i, (labels, _)) in batch.iter().enumerate() {
                let set = view
                    .write_set(shard_key(tenant, labels.hash64()), rf, now, timeout)
                    .map_err(unavailable)?;
                for inst in &set.instances {
                    per_instance[*inst].push(i as u32);
                }
                min_success.push(set.min_success as u8);
                max_failures.push((set.instances.len() - set.min_success) as u8);
            }
        }
        let total_samples: usize = batch.iter().map(|(_, s)| s.len()).sum();
        let batch: SharedBatch = Arc::new(batch);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (idx, indexes) in per_instance.into_iter().enumerate() {
            if indexes.is_empty() {
                continue;
            }
            let inst = &view.instances()[idx];
            let client = self
                .ingesters
                .client(&inst.id, &inst.grpc_addr)
                .map_err(unavailable)?;
            let tx = tx.clone();
            let batch = batch.clone();
            let tenant = tenant.to_string();
            tokio::spawn(async move {
                let r = client.push(&tenant, &batch, &indexes, limits).await;
                let _ = tx.send((indexes, r));
            });
        }
        drop(tx);
        let mut ok = vec![0u8; n];
        let mut failed = vec![0u8; n];
        let mut reached = 0usize;
        let mut rejected: HashMap<usize, RejectedSeries> = HashMap::new();
        let mut last_error: Option<ClientError> = None;
        while reached < n {
            let Some((indexes, r)) = rx.recv().await else {
                break;
            };
            match r {
                Ok(outcome) => {
                    for i in &indexes {
                        let i = *i as usize;
                        ok[i] += 1;
                        if ok[i] == min_success[i] {
                            reached += 1;
                        }
                    }
                    for r in outcome.rejected {
                        rejected.entry(r.index).or_insert(r);
                    }
                }
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "ingester push failed");
                    for i in &indexes {
                        let i = *i as usize;
                        failed[i] += 1;
                        if failed[i] > max_failures[i] {
                            return Err(match e {
                                ClientError::Unavailable { .. } => unavailable(e),
                                ClientError::Failed { .. } => PushError::Internal(e.to_string()),
                            });
                        }
                    }
                    last_error = Some(e);
                }
            }
        }
        if reached < n {
            return Err(unavailable(last_error.map_or_else(
                || "replicas did not answer".to_string(),
                |e| e.to_string(),
            )));
        }
        let mut rejected: Vec<RejectedSeries> = rejected.into_values().collect();
        rejected.sort_by_key(|r| r.index);
        let rejected_samples: usize = rejected.iter().map(|r| r.count).sum();
        Ok(PushOutcome {
            accepted: total_samples.saturating_sub(rejected_samples),
            rejected,
        })
    }
}
