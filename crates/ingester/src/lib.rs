//! The ingester: makes accepted writes durable in a WAL, serves them from an
//! in-memory head, and cuts the head into Parquet blocks in the object store.
//!
//! Write order: validate a batch against the head, append it to the WAL
//! (fsync per the policy), then apply it to the head, then acknowledge. Every
//! `head_compaction_interval` the head is cut at the newest block boundary
//! that is at least `max(block_range / 2, out_of_order_window)` in the past:
//! the WAL is rotated and the retained (newer) part of the head re-logged in
//! the new segment, the older samples become blocks that are uploaded with
//! retries until they succeed, and only then are the old WAL segments deleted.
//! A crash at any point replays to a head that holds every acknowledged sample.

pub mod grpc;
mod head;
pub mod logs;
mod metrics;
pub mod shipped;
mod stream_entries;
pub mod walrec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use head::{FrozenBlock, MemSeries, SeriesData, TenantHead};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use strata_model::{Labels, Matcher, Sample, SeriesSamples};
use strata_storage::{BlockCatalog, encode_block, upload_block};
use strata_wal::{FsyncPolicy, GroupSync, Wal, WalError, WalOptions};

pub use metrics::register as register_metrics;
pub use strata_ingester_client::{
    PushLimits, PushOutcome, ReasonName, RejectReason, Rejected, RejectedSeries,
};
pub use strata_model::now_ms;

/// Ingester and head settings, in Mimir's `blocks_storage.tsdb` shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TsdbConfig {
    /// Directory for the WAL.
    pub dir: String,
    /// Length of the time range each block covers.
    #[serde(with = "humantime_serde")]
    pub block_ranges_period: Duration,
    /// How often the head is checked for a range ready to cut.
    #[serde(with = "humantime_serde")]
    pub head_compaction_interval: Duration,
    /// WAL fsync policy: `always` (before every acknowledgement), `interval`, or `never`.
    pub wal_fsync: String,
    /// With `wal_fsync: interval`, the longest time between fsyncs.
    #[serde(with = "humantime_serde")]
    pub wal_fsync_interval: Duration,
    /// WAL segment size in bytes.
    pub wal_segment_size_bytes: u64,
    /// How far behind a series' newest sample a sample may arrive and still
    /// be accepted. Configured as the tenant limit `out_of_order_time_window`.
    #[serde(skip)]
    pub out_of_order_time_window: Duration,
    /// Cut the whole head into blocks on graceful shutdown.
    pub flush_blocks_on_shutdown: bool,
}

impl Default for TsdbConfig {
    fn default() -> Self {
        Self {
            dir: "./data/tsdb".into(),
            block_ranges_period: Duration::from_secs(2 * 3600),
            head_compaction_interval: Duration::from_secs(60),
            wal_fsync: "always".into(),
            wal_fsync_interval: Duration::from_millis(100),
            wal_segment_size_bytes: 128 << 20,
            out_of_order_time_window: Duration::ZERO,
            flush_blocks_on_shutdown: false,
        }
    }
}

pub use strata_model::humantime_serde;

/// Errors of the ingester.
#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("WAL record decode failed during replay: {0}")]
    Replay(#[from] walrec::RecordError),
    #[error("invalid ingester configuration: {0}")]
    Config(String),
    #[error("background task: {0}")]
    Task(String),
    #[error("ingester is shutting down")]
    ShuttingDown,
}

/// The ingester.
pub struct Ingester {
    cfg: TsdbConfig,
    wal: Mutex<WalState>,
    /// Group commit: pushes fsync after releasing `wal`, sharing fsyncs.
    wal_sync: Arc<GroupSync>,
    tenants: RwLock<HashMap<String, Arc<TenantHead>>>,
    next_ref: AtomicU64,
    /// Newest sample time in any head: blocks are cut relative to it, as
    /// Prometheus does, so a backfill (a remote-write client catching up
    /// hours) is accepted and cut as it advances instead of refused.
    head_max_t: AtomicI64,
}

struct WalState {
    wal: Wal,
    buf: Vec<u8>,
    closed: bool,
}

/// Makes a WAL replay visible while it runs: a log line at least every
/// few seconds (segments, records, percent), the
/// `strata_ingester_wal_replay_*` gauges, and a text for the process's
/// `/ready` answer.
pub struct ReplayReporter<'a> {
    wal: &'static str,
    report: &'a (dyn Fn(String) + Sync),
    last_log: std::time::Instant,
}

impl<'a> ReplayReporter<'a> {
    /// A reporter of the WAL named `wal` ("metrics" or "logs").
    pub fn new(wal: &'static str, report: &'a (dyn Fn(String) + Sync)) -> Self {
        Self {
            wal,
            report,
            last_log: std::time::Instant::now(),
        }
    }

    /// Records one step of the replay.
    pub fn progress(&mut self, p: &strata_wal::ReplayProgress) {
        let percent = p.ratio() * 100.0;
        metrics::WAL_REPLAY_PROGRESS
            .with_label_values(&[self.wal])
            .set(p.ratio());
        metrics::WAL_REPLAY_RECORDS
            .with_label_values(&[self.wal])
            .set(i64::try_from(p.records).unwrap_or(i64::MAX));
        let text = format!(
            "replaying the {} WAL: segment {} of {}, {} records, {percent:.0}%",
            self.wal, p.segments_done, p.segments, p.records
        );
        if self.last_log.elapsed() >= std::time::Duration::from_secs(5) {
            tracing::info!(
                wal = self.wal,
                segments_done = p.segments_done,
                segments = p.segments,
                records = p.records,
                percent = format_args!("{percent:.1}"),
                "WAL replay progress"
            );
            self.last_log = std::time::Instant::now();
        }
        (self.report)(text);
    }
}

impl Ingester {
    /// Opens the WAL under `cfg.dir`, replays it into the head and returns a
    /// ready ingester.
    pub fn open(cfg: TsdbConfig) -> Result<Self, IngesterError> {
        Self::open_reporting(cfg, &|_| {})
    }

    /// [`Ingester::open`], telling `report` how the WAL replay goes (see
    /// [`ReplayReporter`]).
    pub fn open_reporting(
        cfg: TsdbConfig,
        report: &(dyn Fn(String) + Sync),
    ) -> Result<Self, IngesterError> {
        let opts = wal_options(&cfg)?;
        let tenants: RwLock<HashMap<String, Arc<TenantHead>>> = RwLock::new(HashMap::new());
        let mut refs: HashMap<u64, Arc<MemSeries>> = HashMap::new();
        let mut decode_err = None;
        let wal_dir = PathBuf::from(&cfg.dir).join("wal");
        let started = std::time::Instant::now();
        let mut reporter = ReplayReporter::new("metrics", report);
        let (wal, stats) = Wal::open_reporting(
            &wal_dir,
            opts,
            |payload| {
                if decode_err.is_some() {
                    return;
                }
                match walrec::decode(payload) {
                    Ok(rec) => replay_record(&tenants, rec, &mut refs),
                    Err(e) => decode_err = Some(e),
                }
            },
            |p| reporter.progress(p),
        )?;
        if let Some(e) = decode_err {
            return Err(e.into());
        }
        let max_ref = refs.keys().max().copied().unwrap_or(0);
        tracing::info!(
            segments = stats.segments,
            records = stats.records,
            bytes = stats.bytes,
            truncated_bytes = stats.truncated_bytes,
            corrupt_segments = stats.corrupt_segments.len(),
            series = refs.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "WAL replayed"
        );
        metrics::WAL_CORRUPTIONS
            .with_label_values(&["metrics"])
            .inc_by(stats.corrupt_segments.len() as u64);
        let ing = Self {
            cfg,
            wal_sync: wal.group_sync(),
            wal: Mutex::new(WalState {
                wal,
                buf: Vec::new(),
                closed: false,
            }),
            tenants,
            next_ref: AtomicU64::new(max_ref + 1),
            head_max_t: AtomicI64::new(i64::MIN),
        };
        let replayed_max = ing
            .tenants
            .read()
            .values()
            .flat_map(|h| {
                h.index
                    .read()
                    .series
                    .values()
                    .filter_map(|s| s.data.lock().last().map(|x| x.t))
                    .collect::<Vec<_>>()
            })
            .max();
        if let Some(t) = replayed_max {
            ing.head_max_t.store(t, Ordering::Relaxed);
        }
        metrics::HEAD_SERIES.set(ing.num_series() as i64);
        Ok(ing)
    }

    fn tenant(&self, tenant: &str) -> Arc<TenantHead> {
        if let Some(h) = self.tenants.read().get(tenant) {
            return h.clone();
        }
        self.tenants
            .write()
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(TenantHead::new()))
            .clone()
    }

    fn existing_tenant(&self, tenant: &str) -> Option<Arc<TenantHead>> {
        self.tenants.read().get(tenant).cloned()
    }

    /// Validates, logs and applies a batch of series (labels already
    /// validated by the distributor, samples time-ordered per series).
    /// Blocking: call from a blocking thread.
    pub fn push(
        &self,
        tenant: &str,
        batch: &[(Labels, Vec<Sample>)],
        limits: PushLimits,
    ) -> Result<PushOutcome, IngesterError> {
        let _span = tracing::debug_span!("ingester_push", tenant, series = batch.len()).entered();
        let head = self.tenant(tenant);
        // Samples older than the head's cut boundary are refused as out of
        // bounds whatever the tenant's window; the head keeps the
        // process-wide window (the limits default) before cutting.
        let ooo_window = limits.out_of_order_time_window.as_millis() as i64;
        let min_valid = head.min_valid_time.load(Ordering::Acquire);

        let mut ws = self.wal.lock();
        if ws.closed {
            return Err(IngesterError::ShuttingDown);
        }
        let mut outcome = PushOutcome::default();
        // Series this batch creates, and accepted samples per series.
        let mut new_series: Vec<Arc<MemSeries>> = Vec::new();
        let mut new_by_labels: HashMap<&Labels, usize> = HashMap::new();
        let mut accepted: Vec<(Arc<MemSeries>, Vec<Sample>, Vec<Sample>)> = Vec::new();
        let mut pos_of_series: HashMap<u64, usize> = HashMap::new();
        {
            let idx = head.index.read();
            for (i, (labels, samples)) in batch.iter().enumerate() {
                if samples.is_empty() {
                    continue;
                }
                let series = match idx.get(labels, labels.hash64()) {
                    Some(s) => s.clone(),
                    None => match new_by_labels.get(labels) {
                        Some(&k) => new_series[k].clone(),
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
                                first_timestamp: samples[0].t,
                            });
                            continue;
                        }
                        None => {
                            let s = Arc::new(MemSeries {
                                r#ref: self.next_ref.fetch_add(1, Ordering::Relaxed),
                                labels: labels.clone(),
                                data: Mutex::new(SeriesData::default()),
                            });
                            new_by_labels.insert(labels, new_series.len());
                            new_series.push(s.clone());
                            s
                        }
                    },
                };
                let slot = *pos_of_series.entry(series.r#ref).or_insert_with(|| {
                    accepted.push((series.clone(), Vec::new(), Vec::new()));
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
                                    .or_else(|| d.ooo_at(s.t));
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
        }
        accepted.retain(|(_, a, b)| !a.is_empty() || !b.is_empty());
        if accepted.is_empty() {
            return Ok(outcome);
        }
        for (_, _, ooo) in accepted.iter_mut() {
            ooo.sort_by_key(|s| s.t);
        }

        // Log, then apply. Nothing is applied unless the WAL write succeeded.
        let WalState { wal, buf, .. } = &mut *ws;
        buf.clear();
        let mut records: Vec<(usize, usize)> = Vec::new();
        let accepted_refs: std::collections::HashSet<u64> =
            accepted.iter().map(|(s, _, _)| s.r#ref).collect();
        let used: Vec<&Arc<MemSeries>> = new_series
            .iter()
            .filter(|s| accepted_refs.contains(&s.r#ref))
            .collect();
        if !used.is_empty() {
            walrec::encode_series(buf, tenant, used.iter().map(|s| (s.r#ref, &s.labels)));
            records.push((0, buf.len()));
        }
        let start = buf.len();
        // Out-of-order samples are rare: merge (and copy) only for series that have them.
        let merged: Vec<Option<Vec<Sample>>> = accepted
            .iter()
            .map(|(_, a, b)| {
                (!b.is_empty()).then(|| {
                    let mut all = a.clone();
                    strata_model::merge_samples(&mut all, b);
                    all
                })
            })
            .collect();
        walrec::encode_samples(
            buf,
            accepted
                .iter()
                .zip(&merged)
                .map(|((s, a, _), m)| (s.r#ref, m.as_deref().unwrap_or(a.as_slice()))),
        );
        records.push((start, buf.len()));
        let before = wal.bytes_written();
        let ticket = wal.append_batch_deferred(records.iter().map(|&(a, b)| &buf[a..b]))?;
        metrics::WAL_BYTES.inc_by(wal.bytes_written() - before);

        let new_count = used.len();
        if !new_series.is_empty() {
            let mut idx = head.index.write();
            for s in used {
                idx.insert(s.clone());
            }
        }
        let batch_max = accepted
            .iter()
            .filter_map(|(_, a, _)| a.last().map(|x| x.t))
            .max()
            .unwrap_or(i64::MIN);
        self.head_max_t.fetch_max(batch_max, Ordering::Relaxed);
        for (s, in_order, ooo) in accepted {
            let mut d = s.data.lock();
            for x in in_order {
                d.append(x);
            }
            for x in ooo {
                d.insert_ooo(x);
            }
        }
        drop(ws);
        // Applied before durable, like Prometheus: a reader may see samples
        // whose fsync then fails, but the writer is never told they are safe.
        // After a failed fsync the WAL refuses all writes until a restart.
        self.wal_sync.wait_durable(ticket)?;
        metrics::SAMPLES_APPENDED.inc_by(outcome.accepted as u64);
        // Series only leave the head at a cut, which sets the gauge exactly.
        metrics::HEAD_SERIES.add(new_count as i64);
        Ok(outcome)
    }

    /// Blocks this ingester uploaded in the last day (from `shipped.json`),
    /// for the catalog to offer queriers until the bucket index lists them.
    pub fn recently_shipped(&self) -> Vec<shipped::Shipped> {
        shipped::load(&shipped::metrics_path(&self.cfg.dir), now_ms())
    }

    /// Number of series in all tenants' heads.
    pub fn num_series(&self) -> usize {
        self.tenants
            .read()
            .values()
            .map(|h| h.index.read().series.len())
            .sum()
    }

    /// Samples in `[min_t, max_t]` of the tenant's series matching `matchers`.
    pub fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Vec<SeriesSamples> {
        match self.existing_tenant(tenant) {
            Some(h) => h.select(matchers, min_t, max_t),
            None => Vec::new(),
        }
    }

    /// Label sets of the tenant's matching series with samples in `[min_t, max_t]`.
    pub fn series(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Vec<Labels> {
        match self.existing_tenant(tenant) {
            Some(h) => h.series(matchers, min_t, max_t),
            None => Vec::new(),
        }
    }

    /// The boundary below which the head is cut: the newest multiple of the
    /// block range at least `max(range/2, ooo window)` before `now_ms` (the
    /// newest sample time in the head).
    pub fn cut_boundary(&self, now_ms: i64) -> i64 {
        let range = self.cfg.block_ranges_period.as_millis() as i64;
        let grace = (range / 2).max(self.cfg.out_of_order_time_window.as_millis() as i64);
        (now_ms - grace).div_euclid(range) * range
    }

    /// Cuts every sample older than `boundary` into blocks, uploads them
    /// (retrying until success) and then drops the WAL segments that held them.
    pub async fn cut_and_upload(
        self: &Arc<Self>,
        boundary: i64,
        catalog: &BlockCatalog,
    ) -> Result<usize, IngesterError> {
        let this = self.clone();
        let frozen = tokio::task::spawn_blocking(move || this.freeze_before(boundary))
            .await
            .map_err(|e| IngesterError::Config(format!("cut task failed: {e}")))??;
        let Some((segment, frozen)) = frozen else {
            return Ok(0);
        };
        let range = self.cfg.block_ranges_period.as_millis() as i64;
        let mut uploaded = 0;
        for (tenant, head, fb) in frozen {
            let ranges = split_by_range(&fb.series, range, |s: &Sample| s.t);
            for (start, series) in ranges {
                let block = encode_with_retry(&tenant, series, move |s| {
                    encode_block(s.clone(), start, start + range)
                })
                .await?;
                upload_with_retry(&tenant, &block.meta.ulid, || {
                    upload_block(catalog.reader().store().as_ref(), &tenant, &block)
                })
                .await;
                tracing::info!(tenant, ulid = %block.meta.ulid, min_time = block.meta.min_time,
                    series = block.meta.stats.num_series, samples = block.meta.stats.num_samples,
                    bytes = block.meta.stats.num_bytes, "block uploaded");
                metrics::BLOCKS_UPLOADED.inc();
                metrics::BLOCK_BYTES_UPLOADED.inc_by(block.meta.stats.num_bytes);
                catalog.add(&tenant, block.meta.clone()).await;
                shipped::record_upload(&shipped::metrics_path(&self.cfg.dir), &tenant, &block.meta);
                uploaded += 1;
            }
            head.pending.write().retain(|p| !Arc::ptr_eq(p, &fb));
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> Result<(), IngesterError> {
            let mut ws = this.wal.lock();
            let removed = ws.wal.remove_before(segment)?;
            tracing::debug!(removed, "WAL segments removed after block upload");
            metrics::WAL_SIZE.set(ws.wal.disk_size() as i64);
            Ok(())
        })
        .await
        .map_err(|e| IngesterError::Config(format!("WAL truncation task failed: {e}")))??;
        Ok(uploaded)
    }

    /// Moves samples older than `boundary` out of the head into pending
    /// frozen blocks, rotating the WAL and re-logging what the head keeps.
    /// Returns the first WAL segment that must be kept, and the frozen data.
    #[allow(clippy::type_complexity)]
    fn freeze_before(
        &self,
        boundary: i64,
    ) -> Result<Option<(u64, Vec<(String, Arc<TenantHead>, Arc<FrozenBlock>)>)>, IngesterError>
    {
        let mut ws = self.wal.lock();
        let tenants: Vec<(String, Arc<TenantHead>)> = self
            .tenants
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let any = tenants.iter().any(|(_, h)| {
            h.index
                .read()
                .series
                .values()
                .any(|s| s.data.lock().min_t().is_some_and(|t| t < boundary))
        });
        if !any {
            for (_, h) in &tenants {
                h.min_valid_time.fetch_max(boundary, Ordering::AcqRel);
            }
            return Ok(None);
        }
        let segment = ws.wal.rotate()?;
        let mut frozen_out = Vec::new();
        let WalState { wal, buf, .. } = &mut *ws;
        // Phase 1: re-log what the head keeps, so segments before `segment`
        // can go after the upload. Nothing in the head changes yet (the WAL
        // lock keeps writers out), so a failed write (a full disk) loses nothing.
        for (tenant, head) in &tenants {
            head.min_valid_time.fetch_max(boundary, Ordering::AcqRel);
            let idx = head.index.read();
            let mut all: Vec<&Arc<MemSeries>> = idx.series.values().collect();
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
            if !keep_series.is_empty() {
                buf.clear();
                walrec::encode_series(
                    buf,
                    tenant,
                    keep_series.iter().map(|s| (s.r#ref, &s.labels)),
                );
                let split = buf.len();
                walrec::encode_samples(buf, keep_entries.iter().map(|(r, s)| (*r, s.as_slice())));
                wal.append_batch([&buf[..split], &buf[split..]])?;
            }
        }
        wal.sync()?;
        // Phase 2: move the old samples out of the head into pending blocks.
        for (tenant, head) in tenants {
            let mut idx = head.index.write();
            let mut series_out = Vec::new();
            for s in idx.series.values() {
                let cut = s.data.lock().take_before(boundary);
                if !cut.is_empty() {
                    series_out.push((s.labels.clone(), cut));
                }
            }
            idx.remove_empty();
            drop(idx);
            if !series_out.is_empty() {
                let fb = Arc::new(FrozenBlock { series: series_out });
                head.pending.write().push(fb.clone());
                frozen_out.push((tenant, head, fb));
            }
        }
        metrics::HEAD_SERIES.set(self.num_series() as i64);
        Ok(Some((segment, frozen_out)))
    }

    /// Periodically cuts and uploads blocks until `shutdown` fires.
    pub async fn run_cutter(
        self: Arc<Self>,
        catalog: Arc<BlockCatalog>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        every(self.cfg.head_compaction_interval, shutdown, || async {
            // The head's own clock, never ahead of the wall clock (samples
            // may be up to the creation grace period in the future).
            let head_now = self.head_max_t.load(Ordering::Relaxed).min(now_ms());
            if head_now == i64::MIN {
                return;
            }
            let boundary = self.cut_boundary(head_now);
            if let Err(e) = self.cut_and_upload(boundary, &catalog).await {
                tracing::error!(error = %e, "cutting head into blocks failed; will retry");
            }
        })
        .await
    }

    /// Graceful stop: refuses new writes, syncs the WAL and, when
    /// configured, cuts the whole head into blocks.
    pub async fn shutdown(self: &Arc<Self>, catalog: &BlockCatalog) -> Result<(), IngesterError> {
        if self.cfg.flush_blocks_on_shutdown {
            self.cut_and_upload(i64::MAX, catalog).await?;
        }
        let mut ws = self.wal.lock();
        ws.closed = true;
        ws.wal.sync()?;
        Ok(())
    }

    /// Configuration in effect.
    pub fn config(&self) -> &TsdbConfig {
        &self.cfg
    }
}

/// WAL options from the configuration, checking the values.
fn wal_options(cfg: &TsdbConfig) -> Result<WalOptions, IngesterError> {
    let fsync = match cfg.wal_fsync.as_str() {
        "always" => FsyncPolicy::Always,
        "interval" => FsyncPolicy::Interval(cfg.wal_fsync_interval),
        "never" => FsyncPolicy::Never,
        other => {
            return Err(IngesterError::Config(format!(
                "-blocks-storage.tsdb.wal-fsync must be always, interval or never, not {other:?}"
            )));
        }
    };
    if cfg.block_ranges_period < Duration::from_millis(100) {
        return Err(IngesterError::Config(
            "-blocks-storage.tsdb.block-ranges-period must be at least 100ms".into(),
        ));
    }
    Ok(WalOptions {
        segment_size: cfg.wal_segment_size_bytes,
        fsync,
    })
}

/// Calls `tick` every `interval` (skipping missed ticks) until `shutdown` fires.
async fn every<F, Fut>(
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut tick: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = shutdown.changed() => return,
        }
        tick().await;
    }
}

/// Groups each series' time-ordered items by the aligned `range` window
/// they fall in: one group per window start, oldest first (one block each).
#[allow(clippy::type_complexity)]
fn split_by_range<T: Clone>(
    series: &[(Labels, Vec<T>)],
    range: i64,
    ts: impl Fn(&T) -> i64,
) -> Vec<(i64, Vec<(Labels, Vec<T>)>)> {
    let mut by_range: HashMap<i64, Vec<(Labels, Vec<T>)>> = HashMap::new();
    for (labels, items) in series {
        let mut rest: &[T] = items;
        while let Some(first) = rest.first() {
            let start = ts(first).div_euclid(range) * range;
            let n = rest.partition_point(|x| ts(x) < start + range);
            by_range
                .entry(start)
                .or_default()
                .push((labels.clone(), rest[..n].to_vec()));
            rest = &rest[n..];
        }
    }
    let mut ranges: Vec<_> = by_range.into_iter().collect();
    ranges.sort_by_key(|(s, _)| *s);
    ranges
}

/// Encodes a block on a blocking thread (zstd over a whole block takes
/// seconds), retrying on failure: the data stays in the head meanwhile.
async fn encode_with_retry<T, B, F>(tenant: &str, data: T, encode: F) -> Result<B, IngesterError>
where
    T: Send + 'static,
    B: Send + 'static,
    F: Fn(&T) -> Result<B, strata_storage::StorageError> + Send + Sync + 'static,
{
    let encode = Arc::new(encode);
    let mut data = data;
    loop {
        let f = encode.clone();
        let (back, result) = tokio::task::spawn_blocking(move || {
            let r = f(&data);
            (data, r)
        })
        .await
        .map_err(|e| IngesterError::Task(format!("block encoding failed: {e}")))?;
        match result {
            Ok(b) => return Ok(b),
            Err(e) => {
                tracing::error!(tenant, error = %e, "encoding block failed; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
                data = back;
            }
        }
    }
}

/// Retries `upload` with capped exponential backoff until it succeeds: the
/// data stays in the head and the WAL meanwhile, so nothing is dropped.
async fn upload_with_retry<F, Fut>(tenant: &str, ulid: &str, mut upload: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), strata_storage::StorageError>>,
{
    let mut backoff = Duration::from_millis(500);
    loop {
        match upload().await {
            Ok(()) => return,
            Err(e) => {
                metrics::BLOCK_UPLOAD_FAILURES.inc();
                tracing::warn!(tenant, ulid, error = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    "block upload failed; the data stays in the head and WAL, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Applies one replayed WAL record to the heads; duplicates are ignored.
fn replay_record(
    tenants: &RwLock<HashMap<String, Arc<TenantHead>>>,
    rec: walrec::Record,
    refs: &mut HashMap<u64, Arc<MemSeries>>,
) {
    match rec {
        walrec::Record::Series { tenant, series } => {
            let head = tenants
                .write()
                .entry(tenant)
                .or_insert_with(|| Arc::new(TenantHead::new()))
                .clone();
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
                            labels,
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
