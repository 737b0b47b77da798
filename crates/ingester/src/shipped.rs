//! The ingester's record of its recent uploads (`shipped.json` and
//! `shipped-logs.json` in the TSDB directory, like Thanos's shipper file). Queriers in other processes only
//! see a block once the compactor has put it in the bucket index; until then
//! they learn it from the ingester that uploaded it. The record outlives
//! restarts, so a block flushed at shutdown (its data gone from the head and
//! the WAL) stays visible through the restarted ingester.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_storage::BlockMeta;

/// How long an upload is remembered: far longer than the compactor takes to
/// index it.
const KEEP_MS: i64 = 24 * 3600 * 1000;

/// One uploaded block.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    /// Tenant of the block.
    pub tenant: String,
    /// When it was uploaded, Unix ms.
    pub shipped_at_ms: i64,
    /// Its meta.json.
    pub meta: BlockMeta,
}

/// The record of metric uploads under TSDB directory `dir`.
pub fn metrics_path(dir: &str) -> PathBuf {
    Path::new(dir).join("shipped.json")
}

/// The record of log uploads under TSDB directory `dir`.
pub fn logs_path(dir: &str) -> PathBuf {
    Path::new(dir).join("shipped-logs.json")
}

/// Uploads recorded in `path` within the last day.
pub fn load(path: &Path, now_ms: i64) -> Vec<Shipped> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    match serde_json::from_slice::<Vec<Shipped>>(&bytes) {
        Ok(v) => v
            .into_iter()
            .filter(|s| now_ms - s.shipped_at_ms < KEEP_MS)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring an unreadable shipped.json");
            Vec::new()
        }
    }
}

/// Adds `new` to the record in `path` (dropping entries older than a day),
/// written atomically.
fn record(path: &Path, new: Shipped) -> std::io::Result<()> {
    let mut all = load(path, new.shipped_at_ms);
    all.push(new);
    let bytes = serde_json::to_vec(&all).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Records an upload of `tenant`'s block `meta` in `path`. A failure only
/// delays other queriers' view of the block until the index has it, so it
/// is logged, not returned.
pub fn record_upload(path: &Path, tenant: &str, meta: &BlockMeta) {
    let entry = Shipped {
        tenant: tenant.to_string(),
        shipped_at_ms: crate::now_ms(),
        meta: meta.clone(),
    };
    if let Err(e) = record(path, entry) {
        tracing::warn!(tenant, path = %path.display(), error = %e, "recording the upload failed");
    }
}
