//! The compactor: one pass every compaction interval over the tenants this
//! process owns, each step in its own module:
//! - [`retention`]: blocks past the tenant's retention get a deletion mark
//!   ([`marks`]);
//! - [`compact`]: blocks of one aligned window merged into one (vertical:
//!   the RF copies and late blocks of one range; horizontal: 2h -> 12h ->
//!   24h), then the sources marked;
//! - [`tiers`]: old blocks moved to the warm store;
//! - [`index`]: each tenant's bucket index rewritten;
//! - [`cleanup`] (every cleanup interval): marked blocks deleted after the
//!   deletion delay, which lets queries that listed a block before it was
//!   marked finish, and abandoned partial uploads.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::{Deserialize, Serialize};
use strata_limits::Overrides;
use strata_model::now_ms;
use strata_storage::{BlockReader, Signal, Tier};

mod cleanup;
mod compact;
mod index;
mod marks;
mod retention;
mod tiers;

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
    /// How old an upload without `meta.json` (a partial block left by a
    /// crash) must be before its files are deleted (0: never).
    #[serde(with = "strata_model::humantime_serde")]
    pub partial_block_deletion_delay: Duration,
    /// Comma-separated block ranges, smallest (the ingesters' range) first:
    /// blocks are merged into blocks of each larger range once it is complete.
    pub block_ranges: String,
    /// Blocks whose newest sample is older move from the hot to the warm
    /// tier (when one is configured); `-blocks-storage.hot-max-age`.
    #[serde(with = "strata_model::humantime_serde")]
    pub hot_max_age: Duration,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            compaction_interval: Duration::from_secs(3600),
            deletion_delay: Duration::from_secs(12 * 3600),
            cleanup_interval: Duration::from_secs(15 * 60),
            partial_block_deletion_delay: Duration::from_secs(24 * 3600),
            block_ranges: "2h,12h,24h".into(),
            hot_max_age: Duration::from_secs(24 * 3600),
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
    #[error(
        "invalid -compactor.block-ranges {0:?}: want durations like 2h,12h,24h, smallest first"
    )]
    Ranges(String),
    #[error("moving a block to the warm tier: {0}")]
    Verify(String),
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
static COMPACTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_compactor_blocks_compacted_total",
            "Source blocks merged into larger or de-duplicated blocks, by signal.",
        ),
        &["signal"],
    )
    .expect("valid metric")
});
static TENANTS_OWNED: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "strata_compactor_tenants_owned",
        "Tenants with data in the bucket that this compactor owns (all of them without a ring).",
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

static RUNS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_compactor_runs_total",
            "Compaction passes (retention, compaction, tier moves, bucket indexes), by outcome (success or failed).",
        ),
        &["outcome"],
    )
    .expect("valid metric")
});
static LAST_SUCCESSFUL_RUN: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    prometheus::Gauge::new(
        "strata_compactor_last_successful_run_timestamp_seconds",
        "Unix time at which the last compaction pass finished without an error.",
    )
    .expect("valid metric")
});

/// Registers the compactor's metrics.
pub fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    r.register(Box::new(RUNS.clone()))?;
    r.register(Box::new(LAST_SUCCESSFUL_RUN.clone()))?;
    r.register(Box::new(MARKED.clone()))?;
    r.register(Box::new(DELETED.clone()))?;
    r.register(Box::new(COMPACTED.clone()))?;
    r.register(Box::new(TENANTS_OWNED.clone()))?;
    tiers::register_metrics(r)?;
    for outcome in ["success", "failed"] {
        RUNS.with_label_values(&[outcome]);
    }
    for signal in SIGNALS {
        COMPACTED.with_label_values(&[signal.dir()]);
        DELETED.with_label_values(&[signal.dir()]);
        for reason in ["retention", "compacted"] {
            MARKED.with_label_values(&[signal.dir(), reason]);
        }
    }
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
    /// This compactor's share of the tenants when several compactors run.
    shard: Option<strata_ring::shard::Shard>,
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
            shard: None,
        }
    }

    /// Shares the tenants with the other compactors of the ring: this one
    /// works only on the tenants `shard` gives it, so no tenant is
    /// compacted twice.
    pub fn with_shard(mut self, shard: strata_ring::shard::Shard) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Tenants with any data in the bucket that this compactor owns.
    async fn tenants(&self) -> Result<Vec<String>, CompactorError> {
        let listed = self
            .store
            .list_with_delimiter(None)
            .await
            .map_err(|e| store_err(&ObjectPath::from(""), e))?;
        let members = self
            .shard
            .as_ref()
            .map(strata_ring::shard::Shard::members)
            .unwrap_or_default();
        let owned: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(strata_storage::block::tenant_of_listing)
            .filter(|t| self.shard.as_ref().is_none_or(|s| s.owns(&members, t)))
            .collect();
        TENANTS_OWNED.set(owned.len() as i64);
        Ok(owned)
    }

    /// The store of `tier` (hot when no warm tier is configured).
    fn store_of(&self, tier: Tier) -> &Arc<dyn ObjectStore> {
        self.reader.store_of(tier).unwrap_or(&self.store)
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
                    let mut ok = true;
                    if let Err(e) = self.apply_retention(now_ms()).await {
                        tracing::error!(error = %e, "applying retention failed; will retry");
                        ok = false;
                    }
                    if let Err(e) = self.compact(now_ms()).await {
                        tracing::error!(error = %e, "compacting blocks failed; will retry");
                        ok = false;
                    }
                    if let Err(e) = self.move_to_warm(now_ms()).await {
                        tracing::error!(error = %e, "moving blocks to the warm tier failed; will retry");
                        ok = false;
                    }
                    if let Err(e) = self.write_bucket_indexes(now_ms()).await {
                        tracing::error!(error = %e, "writing bucket indexes failed; will retry");
                        ok = false;
                    }
                    RUNS.with_label_values(&[if ok { "success" } else { "failed" }]).inc();
                    if ok {
                        LAST_SUCCESSFUL_RUN.set(now_ms() as f64 / 1000.0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::{ObjectStoreExt, PutPayload};
    use strata_limits::Limits;
    use strata_model::Labels;
    use strata_model::logs::LogEntry;
    use strata_storage::block::{block_file, signal_prefix};
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
        // Marks wait until the bucket index carries them (queriers stop
        // reading a block only then).
        assert_eq!(c.cleanup(now + H).await.unwrap(), 0, "marks not indexed");
        c.write_bucket_indexes(now).await.unwrap();
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

    #[tokio::test]
    async fn compaction_merges_rf_copies_and_small_blocks_without_loss_or_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        const H: i64 = 3_600_000;
        let up = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let s = |t: i64, v: f64| strata_model::Sample { t, v };
        // Two replicas of the first 2h (one has an extra sample), and the next 2h.
        let blocks = [
            (0, vec![s(1000, 1.0), s(2000, 2.0)]),
            (0, vec![s(1000, 1.0), s(2000, 2.0), s(3000, 3.0)]),
            (2 * H, vec![s(2 * H + 1000, 4.0)]),
        ];
        for (start, samples) in &blocks {
            let b =
                encode_block(vec![(up.clone(), samples.clone())], *start, start + 2 * H).unwrap();
            upload_block(store.as_ref(), "t", &b).await.unwrap();
            let line = |t: i64| LogEntry {
                ts: t * 1_000_000,
                line: format!("line {t}"),
                metadata: Labels::default(),
            };
            let entries: Vec<LogEntry> = samples.iter().map(|x| line(x.t)).collect();
            let l = encode_log_block(
                &[(Labels::from_pairs([("app", "a")]), entries)],
                *start,
                start + 2 * H,
            )
            .unwrap();
            upload_log_block(store.as_ref(), "t", &l).await.unwrap();
        }
        let reader = Arc::new(BlockReader::new(store.clone()));
        let c = Compactor::new(
            CompactorConfig {
                block_ranges: "2h,4h".into(),
                ..CompactorConfig::default()
            },
            store.clone(),
            reader.clone(),
            Arc::new(Overrides::new(Limits::default())),
        );
        // Too recent: windows must end a smallest range before now.
        assert_eq!(
            c.compact(5 * H).await.unwrap(),
            2 * 2,
            "only the 2h RF copies"
        );
        let c2 = c.compact(10 * H).await.unwrap();
        assert_eq!(
            c2,
            2 * 2,
            "then the 4h window: merged 2h block + the next one"
        );
        for signal in SIGNALS {
            let mut live = Vec::new();
            for m in reader.list_blocks(signal, "t").await.unwrap() {
                if c.read_mark(m.tier, signal, "t", &m.ulid)
                    .await
                    .unwrap()
                    .is_none()
                {
                    live.push(m);
                }
            }
            assert_eq!(live.len(), 1, "{signal:?}");
            assert_eq!((live[0].min_time, live[0].max_time), (0, 4 * H));
            assert_eq!(live[0].compaction.level, 3);
            assert_eq!(live[0].compaction.sources.len(), 3);
            assert_eq!(
                live[0].stats.num_samples, 4,
                "{signal:?}: each sample or line once"
            );
            if signal == Signal::Metrics {
                let got = reader
                    .select("t", &live[0], &[], i64::MIN, i64::MAX)
                    .await
                    .unwrap();
                assert_eq!(
                    got[0].samples,
                    vec![
                        s(1000, 1.0),
                        s(2000, 2.0),
                        s(3000, 3.0),
                        s(2 * H + 1000, 4.0)
                    ]
                );
            }
        }
        // Every source is marked, so the cleanup removes them after the delay.
        c.write_bucket_indexes(10 * H).await.unwrap();
        assert_eq!(c.cleanup(10 * H + 13 * H).await.unwrap(), 2 * 4);
    }

    #[tokio::test]
    async fn partial_uploads_are_deleted_after_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        const H: i64 = 3_600_000;
        let now = 1_000 * H;
        let old = ulid::Ulid::from_parts((now - 25 * H) as u64, 1).to_string();
        let young = ulid::Ulid::from_parts((now - H) as u64, 2).to_string();
        for id in [&old, &young] {
            let path = block_file(Signal::Metrics, "t", id, "chunks.parquet");
            store
                .put(&path, PutPayload::from(bytes::Bytes::from_static(b"x")))
                .await
                .unwrap();
        }
        let c = Compactor::new(
            CompactorConfig::default(),
            store.clone(),
            Arc::new(BlockReader::new(store.clone())),
            Arc::new(Overrides::new(Limits::default())),
        );
        assert_eq!(c.cleanup(now).await.unwrap(), 1);
        let left: Vec<_> = store
            .list(Some(&ObjectPath::from("t/metrics")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].location.to_string().contains(&young), "{left:?}");
    }
}
