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
//! Compaction groups each tenant's live blocks by aligned window of every
//! `-compactor.block-ranges` range and merges a group into one block
//! (vertical: the RF copies and late blocks of one range; horizontal:
//! 2h -> 12h -> 24h), streaming (see `strata_storage::merge`), and only
//! then marks the sources. `tiers` moves old blocks to the warm store.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::{Deserialize, Serialize};
use strata_limits::{Limits, Overrides};
use strata_storage::block::{block_file, signal_prefix};
use strata_storage::bucket_index::{
    BUCKET_INDEX_VERSION, BucketIndex, IndexedBlock, IndexedMark, read_bucket_index,
    write_bucket_index,
};
use strata_storage::crashpoint::crash_point;
use strata_storage::merge::{MergeTarget, SourceBlock, merge_log_blocks, merge_metric_blocks};
use strata_storage::{BlockMeta, BlockReader, Signal, Tier};

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

/// Registers the compactor's metrics.
pub fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    r.register(Box::new(MARKED.clone()))?;
    r.register(Box::new(DELETED.clone()))?;
    r.register(Box::new(COMPACTED.clone()))?;
    r.register(Box::new(TENANTS_OWNED.clone()))?;
    tiers::register_metrics(r)?;
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

    async fn read_mark(
        &self,
        tier: Tier,
        signal: Signal,
        tenant: &str,
        ulid: &str,
    ) -> Result<Option<DeletionMark>, CompactorError> {
        let path = block_file(signal, tenant, ulid, MARK_FILE);
        match self.store_of(tier).get(&path).await {
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
                for meta in self.live_blocks(signal, &tenant).await? {
                    // max_time is exclusive: the whole block is older than the floor.
                    if meta.max_time > floor
                        || self
                            .read_mark(meta.tier, signal, &tenant, &meta.ulid)
                            .await?
                            .is_some()
                    {
                        continue;
                    }
                    self.mark(meta.tier, signal, &tenant, &meta.ulid, now_ms, "retention")
                        .await?;
                    tracing::info!(tenant, signal = signal.dir(), ulid = %meta.ulid,
                        max_time = meta.max_time, "block past retention marked for deletion");
                    marked += 1;
                }
            }
        }
        Ok(marked)
    }

    /// Checks the configuration (refused at start-up rather than at the first pass).
    pub fn check_config(&self) -> Result<(), CompactorError> {
        self.ranges().map(|_| ())
    }

    /// The configured block ranges in ms, smallest first.
    fn ranges(&self) -> Result<Vec<i64>, CompactorError> {
        let bad = || CompactorError::Ranges(self.cfg.block_ranges.clone());
        let ranges: Vec<i64> = self
            .cfg
            .block_ranges
            .split(',')
            .map(|r| humantime::parse_duration(r.trim()).map(|d| d.as_millis() as i64))
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        if ranges.is_empty() || ranges.windows(2).any(|w| w[1] <= w[0] || w[1] % w[0] != 0) {
            return Err(bad());
        }
        Ok(ranges)
    }

    /// Merges blocks per tenant and signal: at each configured range, the
    /// unmarked blocks inside one aligned window (two or more, so RF copies,
    /// late out-of-order blocks and smaller blocks of a finished window) become
    /// one block with identical samples or entries de-duplicated. The new
    /// block is complete (meta.json written) before its sources are marked
    /// for deletion, so a crash in between only leaves overlapping blocks
    /// that the next pass merges again. Windows are merged once they end
    /// at least one smallest range before `now_ms`.
    pub async fn compact(&self, now_ms: i64) -> Result<usize, CompactorError> {
        let ranges = self.ranges()?;
        let mut merged = 0;
        for tenant in self.tenants().await? {
            for signal in SIGNALS {
                for &range in &ranges {
                    let mut groups: std::collections::BTreeMap<i64, Vec<BlockMeta>> =
                        std::collections::BTreeMap::new();
                    for meta in self.live_blocks(signal, &tenant).await? {
                        if self
                            .read_mark(meta.tier, signal, &tenant, &meta.ulid)
                            .await?
                            .is_some()
                        {
                            continue;
                        }
                        let start = meta.min_time.div_euclid(range) * range;
                        // Only blocks that fit the window.
                        if meta.max_time <= start + range {
                            groups.entry(start).or_default().push(meta);
                        }
                    }
                    for (start, group) in groups {
                        if group.len() < 2 || start + range > now_ms - ranges[0] {
                            continue;
                        }
                        self.merge(signal, &tenant, &group, start, start + range, now_ms)
                            .await?;
                        merged += group.len();
                    }
                }
            }
        }
        Ok(merged)
    }

    async fn merge(
        &self,
        signal: Signal,
        tenant: &str,
        sources: &[BlockMeta],
        min_time: i64,
        max_time: i64,
        now_ms: i64,
    ) -> Result<(), CompactorError> {
        let level = sources
            .iter()
            .map(|m| m.compaction.level)
            .max()
            .unwrap_or(1)
            + 1;
        let mut source_ids: Vec<String> = sources
            .iter()
            .flat_map(|m| m.compaction.sources.iter().cloned())
            .collect();
        source_ids.sort();
        source_ids.dedup();
        let blocks: Vec<SourceBlock> = sources
            .iter()
            .map(|m| SourceBlock {
                store: self.store_of(m.tier).clone(),
                meta: m.clone(),
            })
            .collect();
        let target = MergeTarget {
            store: &self.store,
            tenant,
            min_time,
            max_time,
            compaction: strata_storage::block::BlockCompaction {
                level,
                sources: source_ids,
            },
            source: "compactor",
        };
        let meta = match signal {
            Signal::Metrics => merge_metric_blocks(&blocks, target).await?,
            Signal::Logs => merge_log_blocks(&blocks, target).await?,
        };
        crash_point("compactor.after-upload");
        for (i, m) in sources.iter().enumerate() {
            self.mark(m.tier, signal, tenant, &m.ulid, now_ms, "compacted")
                .await?;
            if i == 0 {
                crash_point("compactor.after-first-mark");
            }
        }
        crash_point("compactor.after-marks");
        COMPACTED
            .with_label_values(&[signal.dir()])
            .inc_by(sources.len() as u64);
        tracing::info!(tenant, signal = signal.dir(), ulid = %meta.ulid, level, sources = sources.len(),
            samples = meta.stats.num_samples, bytes = meta.stats.num_bytes, "blocks compacted");
        Ok(())
    }

    async fn mark(
        &self,
        tier: Tier,
        signal: Signal,
        tenant: &str,
        ulid: &str,
        now_ms: i64,
        reason: &str,
    ) -> Result<(), CompactorError> {
        let mark = DeletionMark {
            id: ulid.to_string(),
            deletion_time: now_ms.div_euclid(1000),
            version: 1,
        };
        let path = block_file(signal, tenant, ulid, MARK_FILE);
        let body = serde_json::to_vec(&mark).map_err(|source| CompactorError::Mark {
            path: path.to_string(),
            source,
        })?;
        self.store_of(tier)
            .put(&path, PutPayload::from(bytes::Bytes::from(body)))
            .await
            .map_err(|e| store_err(&path, e))?;
        MARKED.with_label_values(&[signal.dir(), reason]).inc();
        Ok(())
    }

    /// Rewrites every tenant's bucket index from the bucket: blocks of both
    /// signals and their deletion marks. Queriers read it instead of listing.
    pub async fn write_bucket_indexes(&self, now_ms: i64) -> Result<usize, CompactorError> {
        let tenants = self.tenants().await?;
        let mut live: Vec<(Signal, BlockMeta)> = Vec::new();
        for tenant in &tenants {
            let mut index = BucketIndex {
                version: BUCKET_INDEX_VERSION,
                updated_at: now_ms.div_euclid(1000),
                ..BucketIndex::default()
            };
            // The marks of warm blocks as last indexed, for when the warm
            // store cannot be read (see `live_blocks`).
            let previous = read_bucket_index(self.store.as_ref(), tenant)
                .await
                .ok()
                .flatten();
            for signal in SIGNALS {
                for meta in self.live_blocks(signal, tenant).await? {
                    let mark = match self.read_mark(meta.tier, signal, tenant, &meta.ulid).await {
                        Ok(mark) => mark,
                        Err(e) if meta.tier == Tier::Warm => {
                            tracing::warn!(tenant, ulid = %meta.ulid, error = %e,
                                "reading a warm block's deletion mark failed; keeping the indexed one");
                            previous.as_ref().and_then(|p| {
                                p.block_deletion_marks
                                    .iter()
                                    .find(|m| m.id == meta.ulid && m.signal == signal.dir())
                                    .map(|m| DeletionMark {
                                        id: m.id.clone(),
                                        deletion_time: m.deletion_time,
                                        version: 1,
                                    })
                            })
                        }
                        Err(e) => return Err(e),
                    };
                    if let Some(mark) = mark {
                        index.block_deletion_marks.push(IndexedMark {
                            signal: signal.dir().to_string(),
                            id: mark.id,
                            deletion_time: mark.deletion_time,
                        });
                    }
                    live.push((signal, meta.clone()));
                    index.blocks.push(IndexedBlock {
                        signal: signal.dir().to_string(),
                        meta,
                    });
                }
            }
            write_bucket_index(self.store.as_ref(), tenant, &index).await?;
        }
        Self::observe_tiers(&live);
        Ok(tenants.len())
    }

    /// True when `ulid` has no `meta.json` and was created longer than the
    /// partial-block delay ago: an upload that will never finish.
    async fn is_stale_partial(
        &self,
        tier: Tier,
        signal: Signal,
        tenant: &str,
        ulid: &str,
        now_ms: i64,
    ) -> Result<bool, CompactorError> {
        let delay = self.cfg.partial_block_deletion_delay.as_millis() as i64;
        let Ok(id) = ulid::Ulid::from_string(ulid) else {
            return Ok(false);
        };
        if delay == 0 || now_ms - (id.timestamp_ms() as i64) < delay {
            return Ok(false);
        }
        let meta = block_file(signal, tenant, ulid, "meta.json");
        match self.store_of(tier).head(&meta).await {
            Ok(_) => Ok(false),
            Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(store_err(&meta, e)),
        }
    }

    /// Deletes blocks whose deletion mark is older than the deletion delay,
    /// and partial uploads older than the partial-block delay.
    pub async fn cleanup(&self, now_ms: i64) -> Result<usize, CompactorError> {
        let delay_s = self.cfg.deletion_delay.as_secs() as i64;
        let mut deleted = 0;
        let tiers: &[Tier] = if self.reader.store_of(Tier::Warm).is_some() {
            &[Tier::Hot, Tier::Warm]
        } else {
            &[Tier::Hot]
        };
        for tenant in self.tenants().await? {
            // Queriers stop reading a marked block only once the index
            // they read carries its mark; a mark the index does not have
            // yet (its write failed or is still to come) waits.
            let indexed_marks: Vec<(String, String)> =
                read_bucket_index(self.store.as_ref(), &tenant)
                    .await
                    .ok()
                    .flatten()
                    .map(|i| {
                        i.block_deletion_marks
                            .into_iter()
                            .map(|m| (m.signal, m.id))
                            .collect()
                    })
                    .unwrap_or_default();
            for signal in SIGNALS {
                for &tier in tiers {
                    let prefix = signal_prefix(signal, &tenant);
                    let listed = self
                        .store_of(tier)
                        .list_with_delimiter(Some(&prefix))
                        .await
                        .map_err(|e| store_err(&prefix, e))?;
                    for dir in listed.common_prefixes {
                        let Some(ulid) = dir.filename() else { continue };
                        let deletion_mark = self.read_mark(tier, signal, &tenant, ulid).await?;
                        let mark = match &deletion_mark {
                            Some(m) => Some(m.deletion_time),
                            // A hot copy of a block moved to warm goes
                            // after the deletion delay as well.
                            None if tier == Tier::Hot => self
                                .moved_at(signal, &tenant, ulid)
                                .await?
                                .map(|ms| ms.div_euclid(1000)),
                            None => None,
                        };
                        let Some(marked_at) = mark else {
                            if self
                                .is_stale_partial(tier, signal, &tenant, ulid, now_ms)
                                .await?
                            {
                                self.delete_block(tier, signal, &tenant, ulid).await?;
                                DELETED.with_label_values(&[signal.dir()]).inc();
                                tracing::warn!(
                                    tenant,
                                    signal = signal.dir(),
                                    tier = tier.as_str(),
                                    ulid,
                                    "partial block (no meta.json) deleted"
                                );
                                deleted += 1;
                            }
                            continue;
                        };
                        if now_ms.div_euclid(1000) - marked_at < delay_s {
                            continue;
                        }
                        if deletion_mark.is_some()
                            && !indexed_marks
                                .iter()
                                .any(|(sig, id)| sig == signal.dir() && id == ulid)
                        {
                            tracing::debug!(
                                tenant,
                                ulid,
                                "deletion mark not indexed yet; deleting later"
                            );
                            continue;
                        }
                        if tier == Tier::Hot && deletion_mark.is_some() && tiers.len() == 2 {
                            // A warm copy of a block deleted while still
                            // hot (a move cut short by a crash before its
                            // moved mark) must not come back to life as a
                            // warm block once the hot one is gone.
                            self.delete_block(Tier::Warm, signal, &tenant, ulid).await?;
                        }
                        self.delete_block(tier, signal, &tenant, ulid).await?;
                        DELETED.with_label_values(&[signal.dir()]).inc();
                        tracing::info!(
                            tenant,
                            signal = signal.dir(),
                            tier = tier.as_str(),
                            ulid,
                            "marked block deleted"
                        );
                        deleted += 1;
                    }
                }
            }
        }
        Ok(deleted)
    }

    async fn delete_block(
        &self,
        tier: Tier,
        signal: Signal,
        tenant: &str,
        ulid: &str,
    ) -> Result<(), CompactorError> {
        let store = self.store_of(tier);
        let meta = block_file(signal, tenant, ulid, "meta.json");
        match store.delete(&meta).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(&meta, e)),
        }
        let dir = ObjectPath::from(format!("{tenant}/{}/{ulid}", signal.dir()));
        let files: Vec<_> = store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| store_err(&dir, e))?;
        // The mark goes last: a crash in between leaves a marked block that
        // the next cleanup finishes.
        let mark = block_file(signal, tenant, ulid, MARK_FILE);
        for f in files.iter().filter(|f| f.location != mark) {
            match store.delete(&f.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(&f.location, e)),
            }
        }
        match store.delete(&mark).await {
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
                    if let Err(e) = self.compact(now_ms()).await {
                        tracing::error!(error = %e, "compacting blocks failed; will retry");
                    }
                    if let Err(e) = self.move_to_warm(now_ms()).await {
                        tracing::error!(error = %e, "moving blocks to the warm tier failed; will retry");
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
