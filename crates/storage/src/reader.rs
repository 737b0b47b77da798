//! Reading metric blocks with DataFusion: label matchers become filters on
//! the `l_<name>` columns of `series.parquet` and the selected series ids plus
//! the time range become filters on `chunks.parquet`; DataFusion pushes both
//! into the Parquet scan so row groups and pages that cannot match are skipped.
//!
//! [`BlockCatalog`] keeps each tenant's list of complete blocks, refreshed
//! from the bucket index (or a listing while there is none) at most once
//! per sync interval, plus the blocks this process uploaded since.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::Schema;
use datafusion::functions::expr_fn::regexp_like;
use datafusion::prelude::{
    Expr, ParquetReadOptions, SessionConfig, SessionContext, ident, lit, not,
};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_model::{Labels, MatchOp, Matcher, Sample, SeriesSamples, merge_samples};
use tokio::sync::RwLock;

use crate::StorageError;
use crate::block::{self, BlockMeta, LABEL_COLUMN_PREFIX, Signal};
use crate::logblock;
use datafusion::logical_expr::expr::Like;
use strata_model::logs::{Direction, EntrySize, LineFilter, LogStream};

/// A filter keeping rows whose `column` is one of `ids` (not empty): the
/// id range prunes row groups by their statistics, the list is exact and
/// only added when the ids are not contiguous.
fn ids_filter(column: &str, ids: impl Iterator<Item = u32> + Clone) -> Expr {
    let (lo, hi, n) = ids.clone().fold((u32::MAX, 0, 0usize), |(lo, hi, n), id| {
        (lo.min(id), hi.max(id), n + 1)
    });
    let col = ident(column);
    let range = col.clone().between(lit(lo), lit(hi));
    if (u64::from(hi) - u64::from(lo) + 1) as usize == n {
        return range;
    }
    range.and(col.in_list(ids.map(lit).collect(), false))
}

const STORE_URL: &str = "strata://blocks/";
const WARM_URL: &str = "strata-warm://blocks/";

/// Runs DataFusion scans over the blocks in one object store.
pub struct BlockReader {
    ctx: SessionContext,
    store: Arc<dyn ObjectStore>,
    warm: Option<Arc<dyn ObjectStore>>,
}

impl BlockReader {
    /// A reader over `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let ctx = SessionContext::new_with_config(config);
        let url = url::Url::parse(STORE_URL).expect("static URL parses");
        ctx.register_object_store(&url, store.clone());
        Self {
            ctx,
            store,
            warm: None,
        }
    }

    /// Adds the warm tier: blocks whose meta says `warm` are read from it.
    pub fn with_warm(mut self, warm: Arc<dyn ObjectStore>) -> Self {
        let url = url::Url::parse(WARM_URL).expect("static URL parses");
        self.ctx.register_object_store(&url, warm.clone());
        self.warm = Some(warm);
        self
    }

    /// The (hot) object store blocks are written to.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The store of `tier`, if configured.
    pub fn store_of(&self, tier: block::Tier) -> Option<&Arc<dyn ObjectStore>> {
        match tier {
            block::Tier::Hot => Some(&self.store),
            block::Tier::Warm => self.warm.as_ref(),
        }
    }

    fn url(signal: Signal, tenant: &str, meta: &BlockMeta, file: &str) -> String {
        let base = match meta.tier {
            block::Tier::Hot => STORE_URL,
            block::Tier::Warm => WARM_URL,
        };
        format!(
            "{base}{}",
            block::block_file(signal, tenant, &meta.ulid, file)
        )
    }

    /// Series of one metric block whose labels satisfy all `matchers`, with their ids.
    pub async fn select_series(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
    ) -> Result<Vec<(u32, strata_model::Labels)>, StorageError> {
        self.select_labelled(Signal::Metrics, tenant, meta, matchers)
            .await
    }

    /// Streams of one log block whose labels satisfy all `matchers`, with their ids.
    pub async fn select_streams(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
    ) -> Result<Vec<(u32, Labels)>, StorageError> {
        self.select_labelled(Signal::Logs, tenant, meta, matchers)
            .await
    }

    /// Rows of `series.parquet` / `streams.parquet` matching `matchers`.
    async fn select_labelled(
        &self,
        signal: Signal,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
    ) -> Result<Vec<(u32, strata_model::Labels)>, StorageError> {
        let (file, id_column) = match signal {
            Signal::Metrics => ("series.parquet", "series_id"),
            Signal::Logs => ("streams.parquet", "stream_id"),
        };
        let df = self
            .ctx
            .read_parquet(
                Self::url(signal, tenant, meta, file),
                ParquetReadOptions::default(),
            )
            .await?;
        let schema: Schema = df.schema().as_arrow().clone();
        let mut filter: Option<Expr> = None;
        for m in matchers {
            match matcher_filter(m, &schema) {
                MatcherFilter::All => {}
                MatcherFilter::None => return Ok(Vec::new()),
                MatcherFilter::Expr(e) => {
                    filter = Some(match filter {
                        Some(f) => f.and(e),
                        None => e,
                    })
                }
            }
        }
        let df = match filter {
            Some(f) => df.filter(f)?,
            None => df,
        };
        let mut out = Vec::new();
        for batch in df.collect().await? {
            out.extend(block::batch_labels(&batch, id_column)?);
        }
        Ok(out)
    }

    /// Samples in `[min_t, max_t]` of the block's series that match `matchers`.
    pub async fn select(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        if meta.max_time <= min_t || meta.min_time > max_t {
            return Ok(Vec::new());
        }
        let series = self.select_series(tenant, meta, matchers).await?;
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_id: HashMap<u32, SeriesSamples> = series
            .into_iter()
            .map(|(id, labels)| {
                (
                    id,
                    SeriesSamples {
                        labels,
                        samples: Vec::new(),
                    },
                )
            })
            .collect();
        let filter = ids_filter("series_id", by_id.keys().copied())
            .and(ident("max_t").gt_eq(lit(min_t)))
            .and(ident("min_t").lt_eq(lit(max_t)));
        let df = self
            .ctx
            .read_parquet(
                Self::url(Signal::Metrics, tenant, meta, "chunks.parquet"),
                ParquetReadOptions::default(),
            )
            .await?
            .filter(filter)?
            .select_columns(&["series_id", "data"])?;
        let mut stream = df.execute_stream().await?;
        while let Some(batch) = stream.try_next().await? {
            block::batch_chunks(&batch, min_t, max_t, |id, samples: &[Sample]| {
                if let Some(s) = by_id.get_mut(&id) {
                    merge_samples(&mut s.samples, samples);
                }
            })?;
        }
        Ok(by_id
            .into_values()
            .filter(|s| !s.samples.is_empty())
            .collect())
    }

    /// Entries in `[start_ns, end_ns)` of the log block's streams that match
    /// `matchers` and pass every line filter. The stream ids, time range and
    /// line filters are pushed into the Parquet scan; with a limit, DataFusion
    /// keeps only the `n` newest (backward) or oldest (forward) entries.
    #[allow(clippy::too_many_arguments)]
    pub async fn select_log_entries(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
        line_filters: &[LineFilter],
        start_ns: i64,
        end_ns: i64,
        limit: Option<(usize, Direction)>,
    ) -> Result<Vec<LogStream>, StorageError> {
        let Some((mut df, streams)) = self
            .scan_entries(tenant, meta, matchers, line_filters, (start_ns, end_ns))
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut by_id: HashMap<u32, LogStream> = streams
            .into_iter()
            .map(|(id, labels)| {
                (
                    id,
                    LogStream {
                        labels,
                        entries: Vec::new(),
                    },
                )
            })
            .collect();
        if let Some((n, dir)) = limit {
            let newest_first = dir == Direction::Backward;
            df = df
                .sort(vec![ident("ts").sort(!newest_first, false)])?
                .limit(0, Some(n))?;
        }
        let mut stream = df.execute_stream().await?;
        while let Some(batch) = stream.try_next().await? {
            logblock::batch_entries(&batch, |id, e| {
                if let Some(s) = by_id.get_mut(&id) {
                    s.entries.push(e);
                }
            })?;
        }
        let mut out: Vec<LogStream> = by_id
            .into_values()
            .filter(|s| !s.entries.is_empty())
            .collect();
        for s in &mut out {
            // Sorted within a stream in the file; a limited scan returns them by time across streams.
            s.entries.sort_by_key(|e| e.ts);
        }
        Ok(out)
    }

    /// Sizes of the entries of the streams matching `matchers` in
    /// `[start_ns, end_ns)`, per stream oldest first: what index statistics
    /// and volumes need, without holding any line.
    pub async fn select_log_sizes(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
        (start_ns, end_ns): (i64, i64),
    ) -> Result<Vec<(Labels, Vec<EntrySize>)>, StorageError> {
        let Some((df, streams)) = self
            .scan_entries(tenant, meta, matchers, &[], (start_ns, end_ns))
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut by_id: HashMap<u32, (Labels, Vec<EntrySize>)> = streams
            .into_iter()
            .map(|(id, labels)| (id, (labels, Vec::new())))
            .collect();
        let mut stream = df
            .select_columns(&["stream_id", "ts", "line"])?
            .execute_stream()
            .await?;
        while let Some(batch) = stream.try_next().await? {
            logblock::batch_entry_sizes(&batch, |id, size| {
                if let Some((_, sizes)) = by_id.get_mut(&id) {
                    sizes.push(size);
                }
            })?;
        }
        Ok(by_id
            .into_values()
            .filter(|(_, sizes)| !sizes.is_empty())
            .collect())
    }

    /// The scan of a log block's entries of matching streams in the range
    /// that pass the line filters, and those streams by id; `None` when no
    /// stream matches.
    async fn scan_entries(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
        line_filters: &[LineFilter],
        (start_ns, end_ns): (i64, i64),
    ) -> Result<Option<(datafusion::dataframe::DataFrame, Vec<(u32, Labels)>)>, StorageError> {
        let streams = self.select_streams(tenant, meta, matchers).await?;
        if streams.is_empty() {
            return Ok(None);
        }
        let ts = ident("ts");
        let mut filter = ids_filter("stream_id", streams.iter().map(|&(id, _)| id))
            .and(ts.clone().gt_eq(lit(start_ns)))
            .and(ts.lt(lit(end_ns)));
        for f in line_filters {
            filter = filter.and(line_filter_expr(f, ident("line")));
        }
        let df = self
            .ctx
            .read_parquet(
                Self::url(Signal::Logs, tenant, meta, "entries.parquet"),
                ParquetReadOptions::default(),
            )
            .await?
            .filter(filter)?;
        Ok(Some((df, streams)))
    }

    /// Lists the complete blocks (those with `meta.json`) of a tenant in
    /// both tiers; a block in both (moved, its hot copy not deleted yet) is
    /// listed once, from hot.
    pub async fn list_blocks(
        &self,
        signal: Signal,
        tenant: &str,
    ) -> Result<Vec<BlockMeta>, StorageError> {
        let mut out = self.list_tier(block::Tier::Hot, signal, tenant).await?;
        if self.warm.is_some() {
            for m in self.list_tier(block::Tier::Warm, signal, tenant).await? {
                if !out.iter().any(|h| h.ulid == m.ulid) {
                    out.push(m);
                }
            }
        }
        out.sort_by_key(|m| m.min_time);
        Ok(out)
    }

    /// Lists the complete blocks of a tenant in one tier (empty when the
    /// tier is not configured).
    pub async fn list_tier(
        &self,
        tier: block::Tier,
        signal: Signal,
        tenant: &str,
    ) -> Result<Vec<BlockMeta>, StorageError> {
        let Some(store) = self.store_of(tier) else {
            return Ok(Vec::new());
        };
        let prefix = block::signal_prefix(signal, tenant);
        let listing = store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| StorageError::object(&prefix, e))?;
        let mut out = Vec::new();
        for dir in listing.common_prefixes {
            let Some(ulid) = dir.filename() else { continue };
            if let Some(mut meta) = self.read_meta_in(tier, signal, tenant, ulid).await? {
                meta.tier = tier;
                out.push(meta);
            }
        }
        out.sort_by_key(|m| m.min_time);
        Ok(out)
    }

    /// Reads `meta.json` of a hot block; `None` when it does not exist (yet).
    pub async fn read_meta(
        &self,
        signal: Signal,
        tenant: &str,
        ulid: &str,
    ) -> Result<Option<BlockMeta>, StorageError> {
        self.read_meta_in(block::Tier::Hot, signal, tenant, ulid)
            .await
    }

    /// Reads `meta.json` of a block in `tier`; `None` when it does not exist.
    pub async fn read_meta_in(
        &self,
        tier: block::Tier,
        signal: Signal,
        tenant: &str,
        ulid: &str,
    ) -> Result<Option<BlockMeta>, StorageError> {
        let Some(store) = self.store_of(tier) else {
            return Ok(None);
        };
        let path: ObjectPath = block::block_file(signal, tenant, ulid, "meta.json");
        match store.get(&path).await {
            Ok(r) => {
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| StorageError::object(&path, e))?;
                Ok(Some(serde_json::from_slice(&bytes)?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StorageError::object(&path, e)),
        }
    }
}

enum MatcherFilter {
    /// Every row passes.
    All,
    /// No row can pass.
    None,
    Expr(Expr),
}

/// Translates a label matcher into a filter on `series.parquet`. A missing
/// label reads as "" (PromQL semantics), and so does a missing column.
fn matcher_filter(m: &Matcher, schema: &Schema) -> MatcherFilter {
    let matches_empty = m.is_match("");
    let col_name = format!("{LABEL_COLUMN_PREFIX}{}", m.name);
    if schema.field_with_name(&col_name).is_err() {
        return if matches_empty {
            MatcherFilter::All
        } else {
            MatcherFilter::None
        };
    }
    let c = ident(col_name);
    let cond = match &m.op {
        MatchOp::Equal => c.clone().eq(lit(m.value.clone())),
        MatchOp::NotEqual => c.clone().not_eq(lit(m.value.clone())),
        MatchOp::Re(re) => regexp_like(c.clone(), lit(re.as_str().to_string()), None),
        MatchOp::NotRe(re) => not(regexp_like(c.clone(), lit(re.as_str().to_string()), None)),
    };
    MatcherFilter::Expr(if matches_empty {
        c.is_null().or(cond)
    } else {
        cond
    })
}

/// Translates a line filter into a filter on the `line` column. Substring
/// filters become `LIKE '%text%'`, which Arrow runs as a vectorised search.
fn line_filter_expr(f: &LineFilter, line: Expr) -> Expr {
    fn like_pattern(text: &str) -> String {
        let mut p = String::with_capacity(text.len() + 2);
        p.push('%');
        for c in text.chars() {
            if matches!(c, '%' | '_' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('%');
        p
    }
    let like = |text: &str, negated: bool| {
        Expr::Like(Like::new(
            negated,
            Box::new(line.clone()),
            Box::new(lit(like_pattern(text))),
            Some('\\'),
            false,
        ))
    };
    match f {
        LineFilter::Contains(t) => like(t, false),
        LineFilter::NotContains(t) => like(t, true),
        LineFilter::Regex(re) => regexp_like(line, lit(re.as_str().to_string()), None),
        LineFilter::NotRegex(re) => not(regexp_like(line, lit(re.as_str().to_string()), None)),
        LineFilter::Any(alts) => alts
            .iter()
            .map(|a| line_filter_expr(a, line.clone()))
            .reduce(Expr::or)
            .unwrap_or(lit(false)),
    }
}

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
    use strata_model::Labels;

    fn series(name: &str, job: &str, n: i64) -> (Labels, Vec<Sample>) {
        let labels = Labels::from_pairs([("__name__", name), ("job", job)]);
        let samples = (0..n)
            .map(|i| Sample {
                t: i * 1000,
                v: i as f64,
            })
            .collect();
        (labels, samples)
    }

    #[tokio::test]
    async fn parquet_block_roundtrip_with_matchers() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let mut input = vec![
            series("up", "a", 2000),
            series("up", "b", 10),
            series("http_requests_total", "a", 5),
        ];
        input[2].0.set("path", "/x");
        let block = encode_block(input.clone(), 0, 2_000_000).unwrap();
        assert_eq!(block.meta.stats.num_series, 3);
        assert_eq!(block.meta.stats.num_samples, 2015);
        upload_block(store.as_ref(), "t1", &block).await.unwrap();

        let reader = BlockReader::new(store);
        let metas = reader.list_blocks(Signal::Metrics, "t1").await.unwrap();
        assert_eq!(metas, vec![block.meta.clone()]);
        assert!(
            reader
                .list_blocks(Signal::Metrics, "other")
                .await
                .unwrap()
                .is_empty()
        );

        let up = Matcher::new(MatchOp::Equal, "__name__", "up");
        let got = reader
            .select("t1", &metas[0], std::slice::from_ref(&up), 0, i64::MAX)
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        let a = got
            .iter()
            .find(|s| s.labels.get("job") == Some("a"))
            .unwrap();
        assert_eq!(a.samples, input[0].1);

        // Time range restriction inside a chunk.
        let got = reader
            .select(
                "t1",
                &metas[0],
                std::slice::from_ref(&up),
                1_500_000,
                1_500_999,
            )
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].samples,
            vec![Sample {
                t: 1_500_000,
                v: 1500.0
            }]
        );

        // Regex, negative and absent-label matchers.
        let re = Matcher::new_matcher(
            promql_parser::parser::token::T_EQL_REGEX,
            "job".into(),
            "b|c".into(),
        )
        .unwrap();
        let got = reader.select_series("t1", &metas[0], &[re]).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.get("job"), Some("b"));
        let no_path = Matcher::new(MatchOp::Equal, "path", "");
        let got = reader
            .select_series("t1", &metas[0], &[no_path])
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        let missing_col = Matcher::new(MatchOp::Equal, "nope", "x");
        let got = reader
            .select_series("t1", &metas[0], &[missing_col])
            .await
            .unwrap();
        assert!(got.is_empty());
        let ne = Matcher::new(MatchOp::NotEqual, "path", "/x");
        let got = reader.select_series("t1", &metas[0], &[ne]).await.unwrap();
        assert_eq!(got.len(), 2);
    }

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
