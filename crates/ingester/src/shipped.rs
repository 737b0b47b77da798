//! The ingester's record of its recent uploads (`shipped.json` in the TSDB
//! directory, like Thanos's shipper file). Queriers in other processes only
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

fn path(dir: &str) -> PathBuf {
    Path::new(dir).join("shipped.json")
}

/// Uploads recorded in `dir` within the last day.
pub fn load(dir: &str, now_ms: i64) -> Vec<Shipped> {
    let Ok(bytes) = std::fs::read(path(dir)) else {
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

/// Adds `new` to the record in `dir` (dropping entries older than a day),
/// written atomically.
pub fn record(dir: &str, new: Shipped) -> std::io::Result<()> {
    let mut all = load(dir, new.shipped_at_ms);
    all.push(new);
    let bytes = serde_json::to_vec(&all).map_err(std::io::Error::other)?;
    let p = path(dir);
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &p)
}
