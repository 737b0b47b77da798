//! The querier: answers PromQL and metadata queries for a tenant over the
//! ingester's head (recent data) merged with the tenant's Parquet blocks in
//! the object store (older data). Series present in both are merged by label
//! set and identical samples de-duplicated, so the hand-over from head to
//! block (and a block re-cut after a crash) shows neither gaps nor doubles.

pub mod logs;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};
use tracing::Instrument;

use async_trait::async_trait;
use prometheus::{HistogramOpts, HistogramVec, Registry};
use promql_parser::parser::token::T_EQL_REGEX;
use strata_ingester_client::{ClientError, IngesterClient, IngesterPool, Metadata, MetadataAnswer};
use strata_limits::Overrides;
use strata_model::head_stats::HeadStats;
use strata_model::metadata::MetricMetadata;
use strata_model::{
    Exemplar, Labels, METRIC_NAME, Matcher, SeriesSamples, StepWindows, merge_samples,
};
use strata_promql::{Engine, EngineError, QueryOutput, Queryable};
use strata_ring::Ring;
use strata_storage::{BlockCatalog, BlockMeta, StorageError};
use strata_store_gateway::{BlockAnswer, BlockRead, StoreGateways};

static QUERY_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "strata_querier_request_duration_seconds",
            "Time to evaluate queries, by kind and outcome.",
        )
        .buckets(prometheus::exponential_buckets(0.001, 4.0, 9).expect("valid buckets")),
        &["kind", "status"],
    )
    .expect("valid metric definition")
});

/// Registers the querier's metrics with `registry`.
pub fn register_metrics(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(QUERY_SECONDS.clone()))
}

/// The ingesters holding recent data, and the catalog their unindexed
/// uploads join.
pub(crate) struct RecentData {
    ring: Arc<Ring>,
    ingesters: Arc<IngesterPool>,
    catalog: Arc<BlockCatalog>,
}

impl RecentData {
    /// Calls every ingester that may hold the tenant's recent data, in
    /// parallel, and returns their answers. Replicas make up for as many
    /// failed or unhealthy ingesters as a write may have missed; beyond
    /// that the read fails rather than answer with holes. Blocks the
    /// ingesters uploaded but the bucket index does not list yet join the
    /// catalog before the caller lists it.
    pub(crate) async fn ask<'a, T, F, Fut>(&self, tenant: &str, call: F) -> Result<Vec<T>, String>
    where
        F: Fn(IngesterClient) -> Fut,
        Fut: std::future::Future<Output = Result<(T, Vec<BlockMeta>), ClientError>> + 'a,
    {
        let view = self.ring.ingesters();
        let cfg = self.ring.config();
        let set = view
            .read_set(
                cfg.replication_factor,
                strata_ring::now_ms(),
                cfg.heartbeat_timeout.as_millis() as i64,
            )
            .map_err(|e| format!("cannot read recent data: {e}"))?;
        let calls = set.instances.iter().map(|i| {
            let inst = &view.instances()[*i];
            let client = self.ingesters.client(&inst.id, &inst.grpc_addr);
            let call = &call;
            async move { call(client?).await }
        });
        let results = futures::future::join_all(calls).await;
        let mut out = Vec::with_capacity(results.len());
        let mut failures = set.unhealthy;
        let mut last_error = None;
        for r in results {
            match r {
                Ok((v, blocks)) => {
                    for b in blocks {
                        self.catalog.add(tenant, b).await;
                    }
                    out.push(v);
                }
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "ingester read failed");
                    failures += 1;
                    last_error = Some(e);
                }
            }
        }
        if failures > set.max_errors {
            return Err(format!(
                "too many ingesters unavailable ({failures}, at most {} tolerated): {}",
                set.max_errors,
                last_error.map_or_else(|| "unhealthy in the ring".to_string(), |e| e.to_string())
            ));
        }
        Ok(out)
    }

    /// How many ingesters hold each series (the replication factor, or
    /// fewer when the ring has fewer ingesters).
    pub(crate) fn replicas(&self) -> usize {
        let view = self.ring.ingesters();
        view.effective_rf(self.ring.config().replication_factor)
    }

    /// The ingesters' answers (see [`Self::ask`]), then the tenant's blocks
    /// overlapping `[min_ms, max_ms]`. In this order: a block whose upload
    /// finishes in between was still pending in the heads' answers, and one
    /// that finished before is in the list (blocks join the catalog before
    /// they leave the pending set). The other order could miss a block's
    /// data entirely. Every read of head and blocks, for both signals,
    /// starts here.
    pub(crate) async fn then_blocks<'a, T, F, Fut>(
        &self,
        tenant: &str,
        (min_ms, max_ms): (i64, i64),
        call: F,
    ) -> Result<(Vec<T>, Vec<BlockMeta>), StorageError>
    where
        F: Fn(IngesterClient) -> Fut,
        Fut: std::future::Future<Output = Result<(T, Vec<BlockMeta>), ClientError>> + 'a,
    {
        let head = self
            .ask(tenant, call)
            .await
            .map_err(StorageError::Unavailable)?;
        let blocks = self.catalog.blocks(tenant, min_ms, max_ms).await?;
        Ok((head, blocks))
    }
}

/// Reads a tenant's data from the ingesters' heads and the blocks.
pub struct Querier {
    recent: RecentData,
    /// Blocks, read through the store-gateways that own them.
    blocks: Arc<StoreGateways>,
    engine: Engine,
    overrides: Arc<Overrides>,
}

/// One tenant's data, what a query's plan reads.
struct TenantView {
    querier: Arc<Querier>,
    tenant: String,
    /// The query's span: the plan may poll selections on DataFusion's
    /// tasks, outside it, and the calls to ingesters carry its context.
    span: tracing::Span,
}

#[async_trait]
impl Queryable for TenantView {
    async fn select(
        &self,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<Vec<SeriesSamples>, EngineError> {
        self.querier
            .select(&self.tenant, matchers, min_t, max_t)
            .instrument(self.span.clone())
            .await
    }

    async fn select_windows(
        &self,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
        windows: StepWindows,
    ) -> Result<Vec<SeriesSamples>, EngineError> {
        self.querier
            .select_windows(&self.tenant, matchers, (min_t, max_t), Some(windows))
            .instrument(self.span.clone())
            .await
    }
}

/// Sorted distinct label names of `sets`.
pub(crate) fn names_of<'a>(sets: impl Iterator<Item = &'a Labels>) -> Vec<String> {
    let names: BTreeSet<&str> = sets
        .flat_map(|l| l.iter().map(|l| l.name.as_str()))
        .collect();
    names.into_iter().map(str::to_string).collect()
}

/// Sorted distinct values of label `name` in `sets`.
pub(crate) fn values_of<'a>(sets: impl Iterator<Item = &'a Labels>, name: &str) -> Vec<String> {
    let values: BTreeSet<&str> = sets.filter_map(|l| l.get(name)).collect();
    values.into_iter().map(str::to_string).collect()
}

fn storage_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Storage(e.to_string())
}

/// A matcher list requiring label `name` to be present (non-empty).
fn has_label(name: &str) -> Option<Matcher> {
    Matcher::new_matcher(T_EQL_REGEX, name.to_string(), ".+".to_string()).ok()
}

/// Matcher alternatives that select every series (all have a metric name).
fn all_series() -> Vec<Vec<Matcher>> {
    vec![has_label(METRIC_NAME).into_iter().collect()]
}

impl Querier {
    /// A querier over the heads of the ring's ingesters (reached through
    /// `ingesters`) and the blocks in `catalog`, read through `blocks`.
    pub fn new(
        ring: Arc<Ring>,
        ingesters: Arc<IngesterPool>,
        catalog: Arc<BlockCatalog>,
        blocks: Arc<StoreGateways>,
        engine: Engine,
        overrides: Arc<Overrides>,
    ) -> Self {
        Self {
            recent: RecentData {
                ring,
                ingesters,
                catalog,
            },
            blocks,
            engine,
            overrides,
        }
    }

    /// Oldest sample time (ms) the tenant's metrics retention lets queries see.
    fn retention_floor(&self, tenant: &str) -> i64 {
        strata_limits::Limits::retention_floor_ms(
            self.overrides
                .for_tenant(tenant)
                .compactor_blocks_retention_period,
            strata_model::now_ms(),
        )
    }

    /// The PromQL engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Samples of matching series in `[min_t, max_t]`, head and blocks merged.
    pub async fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<Vec<SeriesSamples>, EngineError> {
        self.select_windows(tenant, matchers, (min_t, max_t), None)
            .await
    }

    /// [`Self::select`], only the samples in `windows` when given: blocks
    /// drop the others as they decode them (in the store-gateways, so they
    /// are not sent either), the heads' answers here.
    pub async fn select_windows(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        (min_t, max_t): (i64, i64),
        windows: Option<StepWindows>,
    ) -> Result<Vec<SeriesSamples>, EngineError> {
        let min_t = min_t.max(self.retention_floor(tenant));
        if min_t > max_t {
            return Ok(Vec::new());
        }
        let mut by_labels: strata_model::LabelsMap<Vec<strata_model::Sample>> = Default::default();
        let (head, blocks) = self
            .recent
            .then_blocks(tenant, (min_t, max_t), |c| async move {
                c.select(tenant, matchers, min_t, max_t).await
            })
            .await
            .map_err(storage_err)?;
        let read = BlockRead::Samples {
            matchers,
            min_t,
            max_t,
            windows,
        };
        self.blocks
            .read(tenant, &blocks, &read, |answer| {
                if let BlockAnswer::Samples(got) = answer {
                    for s in got {
                        merge_samples(by_labels.entry(s.labels).or_default(), &s.samples);
                    }
                }
                // Checked as blocks add series, not only once all are loaded.
                self.check_fetched_series(tenant, by_labels.len())
            })
            .await
            .map_err(storage_err)??;
        // Head last; any order gives the same answer (see merge_samples).
        for mut s in head.into_iter().flatten() {
            if let Some(w) = windows {
                w.retain(&mut s.samples);
                if s.samples.is_empty() {
                    continue;
                }
            }
            merge_samples(by_labels.entry(s.labels).or_default(), &s.samples);
        }
        self.check_fetched_series(tenant, by_labels.len())?;
        Ok(by_labels
            .into_iter()
            .map(|(labels, samples)| SeriesSamples { labels, samples })
            .collect())
    }

    /// Label sets, label names or one label's values (`what`) of the
    /// series matching any of `alternatives`, from the ingesters and the
    /// blocks: the ingesters answer names and values themselves, so only
    /// those cross the network.
    async fn metadata(
        &self,
        tenant: &str,
        what: Metadata<'_>,
        alternatives: &[Vec<Matcher>],
        min_t: i64,
        max_t: i64,
    ) -> Result<(BTreeSet<Labels>, BTreeSet<String>), EngineError> {
        // Bounded like queries: a request may name many selectors.
        let timeout = self.engine.options().timeout;
        let read = self.read_metadata(tenant, what, alternatives, min_t, max_t);
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or(Err(EngineError::Timeout("series metadata")))
    }

    async fn read_metadata(
        &self,
        tenant: &str,
        what: Metadata<'_>,
        alternatives: &[Vec<Matcher>],
        min_t: i64,
        max_t: i64,
    ) -> Result<(BTreeSet<Labels>, BTreeSet<String>), EngineError> {
        let mut series: BTreeSet<Labels> = BTreeSet::new();
        let mut values: BTreeSet<String> = BTreeSet::new();
        let min_t = min_t.max(self.retention_floor(tenant));
        if min_t > max_t {
            return Ok((series, values));
        }
        let what = &what;
        let (answers, blocks) = self
            .recent
            .then_blocks(tenant, (min_t, max_t), |c| async move {
                c.metadata(tenant, what, alternatives, min_t, max_t).await
            })
            .await
            .map_err(storage_err)?;
        for a in answers {
            match a {
                MetadataAnswer::Series(s) => series.extend(s),
                MetadataAnswer::Values(v) => values.extend(v),
            }
        }
        for matchers in alternatives {
            let read = BlockRead::Series { matchers };
            self.blocks
                .read(tenant, &blocks, &read, |answer| {
                    let BlockAnswer::Series(got) = answer else {
                        return Ok::<(), EngineError>(());
                    };
                    for l in got {
                        match what {
                            Metadata::Series => {
                                series.insert(l);
                            }
                            Metadata::LabelNames => {
                                values.extend(l.iter().map(|l| l.name.clone()));
                            }
                            Metadata::LabelValues(name) => {
                                values.extend(l.get(name).map(str::to_string));
                            }
                        }
                    }
                    Ok(())
                })
                .await
                .map_err(storage_err)??;
        }
        Ok((series, values))
    }

    /// Refuses a query past the tenant's `max_fetched_series_per_query`.
    fn check_fetched_series(&self, tenant: &str, n: usize) -> Result<(), EngineError> {
        let limit = self
            .overrides
            .for_tenant(tenant)
            .max_fetched_series_per_query;
        if limit > 0 && n > limit {
            return Err(EngineError::Execution(format!(
                "the query exceeded the maximum number of series (limit: {limit} series); narrow the selector or ask for a higher max_fetched_series_per_query"
            )));
        }
        Ok(())
    }

    /// Label sets of series matching any of the matcher alternatives.
    pub async fn series(
        &self,
        tenant: &str,
        alternatives: &[Vec<Matcher>],
        min_t: i64,
        max_t: i64,
    ) -> Result<Vec<Labels>, EngineError> {
        let (series, _) = self
            .metadata(tenant, Metadata::Series, alternatives, min_t, max_t)
            .await?;
        self.check_fetched_series(tenant, series.len())?;
        Ok(series.into_iter().collect())
    }

    /// The limits in effect for `tenant`.
    pub fn limits(&self, tenant: &str) -> Arc<strata_limits::Limits> {
        self.overrides.for_tenant(tenant)
    }

    /// Label sets of the series in the ingesters' heads (the tenant's
    /// in-memory series, as Mimir's cardinality API counts them) matching
    /// any of the alternatives with samples in `[min_t, max_t]`; each
    /// series once however many replicas hold it.
    pub async fn head_series(
        &self,
        tenant: &str,
        alternatives: &[Vec<Matcher>],
        min_t: i64,
        max_t: i64,
    ) -> Result<BTreeSet<Labels>, EngineError> {
        let read = async {
            let answers = self
                .recent
                .ask(tenant, |c| async move {
                    let (answer, _) = c
                        .metadata(tenant, &Metadata::Series, alternatives, min_t, max_t)
                        .await?;
                    Ok((answer, Vec::new()))
                })
                .await
                .map_err(storage_err)?;
            let mut series = BTreeSet::new();
            for a in answers {
                if let MetadataAnswer::Series(s) = a {
                    series.extend(s);
                }
            }
            Ok(series)
        };
        let timeout = self.engine.options().timeout;
        let series = tokio::time::timeout(timeout, read)
            .await
            .unwrap_or(Err(EngineError::Timeout("cardinality")))?;
        self.check_fetched_series(tenant, series.len())?;
        Ok(series)
    }

    /// The tenant's metric metadata (of `metric` only, when given) from the
    /// ingesters that hold it, replicas merged: per family, its distinct
    /// entries. Metadata lives in ingesters only, as in Mimir: clients
    /// resend it, so it never needs to reach blocks.
    pub async fn metric_metadata(
        &self,
        tenant: &str,
        metric: Option<&str>,
    ) -> Result<BTreeMap<String, BTreeSet<MetricMetadata>>, EngineError> {
        let answers = self
            .recent
            .ask(tenant, |c| async move {
                Ok((c.metric_metadata(tenant, metric).await?, Vec::new()))
            })
            .await
            .map_err(storage_err)?;
        let mut out: BTreeMap<String, BTreeSet<MetricMetadata>> = BTreeMap::new();
        for m in answers.into_iter().flatten() {
            out.entry(m.metric_family.clone()).or_default().insert(m);
        }
        Ok(out)
    }

    /// The tenant's head cardinality over the ingesters holding its recent
    /// data (see [`HeadStats::merge`]), each list cut to `limit`.
    pub async fn head_stats(&self, tenant: &str, limit: usize) -> Result<HeadStats, EngineError> {
        // Ingesters send more than `limit` so the merged top is closer to exact.
        let wide = limit.saturating_mul(4).max(40);
        let parts = self
            .recent
            .ask(tenant, |c| async move {
                Ok((c.head_stats(tenant, wide).await?, Vec::new()))
            })
            .await
            .map_err(storage_err)?;
        let replicas = self.recent.replicas() as u64;
        Ok(HeadStats::merge(parts, replicas, limit))
    }

    /// Exemplars in `[start, end]` (ms) of the series matching any of
    /// `alternatives`, from the ingesters that hold them (exemplars live in
    /// ingesters only, as in Mimir), replicas merged: per series, in time
    /// order, each once.
    pub async fn exemplars(
        &self,
        tenant: &str,
        alternatives: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<(Labels, Vec<Exemplar>)>, EngineError> {
        let answers = self
            .recent
            .ask(tenant, |c| async move {
                Ok((
                    c.exemplars(tenant, alternatives, start, end).await?,
                    Vec::new(),
                ))
            })
            .await
            .map_err(storage_err)?;
        let mut merged: BTreeMap<Labels, Vec<Exemplar>> = BTreeMap::new();
        for (series, exemplars) in answers.into_iter().flatten() {
            merged.entry(series).or_default().extend(exemplars);
        }
        for exemplars in merged.values_mut() {
            exemplars.sort_by(|a, b| {
                (a.t, a.value.to_bits(), &a.labels).cmp(&(b.t, b.value.to_bits(), &b.labels))
            });
            exemplars.dedup_by(|a, b| {
                a.t == b.t && a.value.to_bits() == b.value.to_bits() && a.labels == b.labels
            });
        }
        Ok(merged.into_iter().collect())
    }

    /// Sorted label names of matching series (all series when `alternatives` is empty).
    pub async fn label_names(
        &self,
        tenant: &str,
        alternatives: &[Vec<Matcher>],
        min_t: i64,
        max_t: i64,
    ) -> Result<Vec<String>, EngineError> {
        let alts = if alternatives.is_empty() {
            all_series()
        } else {
            alternatives.to_vec()
        };
        let (_, names) = self
            .metadata(tenant, Metadata::LabelNames, &alts, min_t, max_t)
            .await?;
        Ok(names.into_iter().collect())
    }

    /// Sorted values of label `name` among matching series.
    pub async fn label_values(
        &self,
        tenant: &str,
        name: &str,
        alternatives: &[Vec<Matcher>],
        min_t: i64,
        max_t: i64,
    ) -> Result<Vec<String>, EngineError> {
        let mut alts = if alternatives.is_empty() {
            all_series()
        } else {
            alternatives.to_vec()
        };
        // Only series that have the label can contribute a value.
        if let Some(has) = has_label(name) {
            for a in &mut alts {
                a.push(has.clone());
            }
        }
        let (_, values) = self
            .metadata(tenant, Metadata::LabelValues(name), &alts, min_t, max_t)
            .await?;
        Ok(values.into_iter().collect())
    }

    /// Runs an instant query.
    pub async fn instant_query(
        self: &Arc<Self>,
        tenant: &str,
        query: &str,
        t: i64,
    ) -> Result<QueryOutput, EngineError> {
        let timer = std::time::Instant::now();
        let view = Arc::new(TenantView {
            querier: self.clone(),
            tenant: tenant.to_string(),
            span: tracing::Span::current(),
        });
        let r = self.engine.instant(view, query, t).await;
        observe("instant", &r, timer);
        r
    }

    /// Runs a range query.
    pub async fn range_query(
        self: &Arc<Self>,
        tenant: &str,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryOutput, EngineError> {
        let timer = std::time::Instant::now();
        let view = Arc::new(TenantView {
            querier: self.clone(),
            tenant: tenant.to_string(),
            span: tracing::Span::current(),
        });
        let limit = self.overrides.for_tenant(tenant).max_total_query_length;
        let length = std::time::Duration::from_millis(end.saturating_sub(start).max(0) as u64);
        if !limit.is_zero() && length > limit {
            let r = Err(EngineError::BadData(format!(
                "the total query time range exceeds the limit (query length: {}, limit: {}); shorten the range or ask for a higher max_total_query_length",
                strata_model::humantime_serde::format(length),
                strata_model::humantime_serde::format(limit)
            )));
            observe("range", &r, timer);
            return r;
        }
        let r = self.engine.range(view, query, start, end, step).await;
        observe("range", &r, timer);
        r
    }
}

fn observe(kind: &str, r: &Result<QueryOutput, EngineError>, timer: std::time::Instant) {
    let status = match r {
        Ok(_) => "success",
        Err(e) => e.error_type(),
    };
    QUERY_SECONDS
        .with_label_values(&[kind, status])
        .observe(timer.elapsed().as_secs_f64());
}
