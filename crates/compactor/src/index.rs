//! The bucket index (`<tenant>/bucket-index.json.gz`): blocks of both
//! signals and their deletion marks, rewritten from the bucket every
//! compaction interval and after deletions; queriers read it instead of
//! listing the bucket.

use strata_storage::bucket_index::{
    BUCKET_INDEX_VERSION, BucketIndex, IndexedBlock, IndexedMark, read_bucket_index,
    write_bucket_index,
};
use strata_storage::{BlockMeta, Signal, Tier};

use crate::{Compactor, CompactorError, DeletionMark, SIGNALS};

impl Compactor {
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
}
