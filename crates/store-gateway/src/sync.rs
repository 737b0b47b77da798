//! [`BlockSync`]: which blocks this store-gateway owns, loaded. Every sync
//! interval it reads each tenant's bucket index (both signals), keeps the
//! blocks the ring gives it and loads the new ones into its cache (label
//! file and data-file footer); blocks it no longer owns are dropped from
//! its set and age out of the cache. A gateway runs one sync before it
//! turns ACTIVE, so queriers never ask it for blocks it has not loaded.
//!
//! A block is kept while this gateway is among its owners either as the
//! ring is now for queriers (ACTIVE and LEAVING gateways) or as it will be
//! once joining gateways are ACTIVE: while a new gateway loads its share,
//! the old owners still serve it warm.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use parking_lot::Mutex;
use strata_ring::{InstanceState, Ring, RingView, block_key};
use strata_storage::{BlockCatalog, BlockReader, Signal, StorageError};
use tokio::sync::watch;

use crate::client::owners;
use crate::metrics::{BLOCK_LOADS, OWNED_BLOCKS, SYNCS};

/// Settings of a gateway's ownership sync.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// This gateway's ring instance id.
    pub instance_id: String,
    /// Gateways owning each block.
    pub replication_factor: usize,
    /// Time between syncs.
    pub interval: Duration,
}

/// The blocks this gateway owns, loaded into its cache.
pub struct BlockSync {
    ring: Arc<Ring>,
    cfg: SyncConfig,
    /// Where tenants are listed.
    store: Arc<dyn ObjectStore>,
    /// Each tenant's blocks of one signal (from the bucket index).
    catalogs: [(Signal, Arc<BlockCatalog>); 2],
    /// The gateway's cached reader, which loading fills.
    reader: Arc<BlockReader>,
    /// (tenant, signal, block ULID) of the blocks owned and loaded.
    loaded: Mutex<HashSet<(String, Signal, String)>>,
}

impl BlockSync {
    /// A sync of the blocks in `metrics` and `logs` (listed through the
    /// uncached `store`, since bucket indexes change) loaded with `reader`.
    pub fn new(
        ring: Arc<Ring>,
        cfg: SyncConfig,
        store: Arc<dyn ObjectStore>,
        metrics: Arc<BlockCatalog>,
        logs: Arc<BlockCatalog>,
        reader: Arc<BlockReader>,
    ) -> Self {
        Self {
            ring,
            cfg,
            store,
            catalogs: [(Signal::Metrics, metrics), (Signal::Logs, logs)],
            reader,
            loaded: Mutex::default(),
        }
    }

    /// Whether this gateway owns block `ulid` of `tenant` (see the module doc).
    fn owns(&self, view: &RingView, tenant: &str, ulid: &str, rf: usize) -> bool {
        let me = |set: Vec<usize>| {
            set.into_iter()
                .any(|i| view.instances()[i].id == self.cfg.instance_id)
        };
        let once_joined = view.replicas(block_key(tenant, ulid), rf, |i| {
            i.state != InstanceState::Left
        });
        me(once_joined) || me(owners(view, tenant, ulid, rf))
    }

    /// One sync; answers how many blocks of each signal this gateway owns.
    pub async fn sync(&self) -> Result<[usize; 2], StorageError> {
        let result = self.sync_inner().await;
        SYNCS
            .with_label_values(&[if result.is_ok() { "ok" } else { "error" }])
            .inc();
        result
    }

    async fn sync_inner(&self) -> Result<[usize; 2], StorageError> {
        let listed =
            self.store
                .list_with_delimiter(None)
                .await
                .map_err(|e| StorageError::Object {
                    path: String::new(),
                    source: e,
                })?;
        let tenants: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p: &ObjectPath| strata_storage::block::tenant_of_listing(p))
            .collect();
        let view = self.ring.store_gateways();
        let rf = view.effective_rf(self.cfg.replication_factor);
        let mut owned = HashSet::new();
        let mut counts = [0usize; 2];
        for tenant in &tenants {
            for (k, (signal, catalog)) in self.catalogs.iter().enumerate() {
                for meta in catalog.blocks(tenant, i64::MIN, i64::MAX).await? {
                    if !self.owns(&view, tenant, &meta.ulid, rf) {
                        continue;
                    }
                    let key = (tenant.clone(), *signal, meta.ulid.clone());
                    if !self.loaded.lock().contains(&key) {
                        match self.reader.warm(*signal, tenant, &meta).await {
                            Ok(()) => BLOCK_LOADS.with_label_values(&["ok"]).inc(),
                            Err(e) => {
                                // Still served (read on demand); loaded next sync.
                                BLOCK_LOADS.with_label_values(&["error"]).inc();
                                tracing::warn!(tenant, block = %meta.ulid, error = %e, "loading a block failed");
                                continue;
                            }
                        }
                    }
                    owned.insert(key);
                    counts[k] += 1;
                }
            }
        }
        *self.loaded.lock() = owned;
        OWNED_BLOCKS
            .with_label_values(&["metrics"])
            .set(counts[0] as i64);
        OWNED_BLOCKS
            .with_label_values(&["logs"])
            .set(counts[1] as i64);
        Ok(counts)
    }

    /// The blocks owned and loaded, by tenant: (metric blocks, log blocks).
    pub fn owned_by_tenant(&self) -> BTreeMap<String, (usize, usize)> {
        let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (tenant, signal, _) in self.loaded.lock().iter() {
            let counts = out.entry(tenant.clone()).or_default();
            match signal {
                Signal::Metrics => counts.0 += 1,
                Signal::Logs => counts.1 += 1,
            }
        }
        out
    }

    /// Syncs every interval until `shutdown`, and at once when the
    /// store-gateways of the ring change.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut ring = self.ring.subscribe();
        let mut members = gateway_members(&self.ring.store_gateways());
        // A deadline, not a fresh sleep per wake-up: heartbeats change the
        // ring more often than the interval.
        let mut next = tokio::time::Instant::now() + self.cfg.interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                changed = ring.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = gateway_members(&self.ring.store_gateways());
                    if now == members {
                        continue;
                    }
                    members = now;
                }
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "store-gateway block sync failed");
            }
            next = tokio::time::Instant::now() + self.cfg.interval;
        }
    }
}

/// The gateways and their states: what ownership depends on (heartbeats
/// change the ring every few seconds and do not).
fn gateway_members(view: &RingView) -> Vec<(String, InstanceState)> {
    view.instances()
        .iter()
        .map(|i| (i.id.clone(), i.state))
        .collect()
}
