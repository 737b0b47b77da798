//! Compaction planning and merging: each tenant's live blocks grouped by
//! aligned window of every `-compactor.block-ranges` range, a group merged
//! into one block (streaming, see `strata_storage::merge`) before its
//! sources are marked.

use strata_storage::crashpoint::crash_point;
use strata_storage::merge::{MergeTarget, SourceBlock, merge_log_blocks, merge_metric_blocks};
use strata_storage::{BlockMeta, Signal};

use crate::{COMPACTED, Compactor, CompactorError, SIGNALS};

impl Compactor {
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
}
