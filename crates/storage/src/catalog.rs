//! [`BlockCatalog`] keeps each tenant's list of complete blocks, refreshed
//! from the bucket index (or a listing while there is none) at most once
//! per sync interval, plus the blocks this process uploaded since.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::RwLock;

use crate::StorageError;
use crate::block::{BlockMeta, Signal};
use crate::reader::BlockReader;

fn overlapping(blocks: Vec<BlockMeta>, min_t: i64, max_t: i64) -> Vec<BlockMeta> {
    blocks
        .into_iter()
        .filter(|b| b.max_time > min_t && b.min_time <= max_t)
        .collect()
}

/// Each tenant's complete blocks of one signal, as last listed or uploaded here.
pub struct BlockCatalog {
    reader: Arc<BlockReader>,
    signal: Signal,
    sync_interval: Duration,
    /// Blocks marked for deletion longer ago than this are no longer read:
    /// the block that replaced them has been in the index since, and their
    /// files may go at the deletion delay.
    ignore_deletion_marks_delay: Duration,
    tenants: RwLock<HashMap<String, TenantBlocks>>,
}

/// A tenant's blocks as the index (or a listing) gives them.
struct Listed {
    /// Blocks to read.
    blocks: Vec<BlockMeta>,
    /// Indexed blocks marked for deletion longer than the ignore delay ago.
    ignored: Vec<BlockMeta>,
    /// When the index was written (Unix ms); `None` for a listing.
    index_updated_ms: Option<i64>,
}

struct TenantBlocks {
    listed_at: Instant,
    /// From the bucket index (or a listing when there is no index).
    listed: Vec<BlockMeta>,
    /// Uploaded by this process and not yet in `listed`: the index is only
    /// rewritten every compaction interval.
    local: Vec<LocalUpload>,
}

/// A block this process uploaded, and when (Unix ms).
#[derive(Clone)]
struct LocalUpload {
    meta: BlockMeta,
    added_ms: i64,
}

impl TenantBlocks {
    fn all(&self) -> Vec<BlockMeta> {
        let mut out = self.listed.clone();
        out.extend(
            self.local
                .iter()
                .filter(|l| !self.listed.iter().any(|b| b.ulid == l.meta.ulid))
                .map(|l| l.meta.clone()),
        );
        out.sort_by_key(|m| m.min_time);
        out
    }
}

impl BlockCatalog {
    /// A catalog that re-lists a tenant's blocks at most every `sync_interval`.
    pub fn new(reader: Arc<BlockReader>, signal: Signal, sync_interval: Duration) -> Self {
        Self {
            reader,
            signal,
            sync_interval,
            ignore_deletion_marks_delay: Duration::from_secs(3600),
            tenants: RwLock::new(HashMap::new()),
        }
    }

    /// Sets how long after its deletion mark a block stops being read
    /// (Mimir's `-blocks-storage.bucket-store.ignore-deletion-marks-delay`).
    pub fn with_ignore_deletion_marks_delay(mut self, delay: Duration) -> Self {
        self.ignore_deletion_marks_delay = delay;
        self
    }

    /// The reader the catalog lists with.
    pub fn reader(&self) -> &Arc<BlockReader> {
        &self.reader
    }

    /// The tenant's blocks overlapping `[min_t, max_t]`.
    pub async fn blocks(
        &self,
        tenant: &str,
        min_t: i64,
        max_t: i64,
    ) -> Result<Vec<BlockMeta>, StorageError> {
        let fresh = {
            let t = self.tenants.read().await;
            t.get(tenant)
                .filter(|tb| tb.listed_at.elapsed() < self.sync_interval)
                .map(TenantBlocks::all)
        };
        if let Some(b) = fresh {
            return Ok(overlapping(b, min_t, max_t));
        }
        let listed = match self.read_index_or_list(tenant).await {
            Ok(l) => l,
            Err(e) => {
                // Blocks are immutable: an older listing stays correct
                // for what it holds, so serve it while the store is down.
                let t = self.tenants.read().await;
                match t.get(tenant) {
                    Some(tb) if tb.listed_at.elapsed() < self.sync_interval * 10 => {
                        tracing::warn!(tenant, error = %e, "reading the block list failed; using the previous one");
                        return Ok(overlapping(tb.all(), min_t, max_t));
                    }
                    _ => return Err(e),
                }
            }
        };
        let Listed {
            blocks: listed,
            ignored,
            index_updated_ms,
        } = listed;
        let mut t = self.tenants.write().await;
        let entry = t.entry(tenant.to_string()).or_insert(TenantBlocks {
            listed_at: Instant::now(),
            listed: Vec::new(),
            local: Vec::new(),
        });
        // Local uploads stay until the index knows them, or until an index
        // written after the upload does not list them (the compactor merged
        // and deleted them meanwhile). A bucket listing does not count:
        // queriers elsewhere may hold an older one.
        if let Some(updated_ms) = index_updated_ms {
            entry.local.retain(|l| {
                !listed.iter().chain(&ignored).any(|b| b.ulid == l.meta.ulid)
                    && l.added_ms >= updated_ms
            });
        }
        entry.listed = listed;
        entry.listed_at = Instant::now();
        Ok(overlapping(entry.all(), min_t, max_t))
    }

    /// The tenant's blocks of this signal from the bucket index, or from a
    /// listing of the bucket while the compactor has not written one.
    async fn read_index_or_list(&self, tenant: &str) -> Result<Listed, StorageError> {
        let store = self.reader.store().as_ref();
        match crate::bucket_index::read_bucket_index(store, tenant).await? {
            Some(index) => {
                let now_s = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let cutoff = now_s - self.ignore_deletion_marks_delay.as_secs() as i64;
                let ignored: Vec<&str> = index
                    .block_deletion_marks
                    .iter()
                    .filter(|m| m.signal == self.signal.dir() && m.deletion_time < cutoff)
                    .map(|m| m.id.as_str())
                    .collect();
                let (blocks, ignored): (Vec<BlockMeta>, Vec<BlockMeta>) = index
                    .blocks_of(self.signal)
                    .into_iter()
                    .partition(|b| !ignored.contains(&b.ulid.as_str()));
                Ok(Listed {
                    blocks,
                    ignored,
                    index_updated_ms: Some(index.updated_at.saturating_mul(1000)),
                })
            }
            None => {
                tracing::warn!(
                    tenant,
                    "no bucket index yet (the compactor writes it); listing the bucket"
                );
                Ok(Listed {
                    blocks: self.reader.list_blocks(self.signal, tenant).await?,
                    ignored: Vec::new(),
                    index_updated_ms: None,
                })
            }
        }
    }

    /// Blocks this process uploaded that the bucket index did not list at
    /// the last refresh (refreshed here when stale; a bucket listing made
    /// while there is no index does not count): what queriers in other
    /// processes must add to theirs until the compactor indexes them.
    pub async fn unindexed(&self, tenant: &str) -> Vec<BlockMeta> {
        if let Err(e) = self.blocks(tenant, i64::MIN, i64::MAX).await {
            tracing::debug!(tenant, error = %e, "refreshing the block list failed");
        }
        let t = self.tenants.read().await;
        t.get(tenant)
            .map(|tb| tb.local.iter().map(|l| l.meta.clone()).collect())
            .unwrap_or_default()
    }

    /// Records a block this process just uploaded, so queries see it at once.
    pub async fn add(&self, tenant: &str, meta: BlockMeta) {
        let mut t = self.tenants.write().await;
        let entry = t.entry(tenant.to_string()).or_insert(TenantBlocks {
            // Force a listing on first read: other blocks may exist.
            listed_at: Instant::now() - self.sync_interval - Duration::from_secs(1),
            listed: Vec::new(),
            local: Vec::new(),
        });
        if !entry.local.iter().any(|b| b.meta.ulid == meta.ulid) {
            let added_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            entry.local.push(LocalUpload { meta, added_ms });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{encode_block, upload_block};
    use crate::reader::tests::series;
    use object_store::ObjectStore;

    #[tokio::test]
    async fn catalog_reads_the_bucket_index_and_falls_back_to_listing() {
        use crate::bucket_index::{BucketIndex, IndexedBlock, write_bucket_index};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let block = encode_block(vec![series("up", "a", 10)], 0, 2_000_000).unwrap();
        upload_block(store.as_ref(), "t", &block).await.unwrap();
        let reader = Arc::new(BlockReader::new(store.clone()));
        let catalog = |r: &Arc<BlockReader>| {
            BlockCatalog::new(r.clone(), Signal::Metrics, Duration::from_secs(3600))
        };
        // No index: the bucket is listed.
        let got = catalog(&reader).blocks("t", 0, i64::MAX).await.unwrap();
        assert_eq!(got, vec![block.meta.clone()]);
        // With an index, its blocks are used, not a listing: an indexed block
        // the bucket does not list shows up, a listed one it lacks does not.
        let mut only_in_index = block.meta.clone();
        only_in_index.ulid = "01ZZZZZZZZZZZZZZZZZZZZZZZZ".into();
        let index = BucketIndex {
            version: 1,
            blocks: vec![IndexedBlock {
                signal: "metrics".into(),
                meta: only_in_index.clone(),
            }],
            block_deletion_marks: vec![],
            updated_at: 0,
        };
        write_bucket_index(store.as_ref(), "t", &index)
            .await
            .unwrap();
        let c = catalog(&reader);
        assert_eq!(
            c.blocks("t", 0, i64::MAX).await.unwrap(),
            vec![only_in_index.clone()]
        );
        // A block this process uploads is served at once, next to the index.
        c.add("t", block.meta.clone()).await;
        assert_eq!(c.blocks("t", 0, i64::MAX).await.unwrap().len(), 2);
        assert!(
            BlockCatalog::new(reader.clone(), Signal::Logs, Duration::from_secs(1))
                .blocks("t", 0, i64::MAX)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
