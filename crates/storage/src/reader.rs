//! Reading metric blocks with DataFusion: label matchers become filters on
//! the `l_<name>` columns of `series.parquet` and the selected series ids plus
//! the time range become filters on `chunks.parquet`; DataFusion pushes both
//! into the Parquet scan so row groups and pages that cannot match are skipped.
//!
//! This module holds the reader and what both signals share (series and
//! stream label scans, block listing, meta.json); the scans of each
//! signal's data are in `metric_scan` and `log_scan`, the per-tenant block
//! lists in `catalog`.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::functions::expr_fn::regexp_like;
use datafusion::prelude::{
    Expr, ParquetReadOptions, SessionConfig, SessionContext, ident, lit, not,
};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_model::{Labels, MatchOp, Matcher};

use crate::StorageError;
use crate::block::{self, BlockMeta, LABEL_COLUMN_PREFIX, Signal};

/// A filter keeping rows whose `column` is one of `ids` (not empty): the
/// id range prunes row groups by their statistics, the list is exact and
/// only added when the ids are not contiguous.
pub(crate) fn ids_filter(column: &str, ids: impl Iterator<Item = u32> + Clone) -> Expr {
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
    pub(crate) ctx: SessionContext,
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

    pub(crate) fn url(signal: Signal, tenant: &str, meta: &BlockMeta, file: &str) -> String {
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

    /// Reads what every query of a block reads first: its label file
    /// (`series.parquet` or `streams.parquet`) and the footer of its data
    /// file, so a cache in front of the store holds them before the first
    /// query (a store-gateway loading the blocks it owns).
    pub async fn warm(
        &self,
        signal: Signal,
        tenant: &str,
        meta: &BlockMeta,
    ) -> Result<(), StorageError> {
        self.select_labelled(signal, tenant, meta, &[]).await?;
        let data = match signal {
            Signal::Metrics => "chunks.parquet",
            Signal::Logs => "entries.parquet",
        };
        // Learning the schema reads the footer, as each scan does.
        self.ctx
            .read_parquet(
                Self::url(signal, tenant, meta, data),
                ParquetReadOptions::default(),
            )
            .await?;
        Ok(())
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
        // A query shard is a hash of the labels, tested on the rows found.
        let mut shards = Vec::new();
        for m in matchers {
            if let Some(shard) = strata_model::shard::QueryShard::of_matcher(m) {
                shards.push(shard);
                continue;
            }
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
        if !shards.is_empty() {
            out.retain(|(_, labels)| shards.iter().all(|s| s.contains(labels)));
        }
        Ok(out)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::block::{encode_block, upload_block};
    use strata_model::Labels;
    use strata_model::{Sample, StepWindows};

    pub(crate) fn series(name: &str, job: &str, n: i64) -> (Labels, Vec<Sample>) {
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

        // Steps 1,000 s apart reading 10 s back: the first chunk meets no
        // window, the others keep only their windows' samples.
        let windows = StepWindows::new(1_999_000, 1_000_000, 10_000);
        let got = reader
            .select_windows(
                "t1",
                &metas[0],
                std::slice::from_ref(&up),
                (0, 1_999_000),
                windows,
            )
            .await
            .unwrap();
        let a = got
            .iter()
            .find(|s| s.labels.get("job") == Some("a"))
            .unwrap();
        let want: Vec<Sample> = input[0]
            .1
            .iter()
            .filter(|s| (989_001..=999_000).contains(&s.t) || s.t >= 1_989_001)
            .copied()
            .collect();
        assert_eq!(want.len(), 20);
        assert_eq!(a.samples, want);
        // Series with no sample in a window are left out.
        assert_eq!(got.len(), 1);

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
}
