//! The log querier: LogQL and Loki's metadata queries for a tenant over the
//! log heads of the ring's ingesters merged with the tenant's Parquet log
//! blocks. Stream
//! selectors, the time range and leading line filters are pushed into the
//! DataFusion scans of the blocks; entries present in both (an identical
//! timestamp and line) are returned once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use strata_ingester_client::{IngesterPool, LogSelect};
use strata_limits::Overrides;
use strata_logql::{EvalError, LogSource, QueryParams, QueryResult, QueryStats, Selection};
use strata_model::logs::{EntrySize, LogEntry, LogStream};
use strata_model::{Labels, Matcher};
use strata_ring::Ring;
use strata_storage::{BlockCatalog, StorageError};
use strata_store_gateway::{BlockAnswer, BlockRead, StoreGateways};
use tracing::Instrument;

const NS_PER_MS: i64 = 1_000_000;

/// Reads a tenant's logs from the head and the blocks.
pub struct LogQuerier {
    recent: crate::RecentData,
    catalog: Arc<BlockCatalog>,
    /// Blocks, read through the store-gateways that own them.
    blocks: Arc<StoreGateways>,
    overrides: Arc<Overrides>,
    /// Longest time a query may run (`-querier.timeout`).
    timeout: std::time::Duration,
}

/// Errors of log queries, mapped to HTTP statuses by the API.
#[derive(Debug, thiserror::Error)]
pub enum LogQueryError {
    #[error(transparent)]
    Parse(#[from] strata_logql::ParseError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Internal(String),
    #[error("query timed out after {0:?} (-querier.timeout)")]
    Timeout(std::time::Duration),
}

impl From<EvalError> for LogQueryError {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::BadQuery(m) => Self::BadRequest(m),
            EvalError::Limit(m) => Self::Limit(m),
            EvalError::Storage(m) => Self::Internal(m),
        }
    }
}

/// `(step time ns, bytes)` points of one volume group.
pub type VolumePoints = Vec<(i64, u64)>;

/// Index statistics of matching streams (`/loki/api/v1/index/stats`).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct IndexStats {
    pub streams: u64,
    pub chunks: u64,
    pub entries: u64,
    pub bytes: u64,
}

struct TenantSource<'a> {
    q: &'a LogQuerier,
    tenant: &'a str,
}

impl LogSource for TenantSource<'_> {
    async fn select(&self, sel: Selection) -> Result<Vec<LogStream>, EvalError> {
        self.q
            .select(self.tenant, &sel)
            .await
            .map_err(|e| EvalError::Storage(e.to_string()))
    }
}

fn ms_range(start_ns: i64, end_ns: i64) -> (i64, i64) {
    (
        start_ns.div_euclid(NS_PER_MS),
        end_ns.div_euclid(NS_PER_MS) + 1,
    )
}

impl LogQuerier {
    /// A querier over the log heads of the ring's ingesters (reached
    /// through `ingesters`) and the log blocks in `catalog`.
    pub fn new(
        ring: Arc<Ring>,
        ingesters: Arc<IngesterPool>,
        catalog: Arc<BlockCatalog>,
        blocks: Arc<StoreGateways>,
        overrides: Arc<Overrides>,
    ) -> Self {
        Self {
            recent: crate::RecentData {
                ring,
                ingesters,
                catalog: catalog.clone(),
            },
            catalog,
            blocks,
            overrides,
            timeout: std::time::Duration::from_secs(120),
        }
    }

    /// Sets the longest time a query may run.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest time a query may run.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    /// Oldest entry time (ns) the tenant's log retention lets queries see.
    fn retention_floor_ns(&self, tenant: &str) -> i64 {
        strata_limits::Limits::retention_floor_ms(
            self.overrides.for_tenant(tenant).logs_retention_period,
            strata_model::now_ms(),
        )
        .saturating_mul(NS_PER_MS)
    }

    /// The tenant's limits.
    pub fn limits(&self, tenant: &str) -> Arc<strata_limits::Limits> {
        self.overrides.for_tenant(tenant)
    }

    /// Entries of a selection, head and blocks merged, each stream oldest first.
    pub async fn select(
        &self,
        tenant: &str,
        sel: &Selection,
    ) -> Result<Vec<LogStream>, StorageError> {
        let mut sel = sel.clone();
        sel.start_ns = sel.start_ns.max(self.retention_floor_ns(tenant));
        if sel.start_ns >= sel.end_ns {
            return Ok(Vec::new());
        }
        let select = LogSelect {
            matchers: &sel.matchers,
            filters: &sel.line_filters,
            start_ns: sel.start_ns,
            end_ns: sel.end_ns,
            limit: sel.limit,
        };
        let select = &select;
        let (head, blocks) = self
            .recent
            .then_blocks(tenant, ms_range(sel.start_ns, sel.end_ns), |c| async move {
                c.select_logs(tenant, select).await
            })
            .await?;
        let mut by_labels: HashMap<Labels, Vec<LogEntry>> = HashMap::new();
        let read = BlockRead::LogEntries {
            matchers: &sel.matchers,
            filters: &sel.line_filters,
            start_ns: sel.start_ns,
            end_ns: sel.end_ns,
            limit: sel.limit,
        };
        self.blocks
            .read(tenant, &blocks, &read, |answer| {
                if let BlockAnswer::LogEntries(got) = answer {
                    for s in got {
                        by_labels.entry(s.labels).or_default().extend(s.entries);
                    }
                }
                Ok::<(), StorageError>(())
            })
            .await??;
        for s in head.into_iter().flatten() {
            by_labels.entry(s.labels).or_default().extend(s.entries);
        }
        Ok(by_labels
            .into_iter()
            .map(|(labels, mut entries)| {
                strata_model::logs::dedup_entries(&mut entries);
                LogStream { labels, entries }
            })
            .collect())
    }

    /// Runs a LogQL query.
    pub async fn query(
        &self,
        tenant: &str,
        query: &str,
        params: &QueryParams,
    ) -> Result<(QueryResult, QueryStats), LogQueryError> {
        let span = tracing::info_span!("logql_query", tenant, query);
        let expr = strata_logql::parse(query)?;
        let limits = self.overrides.for_tenant(tenant);
        if params.limit > limits.max_entries_limit_per_query
            && limits.max_entries_limit_per_query > 0
        {
            return Err(LogQueryError::BadRequest(format!(
                "max entries limit per query exceeded, limit > max_entries_limit ({} > {})",
                params.limit, limits.max_entries_limit_per_query
            )));
        }
        let length = params.end_ns.saturating_sub(params.start_ns);
        // Loki's per-query limit, and the range-query limit shared with PromQL.
        for limit in [limits.max_query_length, limits.max_total_query_length] {
            let max_len = i64::try_from(limit.as_nanos()).unwrap_or(i64::MAX);
            if max_len > 0 && length > max_len {
                return Err(LogQueryError::BadRequest(format!(
                    "the query time range exceeds the limit (query length: {}, limit: {})",
                    humantime::format_duration(std::time::Duration::from_nanos(
                        length.max(0) as u64
                    )),
                    humantime::format_duration(limit)
                )));
            }
        }
        let source = TenantSource { q: self, tenant };
        let run = strata_logql::evaluate(&source, &expr, params).instrument(span);
        match tokio::time::timeout(self.timeout, run).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(LogQueryError::Timeout(self.timeout)),
        }
    }

    /// Label sets of streams matching `matchers` (all streams when empty)
    /// with entries in `[start_ns, end_ns)`.
    pub async fn streams(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<BTreeSet<Labels>, StorageError> {
        let start_ns = start_ns.max(self.retention_floor_ns(tenant));
        if start_ns >= end_ns {
            return Ok(BTreeSet::new());
        }
        let (head, blocks) = self
            .recent
            .then_blocks(tenant, ms_range(start_ns, end_ns), |c| async move {
                c.log_streams(tenant, matchers, start_ns, end_ns).await
            })
            .await?;
        let mut out: BTreeSet<Labels> = head.into_iter().flatten().collect();
        self.blocks
            .read(
                tenant,
                &blocks,
                &BlockRead::Streams { matchers },
                |answer| {
                    if let BlockAnswer::Streams(got) = answer {
                        out.extend(got);
                    }
                    Ok::<(), StorageError>(())
                },
            )
            .await??;
        Ok(out)
    }

    /// Label names of matching streams.
    pub async fn label_names(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<String>, StorageError> {
        let streams = self.streams(tenant, matchers, start_ns, end_ns).await?;
        Ok(crate::names_of(streams.iter()))
    }

    /// Values of label `name` in matching streams.
    pub async fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<String>, StorageError> {
        let streams = self.streams(tenant, matchers, start_ns, end_ns).await?;
        Ok(crate::values_of(streams.iter(), name))
    }

    /// Streams, blocks, entries and bytes of matching streams in the range.
    pub async fn index_stats(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<IndexStats, StorageError> {
        let (min_ms, max_ms) = ms_range(start_ns, end_ns);
        let chunks = self.catalog.blocks(tenant, min_ms, max_ms).await?.len() as u64;
        let mut s = IndexStats {
            chunks,
            ..IndexStats::default()
        };
        let mut streams: HashSet<Labels> = HashSet::new();
        self.visit_entry_sizes(tenant, matchers, start_ns, end_ns, |labels, sizes| {
            if !streams.contains(labels) {
                streams.insert(labels.clone());
            }
            s.entries += sizes.len() as u64;
            s.bytes += sizes.iter().map(|e| e.bytes).sum::<u64>();
        })
        .await?;
        s.streams = streams.len() as u64;
        Ok(s)
    }

    /// Calls `visit(stream labels, sizes of its entries)` for the matching
    /// streams' entries in `[start_ns, end_ns)`, head and blocks, each entry
    /// once (replicas share time and line). Only sizes are read: the
    /// ingesters answer with sizes, and blocks are scanned for them one
    /// group of overlapping time ranges at a time, so memory holds the
    /// head's sizes and one group's, never a line. A stream may be visited
    /// once per group.
    async fn visit_entry_sizes(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        mut visit: impl FnMut(&Labels, &[EntrySize]),
    ) -> Result<(), StorageError> {
        let start_ns = start_ns.max(self.retention_floor_ns(tenant));
        if start_ns >= end_ns {
            return Ok(());
        }
        let select = LogSelect {
            matchers,
            filters: &[],
            start_ns,
            end_ns,
            limit: None,
        };
        let select = &select;
        let (head, blocks) = self
            .recent
            .then_blocks(tenant, ms_range(start_ns, end_ns), |c| async move {
                c.select_log_sizes(tenant, select).await
            })
            .await?;
        let head_sizes: Vec<(Labels, Vec<EntrySize>)> = head.into_iter().flatten().collect();
        let head_range = head_sizes
            .iter()
            .flat_map(|(_, sizes)| sizes)
            .fold((i64::MAX, i64::MIN), |(lo, hi), e| {
                (lo.min(e.ts), hi.max(e.ts))
            });
        // Sources by time range (ns, first and last included): blocks (whose
        // max_time is exclusive), then the head.
        let mut sources: Vec<(i64, i64, Option<usize>)> = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    b.min_time.saturating_mul(NS_PER_MS),
                    b.max_time.saturating_mul(NS_PER_MS) - 1,
                    Some(i),
                )
            })
            .collect();
        if !head_sizes.is_empty() {
            sources.push((head_range.0, head_range.1, None));
        }
        let mut head_sizes = Some(head_sizes);
        let read = BlockRead::LogSizes {
            matchers,
            start_ns,
            end_ns,
        };
        for group in overlapping_groups(sources) {
            let mut by_labels: HashMap<Labels, Vec<EntrySize>> = HashMap::new();
            let mut group_blocks = Vec::with_capacity(group.len());
            for source in group {
                match source {
                    Some(i) => group_blocks.push(blocks[i].clone()),
                    None => {
                        for (labels, sizes) in head_sizes.take().unwrap_or_default() {
                            by_labels.entry(labels).or_default().extend(sizes);
                        }
                    }
                }
            }
            self.blocks
                .read(tenant, &group_blocks, &read, |answer| {
                    if let BlockAnswer::LogSizes(got) = answer {
                        for (labels, sizes) in got {
                            by_labels.entry(labels).or_default().extend(sizes);
                        }
                    }
                    Ok::<(), StorageError>(())
                })
                .await??;
            for (labels, mut sizes) in by_labels {
                sizes.sort_unstable();
                sizes.dedup();
                visit(&labels, &sizes);
            }
        }
        Ok(())
    }

    /// Bytes of matching streams in `[start_ns, end_ns)` grouped by
    /// `target_labels` (default: the selector's label names), largest first,
    /// at most `limit` groups.
    pub async fn volume(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        target_labels: &[String],
        start_ns: i64,
        end_ns: i64,
        limit: usize,
    ) -> Result<Vec<(Labels, u64)>, StorageError> {
        let span = end_ns.saturating_sub(start_ns).max(1);
        let groups = self
            .volume_range(
                tenant,
                matchers,
                target_labels,
                start_ns,
                end_ns,
                span,
                limit,
            )
            .await?;
        Ok(groups
            .into_iter()
            .map(|(l, pts)| (l, pts.iter().map(|p| p.1).sum()))
            .collect())
    }

    /// Bytes per group per step: the point at step `t` sums the lines in
    /// `(t - step, t]` (steps from `start_ns + step` to `end_ns`); groups as in
    /// [`Self::volume`], ranked by their total.
    #[allow(clippy::too_many_arguments)]
    pub async fn volume_range(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        target_labels: &[String],
        start_ns: i64,
        end_ns: i64,
        step_ns: i64,
        limit: usize,
    ) -> Result<Vec<(Labels, VolumePoints)>, StorageError> {
        let names: Vec<String> = if target_labels.is_empty() {
            let mut n: Vec<String> = matchers.iter().map(|m| m.name.clone()).collect();
            n.sort();
            n.dedup();
            n
        } else {
            target_labels.to_vec()
        };
        let step = step_ns.max(1);
        let mut groups: BTreeMap<Labels, BTreeMap<i64, u64>> = BTreeMap::new();
        self.visit_entry_sizes(tenant, matchers, start_ns, end_ns, |labels, sizes| {
            let g = groups.entry(labels.filter_names(&names, true)).or_default();
            for e in sizes {
                // The first step end at or after the entry (in i128: the
                // range may span all of i64).
                let (ts, start, step) = (i128::from(e.ts), i128::from(start_ns), i128::from(step));
                let k = (ts - start + step - 1).div_euclid(step).max(1);
                let t = (start + k * step).min(i128::from(end_ns)) as i64;
                *g.entry(t).or_default() += e.bytes;
            }
        })
        .await?;
        let mut out: Vec<(Labels, VolumePoints, u64)> = groups
            .into_iter()
            .map(|(l, pts)| {
                let total = pts.values().sum();
                (l, pts.into_iter().collect(), total)
            })
            .collect();
        out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out.into_iter().map(|(l, p, _)| (l, p)).collect())
    }
}

/// Groups sources `(first, last, id)` whose time ranges overlap (touching
/// counts), transitively: an entry's replicas are all in one group.
fn overlapping_groups<T>(mut sources: Vec<(i64, i64, T)>) -> Vec<Vec<T>> {
    sources.sort_by_key(|s| s.0);
    let mut groups: Vec<Vec<T>> = Vec::new();
    let mut group_end = i64::MIN;
    for (first, last, id) in sources {
        match groups.last_mut() {
            Some(g) if first <= group_end => g.push(id),
            _ => groups.push(vec![id]),
        }
        group_end = group_end.max(last);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::overlapping_groups;

    #[test]
    fn overlapping_and_touching_ranges_share_a_group() {
        let groups = overlapping_groups(vec![
            (20, 30, 'c'),
            (0, 10, 'a'),
            (10, 15, 'b'),
            (5, 8, 'd'),
            (40, 50, 'e'),
            (31, 39, 'f'),
        ]);
        assert_eq!(
            groups,
            vec![vec!['a', 'd', 'b'], vec!['c'], vec!['f'], vec!['e']]
        );
    }
}
