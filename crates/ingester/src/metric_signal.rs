//! Metrics as a [`Signal`] of the head: float samples in series with
//! compressed chunks ([`crate::series`]), millisecond timestamps, WAL series
//! records that introduce refs and sample records that use them (as
//! Prometheus TSDB), Parquet metric blocks.
//!
//! Metric metadata and exemplars ride the same write frame: a push may
//! carry them, WAL records of their own keep them, and the tenant's
//! [`MetadataIndex`](crate::metadata::MetadataIndex) and
//! [`ExemplarIndex`](crate::exemplars::ExemplarIndex) hold them.
//!
//! A sample is accepted when it is newer than its series' last one, or
//! within the tenant's out-of-order window behind it (kept in a sorted
//! side buffer), and not older than the last cut. The same value at the same
//! timestamp is a retried push and is dropped without error.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::ObjectStore;
use parking_lot::Mutex;
use strata_model::head_stats::HeadStats;
use strata_model::metadata::MetricMetadata;
use strata_model::{
    Exemplar, Labels, Matcher, Sample, SeriesBatch, SeriesSamples, matches_all, merge_samples,
};
use strata_storage::{BlockMeta, EncodedBlock, StorageError, encode_block, upload_block};

use crate::head::{Head, TenantHead};
use crate::series::{HeadIndex, MemSeries, SeriesData};
use crate::series_labels::SeriesLabels;
use crate::signal::{Applied, Cut, Signal, SignalMetrics, WalAppend};
use crate::{
    IngesterError, PushLimits, PushOutcome, RejectReason, Rejected, RejectedSeries, TsdbConfig,
    metrics, walrec,
};

/// The metric ingester.
pub type Ingester = Head<MetricSignal>;

/// Metrics in the head (see the module documentation).
pub struct MetricSignal {
    /// Next series ref; refs are unique per ingester across tenants.
    next_ref: AtomicU64,
    /// The process-wide out-of-order window (ms) the head keeps before cutting.
    ooo_window_ms: i64,
    /// How long metadata not received again is kept (ms).
    metadata_retain_ms: i64,
}

/// What a metric push carries.
#[derive(Clone, Copy)]
pub struct MetricPush<'a> {
    /// Series and their samples.
    pub series: &'a SeriesBatch,
    /// Metric metadata.
    pub metadata: &'a [MetricMetadata],
    /// Exemplars, each with its series' labels.
    pub exemplars: &'a [(Labels, Exemplar)],
}

impl Default for MetricPush<'_> {
    fn default() -> Self {
        static NO_SERIES: std::sync::LazyLock<SeriesBatch> =
            std::sync::LazyLock::new(SeriesBatch::default);
        Self {
            series: &NO_SERIES,
            metadata: &[],
            exemplars: &[],
        }
    }
}

/// A series' in-order samples of one push: a sender usually has one or two
/// per series in a request, kept without an allocation.
type PushedSamples = smallvec::SmallVec<[Sample; 2]>;

/// What a metric push accepted.
pub struct AcceptedSamples {
    /// Series the push creates that received samples: logged and indexed.
    new_series: Vec<Arc<MemSeries>>,
    /// Per series: in-order samples, and out-of-order ones (time-ordered).
    samples: Vec<(Arc<MemSeries>, PushedSamples, Vec<Sample>)>,
    /// Metadata entries kept, received at `received_ms`.
    metadata: Vec<MetricMetadata>,
    received_ms: i64,
    /// Exemplars kept, and the tenant's exemplar limit (this ingester's share).
    exemplars: Vec<(Labels, Exemplar)>,
    max_exemplars: usize,
}

impl Signal for MetricSignal {
    const NAME: &'static str = "metrics";
    const WAL_DIR: &'static str = "wal";
    const SHIPPED_FILE: &'static str = "shipped.json";
    const UNITS_PER_MS: i64 = 1;

    type Item = Sample;
    type Index = HeadIndex;
    type Batch<'a> = MetricPush<'a>;
    type Limits = PushLimits;
    type Outcome = PushOutcome;
    type Accepted = AcceptedSamples;
    type Replay = HashMap<u64, Arc<MemSeries>>;
    type Block = EncodedBlock;

    fn time(item: &Sample) -> i64 {
        item.t
    }

    fn metrics() -> SignalMetrics {
        SignalMetrics {
            appended: &metrics::SAMPLES_APPENDED,
            rejected: &metrics::SAMPLES_REJECTED,
            series: &metrics::HEAD_SERIES,
            blocks_uploaded: &metrics::BLOCKS_UPLOADED,
        }
    }

    fn window(&self) -> i64 {
        self.ooo_window_ms
    }

    fn check(
        &self,
        head: &TenantHead<Self>,
        push: MetricPush<'_>,
        limits: &PushLimits,
        min_valid: i64,
    ) -> (PushOutcome, Option<AcceptedSamples>) {
        let batch = push.series;
        // Samples older than the head's cut boundary are refused as out of
        // bounds whatever the tenant's window; the head keeps the
        // process-wide window (the limits default) before cutting.
        let ooo_window = limits.out_of_order_time_window.as_millis() as i64;
        let mut outcome = PushOutcome::default();
        let mut new_series: Vec<Arc<MemSeries>> = Vec::new();
        // New series of this push by label hash (a push may repeat one).
        let mut new_by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut accepted: Vec<(Arc<MemSeries>, PushedSamples, Vec<Sample>)> =
            Vec::with_capacity(batch.len());
        let mut pos_of_series: HashMap<u64, usize, rustc_hash::FxBuildHasher> =
            HashMap::with_capacity_and_hasher(batch.len(), Default::default());
        let idx = head.index.read();
        for (i, pushed) in batch.iter().enumerate() {
            let samples = pushed.samples();
            let Some(first) = samples.first() else {
                continue;
            };
            let hash = pushed.hash64();
            let series = match idx.get_pushed(&pushed) {
                Some(s) => s.clone(),
                None => match new_by_hash.get(&hash).and_then(|ks| {
                    ks.iter()
                        .copied()
                        .find(|&k| new_series[k].labels.eq_pushed(&pushed))
                }) {
                    Some(k) => new_series[k].clone(),
                    None if limits.max_series > 0
                        && idx.series.len() + new_series.len() >= limits.max_series =>
                    {
                        metrics::SAMPLES_REJECTED
                            .with_label_values(&[RejectReason::SeriesLimit.as_str()])
                            .inc_by(samples.len() as u64);
                        outcome.rejected.push(RejectedSeries {
                            index: i,
                            reason: RejectReason::SeriesLimit,
                            count: samples.len(),
                            first_timestamp: first.t,
                        });
                        continue;
                    }
                    None => {
                        let s = Arc::new(MemSeries {
                            r#ref: self.next_ref.fetch_add(1, Ordering::Relaxed),
                            labels: SeriesLabels::from_pairs(pushed.labels()),
                            data: Mutex::new(SeriesData::default()),
                        });
                        new_by_hash.entry(hash).or_default().push(new_series.len());
                        new_series.push(s.clone());
                        s
                    }
                },
            };
            let slot = *pos_of_series.entry(series.r#ref).or_insert_with(|| {
                accepted.push((series.clone(), PushedSamples::new(), Vec::new()));
                accepted.len() - 1
            });
            let (_, in_order, ooo) = &mut accepted[slot];
            let d = series.data.lock();
            let mut last = in_order.last().copied().or(d.last());
            let mut rejected: Option<RejectedSeries> = None;
            for s in samples {
                let verdict = if s.t < min_valid {
                    Err(RejectReason::OutOfBounds)
                } else {
                    match last {
                        None => Ok(true),
                        Some(l) if s.t > l.t => Ok(true),
                        Some(l) if s.t == l.t => {
                            if l.v.to_bits() == s.v.to_bits() {
                                continue;
                            }
                            Err(RejectReason::DuplicateTimestamp)
                        }
                        Some(l) if ooo_window > 0 && s.t >= l.t - ooo_window => {
                            let existing = ooo
                                .iter()
                                .find(|x| x.t == s.t)
                                .map(|x| x.v)
                                .or_else(|| d.value_at(s.t));
                            match existing {
                                Some(v) if v.to_bits() == s.v.to_bits() => continue,
                                Some(_) => Err(RejectReason::DuplicateTimestamp),
                                None => Ok(false),
                            }
                        }
                        Some(_) => Err(RejectReason::OutOfOrder),
                    }
                };
                match verdict {
                    Ok(true) => {
                        in_order.push(*s);
                        last = Some(*s);
                        outcome.accepted += 1;
                    }
                    Ok(false) => {
                        ooo.push(*s);
                        outcome.accepted += 1;
                    }
                    Err(reason) => {
                        metrics::SAMPLES_REJECTED
                            .with_label_values(&[reason.as_str()])
                            .inc();
                        Rejected::note(&mut rejected, i, reason, s.t);
                    }
                }
            }
            outcome.rejected.extend(rejected);
        }
        accepted.retain(|(_, a, b)| !a.is_empty() || !b.is_empty());
        let metadata: Vec<MetricMetadata> = idx
            .metadata
            .admit(
                push.metadata,
                limits.max_metadata,
                limits.max_metadata_per_metric,
            )
            .into_iter()
            .zip(push.metadata)
            .filter_map(|(verdict, m)| match verdict {
                Ok(()) => Some(m.clone()),
                Err(reason) => {
                    metrics::METADATA_REJECTED
                        .with_label_values(&[reason.as_str()])
                        .inc();
                    None
                }
            })
            .collect();
        let exemplars = admit_exemplars(&idx.exemplars, push.exemplars);
        // Only metadata needs the clock; a sample push skips it.
        let received_ms = if metadata.is_empty() {
            0
        } else {
            crate::now_ms()
        };
        if accepted.is_empty() && metadata.is_empty() && exemplars.is_empty() {
            return (outcome, None);
        }
        for (_, _, ooo) in accepted.iter_mut() {
            ooo.sort_by_key(|s| s.t);
        }
        if !new_series.is_empty() {
            let accepted_refs: HashSet<u64, rustc_hash::FxBuildHasher> =
                accepted.iter().map(|(s, _, _)| s.r#ref).collect();
            new_series.retain(|s| accepted_refs.contains(&s.r#ref));
        }
        (
            outcome,
            Some(AcceptedSamples {
                new_series,
                samples: accepted,
                metadata,
                received_ms,
                exemplars,
                max_exemplars: limits.max_exemplars,
            }),
        )
    }

    fn log(&self, tenant: &str, accepted: &AcceptedSamples, buf: &mut Vec<u8>) -> Vec<usize> {
        let mut ends = Vec::with_capacity(3);
        if !accepted.metadata.is_empty() {
            let at = accepted.received_ms;
            walrec::encode_metadata(buf, tenant, accepted.metadata.iter().map(|m| (m, at)));
            ends.push(buf.len());
        }
        if !accepted.exemplars.is_empty() {
            walrec::encode_exemplars(buf, tenant, accepted.exemplars.iter().map(|(s, e)| (s, e)));
            ends.push(buf.len());
        }
        if accepted.samples.is_empty() {
            return ends;
        }
        if !accepted.new_series.is_empty() {
            walrec::encode_series(
                buf,
                tenant,
                accepted.new_series.iter().map(|s| (s.r#ref, &s.labels)),
            );
            ends.push(buf.len());
        }
        // Out-of-order samples are rare: merge (and copy) only for series that have them.
        let merged: Vec<Option<Vec<Sample>>> = accepted
            .samples
            .iter()
            .map(|(_, a, b)| {
                (!b.is_empty()).then(|| {
                    let mut all = a.to_vec();
                    merge_samples(&mut all, b);
                    all
                })
            })
            .collect();
        walrec::encode_samples(
            buf,
            accepted
                .samples
                .iter()
                .zip(&merged)
                .map(|((s, a, _), m)| (s.r#ref, m.as_deref().unwrap_or(a.as_slice()))),
        );
        ends.push(buf.len());
        ends
    }

    fn apply(&self, head: &TenantHead<Self>, accepted: AcceptedSamples) -> Applied {
        let created = accepted.new_series.len();
        if created > 0 || !accepted.metadata.is_empty() || !accepted.exemplars.is_empty() {
            let mut idx = head.index.write();
            for s in accepted.new_series {
                idx.insert(s);
            }
            if !accepted.metadata.is_empty() {
                let at = accepted.received_ms;
                idx.metadata.purge_every(
                    at.saturating_sub(self.metadata_retain_ms),
                    self.metadata_retain_ms,
                );
                for m in accepted.metadata {
                    idx.metadata.upsert(m, at);
                }
            }
            for (series, e) in accepted.exemplars {
                idx.exemplars.insert(&series, e, accepted.max_exemplars);
            }
        }
        let mut max_time = i64::MIN;
        for (s, in_order, ooo) in accepted.samples {
            if let Some(l) = in_order.last() {
                max_time = max_time.max(l.t);
            }
            let mut d = s.data.lock();
            for x in in_order {
                d.append(x);
            }
            for x in ooo {
                d.insert_ooo(x);
            }
        }
        Applied { max_time, created }
    }

    fn accepted(outcome: &PushOutcome) -> usize {
        outcome.accepted
    }

    fn replay(
        &self,
        refs: &mut HashMap<u64, Arc<MemSeries>>,
        record: walrec::Record,
        tenant: &dyn Fn(String) -> Arc<TenantHead<Self>>,
    ) {
        match record {
            walrec::Record::Series {
                tenant: name,
                series,
            } => {
                let head = tenant(name);
                let mut idx = head.index.write();
                for (r, labels) in series {
                    if refs.contains_key(&r) {
                        continue;
                    }
                    let hash = labels.hash64();
                    let s = match idx.get(&labels, hash) {
                        Some(existing) => existing.clone(),
                        None => {
                            let s = Arc::new(MemSeries {
                                r#ref: r,
                                labels: SeriesLabels::from_labels(&labels),
                                data: Mutex::new(SeriesData::default()),
                            });
                            idx.insert(s.clone());
                            s
                        }
                    };
                    refs.insert(r, s);
                }
            }
            walrec::Record::LogEntries { tenant, .. } => {
                tracing::warn!(tenant, "log entries in the metrics WAL; skipped");
            }
            walrec::Record::Exemplars {
                tenant: name,
                exemplars,
            } => {
                let head = tenant(name);
                let mut idx = head.index.write();
                let none = HashMap::new();
                for (series, e) in exemplars {
                    // A crash between a cut's re-log and the removal of the
                    // old segments replays both copies: keep each once.
                    if idx.exemplars.admit(&series, &e, &none) == crate::exemplars::Admission::Keep
                    {
                        idx.exemplars.insert(&series, e, 0);
                    }
                }
            }
            walrec::Record::Metadata {
                tenant: name,
                entries,
            } => {
                let head = tenant(name);
                let mut idx = head.index.write();
                for (m, seen) in entries {
                    idx.metadata.upsert(m, seen);
                }
            }
            walrec::Record::Samples(entries) => {
                for (r, samples) in entries {
                    let Some(s) = refs.get(&r) else {
                        tracing::warn!(series_ref = r, "WAL samples for unknown series; skipped");
                        continue;
                    };
                    let mut d = s.data.lock();
                    for smp in samples {
                        match d.last() {
                            None => d.append(smp),
                            Some(l) if smp.t > l.t => d.append(smp),
                            Some(l) if smp.t == l.t => {}
                            Some(_) => {
                                if d.ooo_at(smp.t).is_none() {
                                    d.insert_ooo(smp);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn replayed(&self, refs: HashMap<u64, Arc<MemSeries>>) {
        let max_ref = refs.keys().max().copied().unwrap_or(0);
        self.next_ref.store(max_ref + 1, Ordering::Relaxed);
    }

    fn len(index: &HeadIndex) -> usize {
        index.series.len()
    }

    fn newest(index: &HeadIndex) -> Option<i64> {
        index
            .series
            .values()
            .filter_map(|s| s.data.lock().last().map(|x| x.t))
            .max()
    }

    fn any_before(index: &HeadIndex, boundary: i64) -> bool {
        index
            .series
            .values()
            .any(|s| s.data.lock().min_t().is_some_and(|t| t < boundary))
    }

    fn relog_kept(
        tenant: &str,
        index: &HeadIndex,
        boundary: i64,
        buf: &mut Vec<u8>,
        append: &mut WalAppend<'_>,
    ) -> Result<(), strata_wal::WalError> {
        let mut all: Vec<&Arc<MemSeries>> = index.series.values().collect();
        all.sort_by_key(|s| s.r#ref);
        let mut keep_entries: Vec<(u64, Vec<Sample>)> = Vec::new();
        let mut keep_series: Vec<&Arc<MemSeries>> = Vec::new();
        for s in all {
            let mut rest = Vec::new();
            s.data.lock().samples_in(boundary, i64::MAX, &mut rest);
            if !rest.is_empty() {
                keep_entries.push((s.r#ref, rest));
                keep_series.push(s);
            }
        }
        if !index.metadata.is_empty() {
            // Metadata outlives cuts: the WAL keeps it (with its receive
            // times) until it goes stale.
            buf.clear();
            walrec::encode_metadata(buf, tenant, index.metadata.fresh(i64::MIN).into_iter());
            append(&[&buf[..]])?;
        }
        if !index.exemplars.is_empty() {
            buf.clear();
            walrec::encode_exemplars(buf, tenant, index.exemplars.all());
            append(&[&buf[..]])?;
        }
        if keep_series.is_empty() {
            return Ok(());
        }
        buf.clear();
        walrec::encode_series(
            buf,
            tenant,
            keep_series.iter().map(|s| (s.r#ref, &s.labels)),
        );
        let split = buf.len();
        walrec::encode_samples(buf, keep_entries.iter().map(|(r, s)| (*r, s.as_slice())));
        append(&[&buf[..split], &buf[split..]])
    }

    fn take_before(index: &mut HeadIndex, boundary: i64) -> Cut<Sample> {
        let mut cut = Vec::new();
        for s in index.series.values() {
            let old = s.data.lock().take_before(boundary);
            if !old.is_empty() {
                cut.push((s.labels.to_labels(), old));
            }
        }
        index.remove_empty();
        cut
    }

    fn encode(items: &Cut<Sample>, min_ms: i64, max_ms: i64) -> Result<EncodedBlock, StorageError> {
        encode_block(items.clone(), min_ms, max_ms)
    }

    fn upload(
        store: &dyn ObjectStore,
        tenant: &str,
        block: &EncodedBlock,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        upload_block(store, tenant, block)
    }

    fn meta(block: &EncodedBlock) -> &BlockMeta {
        &block.meta
    }
}

/// The exemplars of a push the tenant's index keeps, in push order;
/// resends are dropped silently, out-of-order ones counted.
fn admit_exemplars(
    index: &crate::exemplars::ExemplarIndex,
    push: &[(Labels, Exemplar)],
) -> Vec<(Labels, Exemplar)> {
    use crate::exemplars::Admission;
    let mut pending: HashMap<&Labels, &Exemplar> = HashMap::new();
    let mut kept = Vec::new();
    for (series, e) in push {
        match index.admit(series, e, &pending) {
            Admission::Keep => {
                pending.insert(series, e);
                kept.push((series.clone(), e.clone()));
            }
            Admission::Duplicate => {}
            Admission::Refuse(reason) => metrics::EXEMPLARS_REJECTED
                .with_label_values(&[reason.as_str()])
                .inc(),
        }
    }
    kept
}

impl Head<MetricSignal> {
    /// Opens the metrics WAL under `cfg.dir`, replays it into the head and
    /// returns a ready ingester.
    pub fn open(cfg: TsdbConfig) -> Result<Self, IngesterError> {
        Self::open_reporting(cfg, &|_| {})
    }

    /// [`Ingester::open`], telling `report` how the WAL replay goes.
    pub fn open_reporting(
        cfg: TsdbConfig,
        report: &(dyn Fn(String) + Sync),
    ) -> Result<Self, IngesterError> {
        let signal = MetricSignal {
            next_ref: AtomicU64::new(1),
            ooo_window_ms: cfg.out_of_order_time_window.as_millis() as i64,
            metadata_retain_ms: cfg.metadata_retain_period.as_millis() as i64,
        };
        Head::open_with(signal, &cfg, report)
    }

    /// Checks, logs and applies pushed series (labels already validated by
    /// the distributor). Blocking: call from a blocking thread.
    pub fn push(
        &self,
        tenant: &str,
        series: &[(Labels, Vec<Sample>)],
        limits: PushLimits,
    ) -> Result<PushOutcome, IngesterError> {
        self.push_batch(tenant, &SeriesBatch::from_owned(series), limits)
    }

    /// [`Ingester::push`] of a batch as the write path carries it.
    pub fn push_batch(
        &self,
        tenant: &str,
        series: &SeriesBatch,
        limits: PushLimits,
    ) -> Result<PushOutcome, IngesterError> {
        let push = MetricPush {
            series,
            metadata: &[],
            exemplars: &[],
        };
        self.write(tenant, push, limits)
    }

    /// Keeps pushed exemplars (out-of-order ones are dropped and counted;
    /// the oldest beyond the tenant's limit are evicted). Blocking: call
    /// from a blocking thread.
    pub fn push_exemplars(
        &self,
        tenant: &str,
        exemplars: &[(Labels, Exemplar)],
        limits: PushLimits,
    ) -> Result<(), IngesterError> {
        let push = MetricPush {
            exemplars,
            ..Default::default()
        };
        self.write(tenant, push, limits).map(|_| ())
    }

    /// The tenant's exemplars in `[start, end]` (ms) of series matching any
    /// of `alternatives`.
    pub fn exemplars(
        &self,
        tenant: &str,
        alternatives: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        self.read_tenant(tenant, |_, idx| {
            idx.exemplars.select(alternatives, start, end)
        })
        .unwrap_or_default()
    }

    /// Keeps pushed metric metadata (entries over the limits are dropped
    /// and counted). Blocking: call from a blocking thread.
    pub fn push_metadata(
        &self,
        tenant: &str,
        metadata: &[MetricMetadata],
        limits: PushLimits,
    ) -> Result<(), IngesterError> {
        let push = MetricPush {
            metadata,
            ..Default::default()
        };
        self.write(tenant, push, limits).map(|_| ())
    }

    /// The tenant's head cardinality, each list cut to its `limit` largest.
    pub fn head_stats(&self, tenant: &str, limit: usize) -> HeadStats {
        self.read_tenant(tenant, |_, idx| idx.stats(limit))
            .unwrap_or_default()
    }

    /// The tenant's metric metadata received within the retain period, of
    /// `metric` only when given.
    pub fn metadata(&self, tenant: &str, metric: Option<&str>) -> Vec<MetricMetadata> {
        let cutoff = crate::now_ms().saturating_sub(self.signal.metadata_retain_ms);
        self.read_tenant(tenant, |_, idx| idx.metadata.select(metric, cutoff))
            .unwrap_or_default()
    }

    /// Samples in `[min_t, max_t]` of the tenant's series matching
    /// `matchers`, from the head and from cuts still uploading.
    pub fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Vec<SeriesSamples> {
        let by_labels = self.read_tenant(tenant, |pending, idx| {
            let mut out: strata_model::LabelsMap<Vec<Sample>> = Default::default();
            for r in idx.matching(matchers) {
                let s = &idx.series[&r];
                let mut samples = Vec::new();
                s.data.lock().samples_in(min_t, max_t, &mut samples);
                if !samples.is_empty() {
                    out.insert(s.labels.to_labels(), samples);
                }
            }
            for cut in pending {
                for (labels, samples) in cut.iter() {
                    if !matches_all(matchers, labels) {
                        continue;
                    }
                    let lo = samples.partition_point(|s| s.t < min_t);
                    let hi = samples.partition_point(|s| s.t <= max_t);
                    if lo < hi {
                        merge_samples(out.entry(labels.clone()).or_default(), &samples[lo..hi]);
                    }
                }
            }
            out
        });
        by_labels
            .unwrap_or_default()
            .into_iter()
            .map(|(labels, samples)| SeriesSamples { labels, samples })
            .collect()
    }

    /// Label sets of the tenant's matching series with samples in `[min_t, max_t]`.
    pub fn series(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Vec<Labels> {
        self.select(tenant, matchers, min_t, max_t)
            .into_iter()
            .map(|s| s.labels)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path) -> TsdbConfig {
        TsdbConfig {
            dir: dir.to_string_lossy().into_owned(),
            block_ranges_period: std::time::Duration::from_secs(3600),
            ..TsdbConfig::default()
        }
    }

    const H: i64 = 3_600_000;

    /// A block catalog over a local directory, for cuts to upload into.
    fn local_catalog(dir: &std::path::Path) -> strata_storage::BlockCatalog {
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap());
        strata_storage::BlockCatalog::new(
            Arc::new(strata_storage::BlockReader::new(store)),
            strata_storage::Signal::Metrics,
            std::time::Duration::from_secs(60),
        )
    }

    #[test]
    fn a_cut_awaiting_upload_is_read_once_and_bounds_later_pushes() {
        let dir = tempfile::tempdir().unwrap();
        let ing = Ingester::open(cfg(dir.path())).unwrap();
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let samples: Vec<Sample> = (0..6)
            .map(|i| Sample {
                t: i * H / 2,
                v: i as f64,
            })
            .collect();
        let out = ing
            .push(
                "t",
                &[(labels.clone(), samples.clone())],
                PushLimits::default(),
            )
            .unwrap();
        assert_eq!(out.accepted, 6);
        // Frozen but not uploaded: half the samples sit in a pending cut.
        let (_, cuts) = ing.freeze_before(H + H / 2).unwrap().expect("a cut");
        assert_eq!(cuts.len(), 1);
        assert_eq!(cuts[0].2[0].1.len(), 3);
        let got = ing.select("t", &[], i64::MIN, i64::MAX);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].samples, samples,
            "each sample once, head and cut merged"
        );
        // Older than the cut: out of bounds; newer: accepted.
        let late = Sample { t: H, v: 9.0 };
        let out = ing
            .push("t", &[(labels.clone(), vec![late])], PushLimits::default())
            .unwrap();
        assert_eq!(out.rejected[0].reason, RejectReason::OutOfBounds);
        drop(ing);
        // A crash before the upload: the old WAL segments still hold the
        // cut, and the re-logged part replays without doubling anything.
        let ing = Ingester::open(cfg(dir.path())).unwrap();
        assert_eq!(ing.select("t", &[], i64::MIN, i64::MAX)[0].samples, samples);
    }

    #[tokio::test]
    async fn metadata_survives_a_restart_and_a_cut_that_drops_its_wal_segments() {
        use strata_model::metadata::MetricType;
        let dir = tempfile::tempdir().unwrap();
        let catalog = local_catalog(dir.path());
        let wal_dir = dir.path().join("tsdb");
        let meta = |name: &str, help: &str| MetricMetadata {
            metric_family: name.into(),
            kind: MetricType::Counter,
            help: help.into(),
            unit: String::new(),
        };
        let limits = PushLimits {
            max_metadata: 2,
            ..Default::default()
        };
        let ing = Arc::new(Ingester::open(cfg(&wal_dir)).unwrap());
        ing.push_metadata(
            "t",
            &[meta("a", "x"), meta("b", "y"), meta("c", "z")],
            limits,
        )
        .unwrap();
        assert_eq!(
            ing.metadata("t", None).len(),
            2,
            "the third entry is over the tenant's limit"
        );
        ing.push_metadata("t", &[meta("a", "x")], limits).unwrap();
        assert_eq!(ing.metadata("t", Some("a")), vec![meta("a", "x")]);
        assert!(ing.metadata("other", None).is_empty());
        // Samples to cut, so the WAL segments holding the metadata go.
        let labels = Labels::from_pairs([("__name__", "up")]);
        let samples: Vec<Sample> = (0..4).map(|i| Sample { t: i * H, v: 1.0 }).collect();
        // A series the cut empties: the index is rebuilt without it.
        let gone = Labels::from_pairs([("__name__", "gone")]);
        let old = vec![Sample { t: 0, v: 1.0 }];
        ing.push(
            "t",
            &[(labels, samples), (gone, old)],
            PushLimits::default(),
        )
        .unwrap();
        assert!(ing.cut_and_upload(2 * H, &catalog).await.unwrap() > 0);
        assert_eq!(
            ing.metadata("t", None).len(),
            2,
            "kept in memory by the cut"
        );
        drop(ing);
        let ing = Ingester::open(cfg(&wal_dir)).unwrap();
        let mut got = ing.metadata("t", None);
        got.sort();
        assert_eq!(got, vec![meta("a", "x"), meta("b", "y")]);
    }

    #[tokio::test]
    async fn exemplars_survive_a_restart_and_a_cut_and_stay_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = local_catalog(dir.path());
        let wal_dir = dir.path().join("tsdb");
        let series = Labels::from_pairs([("__name__", "req_total")]);
        let ex = |trace: &str, t: i64| Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value: 1.0,
            t,
        };
        let limits = PushLimits {
            max_exemplars: 3,
            ..Default::default()
        };
        let ing = Arc::new(Ingester::open(cfg(&wal_dir)).unwrap());
        let pushed: Vec<(Labels, Exemplar)> = (1..=4)
            .map(|i| (series.clone(), ex(&i.to_string(), i * 1000)))
            .collect();
        ing.push_exemplars("t", &pushed, limits).unwrap();
        // Out of order and a resend: neither kept.
        ing.push_exemplars(
            "t",
            &[(series.clone(), ex("0", 500)), pushed[3].clone()],
            limits,
        )
        .unwrap();
        let all = [vec![Matcher::new(
            strata_model::MatchOp::Equal,
            "__name__",
            "req_total",
        )]];
        let held = |ing: &Ingester| -> Vec<i64> {
            ing.exemplars("t", &all, i64::MIN, i64::MAX)
                .into_iter()
                .flat_map(|(_, e)| e.into_iter().map(|e| e.t))
                .collect()
        };
        assert_eq!(held(&ing), vec![2000, 3000, 4000], "the oldest went");
        assert_eq!(
            ing.exemplars("t", &all, 2500, 3500)[0].1,
            vec![ex("3", 3000)],
            "time range"
        );
        let samples: Vec<Sample> = (0..4).map(|i| Sample { t: i * H, v: 1.0 }).collect();
        // A series the cut empties: the index is rebuilt without it.
        let gone = Labels::from_pairs([("__name__", "gone")]);
        let old = vec![Sample { t: 0, v: 1.0 }];
        ing.push(
            "t",
            &[(series.clone(), samples), (gone, old)],
            PushLimits::default(),
        )
        .unwrap();
        assert!(ing.cut_and_upload(2 * H, &catalog).await.unwrap() > 0);
        assert_eq!(
            held(&ing),
            vec![2000, 3000, 4000],
            "kept in memory by the cut"
        );
        drop(ing);
        let ing = Ingester::open(cfg(&wal_dir)).unwrap();
        assert_eq!(held(&ing), vec![2000, 3000, 4000]);
    }

    #[test]
    fn exemplars_replay_once_after_a_crash_between_relog_and_upload() {
        let dir = tempfile::tempdir().unwrap();
        let ing = Ingester::open(cfg(dir.path())).unwrap();
        let series = Labels::from_pairs([("__name__", "req_total")]);
        let exemplars: Vec<(Labels, Exemplar)> = (1..=3)
            .map(|i| {
                let e = Exemplar {
                    labels: Labels::from_pairs([("trace_id", "x")]),
                    value: i as f64,
                    t: i * 1000,
                };
                (series.clone(), e)
            })
            .collect();
        let limits = PushLimits {
            max_exemplars: 10,
            ..Default::default()
        };
        ing.push_exemplars("t", &exemplars, limits).unwrap();
        let samples = vec![Sample { t: 0, v: 1.0 }, Sample { t: 3 * H, v: 1.0 }];
        ing.push("t", &[(series.clone(), samples)], PushLimits::default())
            .unwrap();
        // Re-logged into a new segment, the old one not yet removed: a crash.
        assert!(ing.freeze_before(H).unwrap().is_some());
        drop(ing);
        let ing = Ingester::open(cfg(dir.path())).unwrap();
        let all = [vec![Matcher::new(
            strata_model::MatchOp::NotEqual,
            "__name__",
            "",
        )]];
        let got = ing.exemplars("t", &all, i64::MIN, i64::MAX);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), 3, "each exemplar once: {:?}", got[0].1);
    }
}
