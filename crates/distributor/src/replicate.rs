//! Replication of a validated batch (series or log streams): each item
//! goes to the replicas the ring picks for `hash(tenant, labels)`, all
//! replicas are written in parallel, and the push is acknowledged once every
//! item is durable on a quorum of them. An item that cannot reach its quorum
//! fails the whole push with a 5xx, so the sender retries and nothing
//! unreplicated is ever acknowledged; replicas still in flight finish in
//! the background.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tracing::Instrument;

use strata_ingester_client::{ClientError, IngesterClient, RejectReason, Rejected};
use strata_model::{Labels, SeriesBatch};
use strata_ring::shard_key;

use crate::{Distributor, PushError};

fn unavailable(e: impl std::fmt::Display) -> PushError {
    PushError::Unavailable(format!("cannot replicate the write: {e}"))
}

/// Items that go to the replicas of their label set's hash.
pub(crate) trait Replicated: Send + Sync + 'static {
    fn len(&self) -> usize;
    fn label_hash(&self, i: usize) -> u64;
}

impl<T: Send + Sync + 'static> Replicated for Vec<(Labels, T)> {
    fn len(&self) -> usize {
        self.len()
    }

    fn label_hash(&self, i: usize) -> u64 {
        self[i].0.hash64()
    }
}

impl Replicated for SeriesBatch {
    fn len(&self) -> usize {
        self.len()
    }

    fn label_hash(&self, i: usize) -> u64 {
        // Computed once when the series joined the batch.
        self.get(i).hash64()
    }
}

impl Distributor {
    /// One ingester's share of a tenant-wide limit: each holds about RF/n of
    /// the tenant's series or streams (Mimir's rule); 0 stays unlimited.
    pub(crate) fn ingester_share(&self, global: usize) -> usize {
        let view = self.ring.ingesters();
        let n = view.instances().len();
        if global == 0 || n == 0 {
            return global;
        }
        let rf = view.effective_rf(self.ring.config().replication_factor);
        (global * rf).div_ceil(n)
    }

    /// Replicates what travels alongside series (metadata, exemplars):
    /// `send` pushes one ingester's positions of `batch`; nothing comes
    /// back per item.
    pub(crate) async fn replicate_alongside<T, F, Fut>(
        &self,
        tenant: &str,
        batch: Vec<(Labels, T)>,
        send: F,
    ) -> Result<(), PushError>
    where
        T: Send + Sync + 'static,
        F: Fn(IngesterClient, String, Arc<Vec<(Labels, T)>>, Arc<Vec<u32>>) -> Fut,
        Fut: Future<Output = Result<(), ClientError>> + Send + 'static,
    {
        let owned_tenant = tenant.to_string();
        self.replicate(tenant, Arc::new(batch), |client, batch, indexes| {
            let pushed = send(client, owned_tenant.clone(), batch, indexes);
            async move { pushed.await.map(|()| Vec::<Rejected<RejectReason>>::new()) }
        })
        .await
        .map(|_| ())
    }

    /// Writes `batch` to the ring's ingesters with `send` (one call per
    /// ingester with the positions of its items) and waits for a quorum per
    /// item. Returns the rejections, one per rejected item.
    pub(crate) async fn replicate<B, R, F, Fut>(
        &self,
        tenant: &str,
        batch: Arc<B>,
        send: F,
    ) -> Result<Vec<Rejected<R>>, PushError>
    where
        B: Replicated,
        R: Send + 'static,
        F: Fn(IngesterClient, Arc<B>, Arc<Vec<u32>>) -> Fut,
        Fut: Future<Output = Result<Vec<Rejected<R>>, ClientError>> + Send + 'static,
    {
        let view = self.ring.ingesters();
        let cfg = self.ring.config();
        let now = strata_ring::now_ms();
        let timeout = cfg.heartbeat_timeout.as_millis() as i64;
        let rf = view.effective_rf(cfg.replication_factor);
        let n = batch.len();
        let mut per_instance: Vec<Vec<u32>> = vec![Vec::new(); view.instances().len()];
        let mut min_success: Vec<u8> = Vec::with_capacity(n);
        let mut max_failures: Vec<u8> = Vec::with_capacity(n);
        if view.instances().len() == 1 {
            // One ingester (a single-process cluster): every item has the
            // same replica set; skip hashing.
            let set = view.write_set(0, rf, now, timeout).map_err(unavailable)?;
            per_instance[set.instances[0]] = (0..n as u32).collect();
            min_success.resize(n, 1);
            max_failures.resize(n, 0);
        } else {
            for i in 0..n {
                let set = view
                    .write_set(shard_key(tenant, batch.label_hash(i)), rf, now, timeout)
                    .map_err(unavailable)?;
                for inst in &set.instances {
                    per_instance[*inst].push(i as u32);
                }
                min_success.push(set.min_success as u8);
                max_failures.push((set.instances.len() - set.min_success) as u8);
            }
        }
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
            let indexes = Arc::new(indexes);
            let call = send(client, batch.clone(), indexes.clone());
            let tx = tx.clone();
            // In a span of the request's trace: the call carries its context.
            let span = tracing::info_span!("ingester_call", ingester = %inst.id);
            tokio::spawn(
                async move {
                    let r = call.await;
                    let _ = tx.send((indexes, r));
                }
                .instrument(span),
            );
        }
        drop(tx);
        let mut ok = vec![0u8; n];
        let mut failed = vec![0u8; n];
        let mut reached = 0usize;
        let mut rejected: HashMap<usize, Rejected<R>> = HashMap::new();
        let mut last_error: Option<ClientError> = None;
        while reached < n {
            let Some((indexes, r)) = rx.recv().await else {
                break;
            };
            match r {
                Ok(rejections) => {
                    for i in indexes.iter() {
                        let i = *i as usize;
                        ok[i] += 1;
                        if ok[i] == min_success[i] {
                            reached += 1;
                        }
                    }
                    for r in rejections {
                        rejected.entry(r.index).or_insert(r);
                    }
                }
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "ingester push failed");
                    for i in indexes.iter() {
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
        let mut rejected: Vec<Rejected<R>> = rejected.into_values().collect();
        rejected.sort_by_key(|r| r.index);
        Ok(rejected)
    }
}
