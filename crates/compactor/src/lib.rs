//! The compactor. This first part owns retention: per tenant and per signal
//! (`compactor_blocks_retention_period` for metrics, `logs_retention_period`
//! for logs), a block whose whole time range is past retention gets a
//! `deletion-mark.json` (Mimir's format), and blocks marked longer than
//! `-compactor.deletion-delay` ago are deleted: `meta.json` first, so no
//! reader lists a half-deleted block, then the data files, then the mark.
//! The delay lets queries that listed the block before it was marked finish.
//! Queriers already hide data past retention, so marking changes no answer.
//!
//! It also writes each tenant's bucket index (`<tenant>/bucket-index.json.gz`,
//! blocks of both signals and deletion marks) every compaction interval and
//! after deleting blocks; queriers read it instead of listing the bucket.
//!
//! Merging and de-duplicating blocks and tiers come next (issue 7).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use strata_limits::{Limits, Overrides};
use strata_storage::block::{block_file, signal_prefix};
use strata_storage::bucket_index::{
    BUCKET_INDEX_VERSION, BucketIndex, IndexedBlock, IndexedMark, write_bucket_index,
};
use strata_storage::{BlockReader, Signal};

/// Compactor settings, named as Mimir's `compactor` block.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CompactorConfig {
    /// How often retention is applied (and, later, blocks compacted).
    #[serde(with = "strata_model::humantime_serde")]
    pub compaction_interval: Duration,
    /// How long a block stays after its deletion mark before it is deleted.
    #[serde(with = "strata_model::humantime_serde")]
    pub deletion_delay: Duration,
    /// How often marked blocks past the deletion delay are deleted.
    #[serde(with = "strata_model::humantime_serde")]
    pub cleanup_interval: Duration,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            compaction_interval: Duration::from_secs(3600),
            deletion_delay: Duration::from_secs(12 * 3600),
            cleanup_interval: Duration::from_secs(15 * 60),
        }
    }
}

/// Errors of one compactor pass.
#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error("object store on {path}: {source}")]
    Store {
        path: String,
        source: object_store::Error,
    },
    #[error(transparent)]
    Storage(#[from] strata_storage::StorageError),
    #[error("deletion mark {path}: {source}")]
    Mark {
        path: String,
        source: serde_json::Error,
    },
}

fn store_err(path: &ObjectPath, source: object_store::Error) -> CompactorError {
    CompactorError::Store {
        path: path.to_string(),
        source,
    }
}

/// `deletion-mark.json`, as Mimir and Thanos write it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeletionMark {
    pub id: String,
    /// Unix seconds when the block was marked.
    pub deletion_time: i64,
    pub version: u32,
}

static MARKED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_compactor_blocks_marked_for_deletion_total",
            "Blocks marked for deletion, by signal and reason.",
        ),
        &["signal", "reason"],
    )
    .expect("valid metric")
});
static DELETED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_compactor_blocks_cleaned_total",
            "Blocks deleted after their deletion delay, by signal.",
        ),
        &["signal"],
    )
    .expect("valid metric")
});

/// Registers the compactor's metrics.
pub fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    r.register(Box::new(MARKED.clone()))?;
    r.register(Box::new(DELETED.clone()))?;
    Ok(())
}

const MARK_FILE: &str = "deletion-mark.json";
const SIGNALS: [Signal; 2] = [Signal::Metrics, Signal::Logs];

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    pub marked: usize,
    pub deleted: usize,
}

/// The compactor of this process.
pub struct Compactor {
    cfg: CompactorConfig,
    store: Arc<dyn ObjectStore>,
    reader: Arc<BlockReader>,
    overrides: Arc<Overrides>,
}

impl Compactor {
    /// A compactor over `store` under each tenant's limits.
    pub fn new(
        cfg: CompactorConfig,
        store: Arc<dyn ObjectStore>,
        reader: Arc<BlockReader>,
        overrides: Arc<Overrides>,
    ) -> Self {
        Self {
            cfg,
            store,
            reader,
            overrides,
        }
    }

    /// Tenants with any data in the bucket.
    async fn tenants(&self) -> Result<Vec<String>, CompactorError> {
        let listed = self
            .store
            .list_with_delimiter(None)
            .await
            .map_err(|e| store_err(&ObjectPath::from(""), e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    async fn read_mark(
        &self,
        signal: Signal,
        tenant: &str,
        ulid: &str,
    ) -> Result<Option<DeletionMark>, CompactorError> {
        let path = block_file(signal, tenant, ulid, MARK_FILE);
        match self.store.get(&path).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| store_err(&path, e))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| CompactorError::Mark {
                        path: path.to_string(),
                        source,
                    })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(&path, e)),
        }
    }

    /// Marks every block past its tenant's retention (per signal).
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, CompactorError> {
        let mut marked = 0;
        for tenant in self.tenants().await? {
            let limits = self.overrides.for_tenant(&tenant);
            for signal in SIGNALS {
                let retention = match signal {
                    Signal::Metrics => limits.compactor_blocks_retention_period,
                    Signal::Logs => limits.logs_retention_period,
                };
                let floor = Limits::retention_floor_ms(retention, now_ms);
                if floor == i64::MIN {
                    continue;
                }
                for meta in self.reader.list_blocks(signal, &tenant).await? {
                    // max_time is exclusive: the whole block is older than the floor.
                    if meta.max_time > floor
                        || self.read_mark(signal, &tenant, &meta.ulid).await?.is_some()
                    {
                        continue;
                    }
                    let mark = DeletionMark {
                        id: meta.ulid.clone(),
                        deletion_time: now_ms.div_euclid(1000),
                        version: 1,
                    };
                    let path = block_file(signal, &tenant, &meta.ulid, MARK_FILE);
                    let body =
                        serde_json::to_vec(&mark).map_err(|source| CompactorError::Mark {
                            path: path.to_string(),
                            source,
                        })?;
                    self.store
                        .put(&path, PutPayload::from(bytes::Bytes::from(body)))
                        .await
                        .map_err(|e| store_err(&path, e))?;
                    MARKED.with_label_values(&[signal.dir(), "retention"]).inc();
                    tracing::info!(tenant, signal = signal.dir(), ulid = %meta.ulid,
                        max_time = meta.max_time, "block past retention marked for deletion");
                    marked += 1;
                }
            }
        }
        Ok(marked)
    }

    /// Rewrites every tenant's bucket index from the bucket: blocks of both
    /// signals and their deletion marks. Queriers read it instead of listing.
    pub async fn write_bucket_indexes(&self, now_ms: i64) -> Result<usize, CompactorError> {
        let tenants = self.tenants().await?;
        for tenant in &tenants {
            let mut index = BucketIndex {
                version: BUCKET_INDEX_VERSION,
                updated_at: now_ms.div_euclid(1000),
                ..BucketIndex::default()
            };
            for signal in SIGNALS {
                for meta in self.reader.list_blocks(signal, tenant).await? {
                    if let Some(mark) = self.read_mark(signal, tenant, &meta.ulid).await? {
                        index.block_deletion_marks.push(IndexedMark {
                            signal: signal.dir().to_string(),
                            id: mark.id,
                            deletion_time: mark.deletion_time,
                        });
                    }
                    index.blocks.push(IndexedBlock {
                        signal: signal.dir().to_string(),
                        meta,
                    });
                }
            }
            write_bucket_index(self.store.as_ref(), tenant, &index).await?;
        }
        Ok(tenants.len())
    }

    /// Deletes blocks whose deletion mark is older than the deletion delay.
    pub async fn cleanup(&self, now_ms: i64) -> Result<usize, CompactorError> {
        let delay_s = self.cfg.deletion_delay.as_secs() as i64;
        let mut deleted = 0;
        for tenant in self.tenants().await? {
            for signal in SIGNALS {
                let prefix = signal_prefix(signal, &tenant);
                let listed = self
                    .store
                    .list_with_delimiter(Some(&prefix))
                    .await
                    .map_err(|e| store_err(&prefix, e))?;
                for dir in listed.common_prefixes {
                    let Some(ulid) = dir.filename() else { continue };
                    let Some(mark) = self.read_mark(signal, &tenant, ulid).await? else {
                        continue;
                    };
                    if now_ms.div_euclid(1000) - mark.deletion_time < delay_s {
                        continue;
                    }
                    self.delete_block(signal, &tenant, ulid).await?;
                    DELETED.with_label_values(&[signal.dir()]).inc();
                    tracing::info!(tenant, signal = signal.dir(), ulid, "marked block deleted");
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    async fn delete_block(
        &self,
        signal: Signal,
        tenant: &str,
        ulid: &str,
    ) -> Result<(), CompactorError> {
        let meta = block_file(signal, tenant, ulid, "meta.json");
        match self.store.delete(&meta).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(&meta, e)),
        }
        let dir = ObjectPath::from(format!("{tenant}/{}/{ulid}", signal.dir()));
        let files: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| store_err(&dir, e))?;
        // The mark goes last: a crash in between leaves a marked block that
        // the next cleanup finishes.
        let mark = block_file(signal, tenant, ulid, MARK_FILE);
        for f in files.iter().filter(|f| f.location != mark) {
            match self.store.delete(&f.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(&f.location, e)),
            }
        }
        match self.store.delete(&mark).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(&mark, e)),
        }
    }

    /// Applies retention every compaction interval and cleans up every
    /// cleanup interval until `shutdown` fires.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut retention = tokio::time::interval(self.cfg.compaction_interval);
        let mut cleanup = tokio::time::interval(self.cfg.cleanup_interval);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        cleanup.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = retention.tick() => {
                    if let Err(e) = self.apply_retention(now_ms()).await {
                        tracing::error!(error = %e, "applying retention failed; will retry");
                    }
                    if let Err(e) = self.write_bucket_indexes(now_ms()).await {
                        tracing::error!(error = %e, "writing bucket indexes failed; will retry");
                    }
                }
                _ = cleanup.tick() => {
                    match self.cleanup(now_ms()).await {
                        // Deleted blocks leave the index at once.
                        Ok(n) if n > 0 => {
                            if let Err(e) = self.write_bucket_indexes(now_ms()).await {
                                tracing::error!(error = %e, "writing bucket indexes failed; will retry");
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "deleting marked blocks failed; will retry"),
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_model::Labels;
    use strata_model::logs::LogEntry;
    use strata_storage::{encode_block, encode_log_block, upload_block, upload_log_block};

    #[tokio::test]
    async fn retention_marks_then_deletes_per_signal() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        const H: i64 = 3_600_000;
        let now = 100 * H;
        let labels = Labels::from_pairs([("__name__", "m")]);
        for (start, tenant) in [(90 * H, "t"), (98 * H, "t"), (90 * H, "keep")] {
            let b = encode_block(
                vec![(
                    labels.clone(),
                    vec![strata_model::Sample { t: start, v: 1.0 }],
                )],
                start,
                start + 2 * H,
            )
            .unwrap();
            upload_block(store.as_ref(), tenant, &b).await.unwrap();
            let l = encode_log_block(
                &[(
                    Labels::from_pairs([("app", "a")]),
                    vec![LogEntry {
                        ts: start * 1_000_000,
                        line: "x".into(),
                        metadata: Labels::default(),
                    }],
                )],
                start,
                start + 2 * H,
            )
            .unwrap();
            upload_log_block(store.as_ref(), tenant, &l).await.unwrap();
        }
        let overrides = Arc::new(Overrides::new(Limits::default()));
        overrides
            .apply_runtime_config(
                "overrides:\n  t:\n    compactor_blocks_retention_period: 5h\n    logs_retention_period: 1h\n",
            )
            .unwrap();
        let reader = Arc::new(BlockReader::new(store.clone()));
        let c = Compactor::new(
            CompactorConfig {
                deletion_delay: Duration::from_secs(3600),
                ..CompactorConfig::default()
            },
            store.clone(),
            reader.clone(),
            overrides,
        );
        // Metrics: the 90h block ends (92h) before now - 5h; logs: it ends
        // before now - 1h too, the 98h block (ending at 100h) does not.
        assert_eq!(c.apply_retention(now).await.unwrap(), 2);
        assert_eq!(c.apply_retention(now).await.unwrap(), 0, "marks once");
        assert_eq!(
            c.cleanup(now + 1000).await.unwrap(),
            0,
            "deletion delay holds"
        );
        assert_eq!(
            reader
                .list_blocks(Signal::Metrics, "t")
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(c.cleanup(now + H).await.unwrap(), 2);
        for signal in SIGNALS {
            let left = reader.list_blocks(signal, "t").await.unwrap();
            assert_eq!(left.len(), 1);
            assert_eq!(left[0].min_time, 98 * H);
            // Nothing of the deleted block is left behind.
            let files: Vec<_> = store
                .list(Some(&signal_prefix(signal, "t")))
                .try_collect()
                .await
                .unwrap();
            assert_eq!(files.len(), 3, "{files:?}");
        }
        // The bucket index lists what is left, and the catalog reads it.
        assert_eq!(c.write_bucket_indexes(now + H).await.unwrap(), 2);
        let index = strata_storage::bucket_index::read_bucket_index(store.as_ref(), "t")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(index.blocks_of(Signal::Metrics).len(), 1);
        assert_eq!(index.blocks_of(Signal::Logs).len(), 1);
        assert!(index.block_deletion_marks.is_empty());
        // The tenant without retention keeps everything.
        assert_eq!(
            reader
                .list_blocks(Signal::Metrics, "keep")
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            reader
                .list_blocks(Signal::Logs, "keep")
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
