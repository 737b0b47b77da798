//! Hot and warm tiers. New blocks are written to the hot store; once a
//! block's newest sample is older than `-blocks-storage.hot-max-age`, the
//! compactor copies it to the warm store, reads the copy back and checks
//! every file's size and CRC32C, then leaves `moved-to-warm.json` in the
//! hot copy. From then on the bucket index lists the block as warm (queries
//! read it there), and the hot copy is deleted after the deletion delay,
//! so queriers still holding the previous index never miss it. A crash at
//! any step leaves either the hot copy in charge or a complete warm copy.

use std::sync::LazyLock;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use strata_storage::block::block_file;
use strata_storage::bucket_index::read_bucket_index;
use strata_storage::{BlockMeta, Signal, Tier};

use crate::{Compactor, CompactorError, SIGNALS, store_err};

const MOVED_FILE: &str = "moved-to-warm.json";

static MOVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_compactor_blocks_moved_to_warm_total",
            "Blocks copied to the warm tier and verified, by signal.",
        ),
        &["signal"],
    )
    .expect("valid metric")
});
static TIER_BLOCKS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "strata_bucket_blocks",
            "Live blocks of this compactor's tenants per tier and signal, at the last index write.",
        ),
        &["tier", "signal"],
    )
    .expect("valid metric")
});
static TIER_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "strata_bucket_bytes",
            "Bytes of live blocks of this compactor's tenants per tier and signal, at the last index write.",
        ),
        &["tier", "signal"],
    )
    .expect("valid metric")
});

/// Registers the tier metrics.
pub(crate) fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    r.register(Box::new(MOVED.clone()))?;
    for signal in crate::SIGNALS {
        MOVED.with_label_values(&[signal.dir()]);
    }
    r.register(Box::new(TIER_BLOCKS.clone()))?;
    r.register(Box::new(TIER_BYTES.clone()))?;
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct MovedMark {
    /// Unix ms of the move.
    moved_at: i64,
}

impl Compactor {
    /// Unix ms at which the hot copy of `ulid` was moved to warm, if it was.
    pub(crate) async fn moved_at(
        &self,
        signal: Signal,
        tenant: &str,
        ulid: &str,
    ) -> Result<Option<i64>, CompactorError> {
        let path = block_file(signal, tenant, ulid, MOVED_FILE);
        match self.store.get(&path).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| store_err(&path, e))?;
                let m: MovedMark =
                    serde_json::from_slice(&bytes).map_err(|source| CompactorError::Mark {
                        path: path.to_string(),
                        source,
                    })?;
                Ok(Some(m.moved_at))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(&path, e)),
        }
    }

    /// The tenant's blocks where they live now: hot blocks not moved, and
    /// warm blocks (a block copied to warm but not yet marked moved is
    /// still the hot one's).
    pub(crate) async fn live_blocks(
        &self,
        signal: Signal,
        tenant: &str,
    ) -> Result<Vec<BlockMeta>, CompactorError> {
        let mut out = Vec::new();
        for meta in self.reader.list_tier(Tier::Hot, signal, tenant).await? {
            if self.moved_at(signal, tenant, &meta.ulid).await?.is_none() {
                out.push(meta);
            }
        }
        let warm = match self.reader.list_tier(Tier::Warm, signal, tenant).await {
            Ok(warm) => warm,
            // Warm blocks change only through this compactor (moves and
            // deletions, which fail just the same while the warm store is
            // down), so the last index still lists them: the index keeps
            // being rewritten for new hot blocks during a warm outage.
            Err(e) => match read_bucket_index(self.store.as_ref(), tenant).await {
                Ok(Some(index)) => {
                    tracing::warn!(tenant, signal = signal.dir(), error = %e,
                        "listing the warm tier failed; using the warm blocks of the last bucket index");
                    index
                        .blocks_of(signal)
                        .into_iter()
                        .filter(|m| m.tier == Tier::Warm)
                        .collect()
                }
                _ => return Err(e.into()),
            },
        };
        for meta in warm {
            if !out.iter().any(|h| h.ulid == meta.ulid) {
                out.push(meta);
            }
        }
        out.sort_by_key(|m| m.min_time);
        Ok(out)
    }

    /// Moves every hot block older than the hot max age to the warm tier.
    /// Returns how many moved.
    pub async fn move_to_warm(&self, now_ms: i64) -> Result<usize, CompactorError> {
        let Some(warm) = self.reader.store_of(Tier::Warm).cloned() else {
            return Ok(0);
        };
        let cutoff = now_ms - self.cfg.hot_max_age.as_millis() as i64;
        let mut moved = 0;
        for tenant in self.tenants().await? {
            for signal in SIGNALS {
                for meta in self.live_blocks(signal, &tenant).await? {
                    if meta.tier != Tier::Hot
                        || meta.max_time > cutoff
                        || self
                            .read_mark(Tier::Hot, signal, &tenant, &meta.ulid)
                            .await?
                            .is_some()
                    {
                        continue;
                    }
                    self.copy_verified(warm.as_ref(), signal, &tenant, &meta.ulid)
                        .await?;
                    strata_storage::crashpoint::crash_point("compactor.after-warm-copy");
                    let path = block_file(signal, &tenant, &meta.ulid, MOVED_FILE);
                    let body =
                        serde_json::to_vec(&MovedMark { moved_at: now_ms }).map_err(|source| {
                            CompactorError::Mark {
                                path: path.to_string(),
                                source,
                            }
                        })?;
                    self.store
                        .put(&path, PutPayload::from(bytes::Bytes::from(body)))
                        .await
                        .map_err(|e| store_err(&path, e))?;
                    MOVED.with_label_values(&[signal.dir()]).inc();
                    tracing::info!(tenant, signal = signal.dir(), ulid = %meta.ulid,
                        bytes = meta.stats.num_bytes, "block moved to the warm tier");
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }

    /// Copies a block's files to `warm`, `meta.json` last (a crash leaves a
    /// partial warm copy the cleanup removes), and checks each copy's size
    /// and CRC32C against the source.
    async fn copy_verified(
        &self,
        warm: &dyn ObjectStore,
        signal: Signal,
        tenant: &str,
        ulid: &str,
    ) -> Result<(), CompactorError> {
        let dir = ObjectPath::from(format!("{tenant}/{}/{ulid}", signal.dir()));
        let meta = block_file(signal, tenant, ulid, "meta.json");
        let mut files: Vec<ObjectPath> = self
            .store
            .list(Some(&dir))
            .map_ok(|o| o.location)
            .try_collect()
            .await
            .map_err(|e| store_err(&dir, e))?;
        files.retain(|f| f.filename() != Some(MOVED_FILE));
        files.sort_by_key(|f| *f == meta);
        for f in &files {
            let bytes = self
                .store
                .get(f)
                .await
                .map_err(|e| store_err(f, e))?
                .bytes()
                .await
                .map_err(|e| store_err(f, e))?;
            let crc = crc32c::crc32c(&bytes);
            let len = bytes.len();
            warm.put(f, PutPayload::from(bytes))
                .await
                .map_err(|e| store_err(f, e))?;
            let back = warm
                .get(f)
                .await
                .map_err(|e| store_err(f, e))?
                .bytes()
                .await
                .map_err(|e| store_err(f, e))?;
            if back.len() != len || crc32c::crc32c(&back) != crc {
                return Err(CompactorError::Verify(format!(
                    "warm copy of {f} differs from the hot one ({} vs {len} bytes)",
                    back.len()
                )));
            }
        }
        Ok(())
    }

    /// Sets the per-tier gauges from the live blocks of every tenant.
    pub(crate) fn observe_tiers(blocks: &[(Signal, BlockMeta)]) {
        for tier in [Tier::Hot, Tier::Warm] {
            for signal in SIGNALS {
                let of = blocks
                    .iter()
                    .filter(|(s, m)| *s == signal && m.tier == tier);
                let (n, bytes) = of.fold((0i64, 0i64), |(n, b), (_, m)| {
                    (n + 1, b + m.stats.num_bytes as i64)
                });
                TIER_BLOCKS
                    .with_label_values(&[tier.as_str(), signal.dir()])
                    .set(n);
                TIER_BYTES
                    .with_label_values(&[tier.as_str(), signal.dir()])
                    .set(bytes);
            }
        }
    }
}
