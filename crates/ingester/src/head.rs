//! The ingester head, written once for both signals: per-tenant heads, the
//! WAL and its replay, the write frame (check, log, apply, acknowledge), the
//! two-phase freeze that cuts the head, block upload with retries, the
//! cutter loop and shutdown. A [`Signal`] supplies what differs.
//!
//! Write order: check a batch against the head, append it to the WAL
//! (fsync per the policy), then apply it to the head, then acknowledge.
//! Every `head_compaction_interval` the head is cut at the newest block
//! boundary that is at least `max(block_range / 2, window)` in the past: the
//! WAL is rotated and the retained (newer) part of the head re-logged in the
//! new segment, the older items become blocks that are uploaded with retries
//! until they succeed, and only then are the old WAL segments deleted. A
//! crash at any point replays to a head that holds every acknowledged item.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use strata_storage::BlockCatalog;
use strata_wal::{GroupSync, Wal};

use crate::signal::{Cut, Signal};
use crate::{IngesterError, TsdbConfig, metrics, now_ms, shipped, wal_options, walrec};

/// The head of one tenant.
pub struct TenantHead<S: Signal> {
    /// The tenant's series or streams.
    pub(crate) index: RwLock<S::Index>,
    /// Items older than this belong to already cut blocks and are refused.
    pub(crate) min_valid: AtomicI64,
    /// Cuts whose upload has not finished, still answered by reads.
    pub(crate) pending: RwLock<Vec<Arc<Cut<S::Item>>>>,
}

impl<S: Signal> TenantHead<S> {
    fn new() -> Self {
        Self {
            index: RwLock::new(S::Index::default()),
            min_valid: AtomicI64::new(i64::MIN),
            pending: RwLock::new(Vec::new()),
        }
    }
}

struct WalState {
    wal: Wal,
    buf: Vec<u8>,
    closed: bool,
}

/// A signal's ingester head (see the module documentation).
pub struct Head<S: Signal> {
    pub(crate) signal: S,
    cfg: TsdbConfig,
    /// Block range in the signal's time unit.
    block_range: i64,
    wal: Mutex<WalState>,
    /// Group commit: pushes fsync after releasing `wal`, sharing fsyncs.
    wal_sync: Arc<GroupSync>,
    tenants: RwLock<HashMap<String, Arc<TenantHead<S>>>>,
    /// Newest item time in any head: blocks are cut relative to it, as
    /// Prometheus does, so a backfill (a client catching up hours) is
    /// accepted and cut as it advances instead of refused.
    head_max: AtomicI64,
    /// Record of recent uploads (see [`crate::shipped`]).
    shipped_path: PathBuf,
}

impl<S: Signal> Head<S> {
    /// Opens the signal's WAL under `cfg.dir`, replays it into the head and
    /// returns a ready head, telling `report` how the replay goes.
    pub(crate) fn open_with(
        signal: S,
        cfg: &TsdbConfig,
        report: &(dyn Fn(String) + Sync),
    ) -> Result<Self, IngesterError> {
        let opts = wal_options(cfg)?;
        let tenants: RwLock<HashMap<String, Arc<TenantHead<S>>>> = RwLock::new(HashMap::new());
        let tenant_of = |name: String| {
            tenants
                .write()
                .entry(name)
                .or_insert_with(|| Arc::new(TenantHead::new()))
                .clone()
        };
        let mut state = S::Replay::default();
        let mut decode_err = None;
        let started = std::time::Instant::now();
        let mut reporter = ReplayReporter::new(S::NAME, report);
        let (wal, stats) = Wal::open_reporting(
            PathBuf::from(&cfg.dir).join(S::WAL_DIR),
            opts,
            |payload| {
                if decode_err.is_some() {
                    return;
                }
                match walrec::decode(payload) {
                    Ok(rec) => signal.replay(&mut state, rec, &tenant_of),
                    Err(e) => decode_err = Some(e),
                }
            },
            |p| reporter.progress(p),
        )?;
        if let Some(e) = decode_err {
            return Err(e.into());
        }
        signal.replayed(state);
        let head_max = tenants
            .read()
            .values()
            .filter_map(|h| S::newest(&h.index.read()))
            .max()
            .unwrap_or(i64::MIN);
        let head = Self {
            signal,
            block_range: (cfg.block_ranges_period.as_millis() as i64)
                .saturating_mul(S::UNITS_PER_MS),
            cfg: cfg.clone(),
            wal_sync: wal.group_sync(),
            wal: Mutex::new(WalState {
                wal,
                buf: Vec::new(),
                closed: false,
            }),
            tenants,
            head_max: AtomicI64::new(head_max),
            shipped_path: PathBuf::from(&cfg.dir).join(S::SHIPPED_FILE),
        };
        tracing::info!(
            wal = S::NAME,
            segments = stats.segments,
            records = stats.records,
            bytes = stats.bytes,
            truncated_bytes = stats.truncated_bytes,
            corrupt_segments = stats.corrupt_segments.len(),
            series = head.num_series(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "WAL replayed"
        );
        metrics::WAL_CORRUPTIONS
            .with_label_values(&[S::NAME])
            .inc_by(stats.corrupt_segments.len() as u64);
        metrics::WAL_SIZE
            .with_label_values(&[S::NAME])
            .set(head.wal.lock().wal.disk_size() as i64);
        S::metrics().series.set(head.num_series() as i64);
        Ok(head)
    }

    /// The tenant's head, created when missing.
    fn tenant(&self, tenant: &str) -> Arc<TenantHead<S>> {
        if let Some(h) = self.tenants.read().get(tenant) {
            return h.clone();
        }
        self.tenants
            .write()
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(TenantHead::new()))
            .clone()
    }

    /// The tenant's head if it has one.
    fn existing_tenant(&self, tenant: &str) -> Option<Arc<TenantHead<S>>> {
        self.tenants.read().get(tenant).cloned()
    }

    /// Series (streams) in all tenants' heads.
    pub fn num_series(&self) -> usize {
        self.tenants
            .read()
            .values()
            .map(|h| S::len(&h.index.read()))
            .sum()
    }

    /// Series (streams) in each tenant's head.
    pub fn num_series_per_tenant(&self) -> Vec<(String, usize)> {
        self.tenants
            .read()
            .iter()
            .map(|(tenant, h)| (tenant.clone(), S::len(&h.index.read())))
            .collect()
    }

    /// Checks, logs and applies a push (labels already validated by the
    /// distributor). Blocking: call from a blocking thread. Each signal's
    /// head offers it as `push`.
    pub(crate) fn write(
        &self,
        tenant: &str,
        batch: S::Batch<'_>,
        limits: S::Limits,
    ) -> Result<S::Outcome, IngesterError> {
        let _span = tracing::debug_span!("ingester_push", signal = S::NAME, tenant).entered();
        let head = self.tenant(tenant);
        let mut ws = self.wal.lock();
        if ws.closed {
            return Err(IngesterError::ShuttingDown);
        }
        // Read under the WAL lock, which a cut holds while it moves the
        // boundary: nothing older than a finished cut gets into the head.
        let min_valid = head.min_valid.load(Ordering::Acquire);
        let (outcome, accepted) = self.signal.check(&head, batch, &limits, min_valid);
        let Some(accepted) = accepted else {
            return Ok(outcome);
        };

        // Log, then apply. Nothing is applied unless the WAL write succeeded.
        let WalState { wal, buf, .. } = &mut *ws;
        buf.clear();
        let ends = self.signal.log(tenant, &accepted, buf);
        let records = ends.iter().scan(0, |start, &end| {
            Some(&buf[std::mem::replace(start, end)..end])
        });
        let before = wal.bytes_written();
        let ticket = wal.append_batch_deferred(records)?;
        metrics::WAL_BYTES
            .with_label_values(&[S::NAME])
            .inc_by(wal.bytes_written() - before);
        let applied = self.signal.apply(&head, accepted);
        self.head_max.fetch_max(applied.max_time, Ordering::Relaxed);
        drop(ws);
        // Applied before durable, like Prometheus: a reader may see items
        // whose fsync then fails, but the writer is never told they are safe.
        // After a failed fsync the WAL refuses all writes until a restart.
        self.wal_sync.wait_durable(ticket)?;
        let m = S::metrics();
        m.appended.inc_by(S::accepted(&outcome) as u64);
        // Series only leave the head at a cut, which sets the gauge exactly.
        m.series.add(applied.created as i64);
        Ok(outcome)
    }

    /// Calls `visit` with the tenant's cuts still uploading and its head
    /// index, seen at one instant (a cut moves items from the index to
    /// `pending` under the index lock): together they hold every item not
    /// yet in a block, each once.
    pub(crate) fn read_tenant<R>(
        &self,
        tenant: &str,
        visit: impl FnOnce(&[Arc<Cut<S::Item>>], &S::Index) -> R,
    ) -> Option<R> {
        let head = self.existing_tenant(tenant)?;
        let index = head.index.read();
        let pending: Vec<Arc<Cut<S::Item>>> = head.pending.read().clone();
        Some(visit(&pending, &index))
    }

    /// Items of this signal's blocks uploaded in the last day (from the
    /// upload record), for the catalog to offer queriers until the bucket
    /// index lists them.
    pub fn recently_shipped(&self) -> Vec<shipped::Shipped> {
        shipped::load(&self.shipped_path, now_ms())
    }

    /// The boundary below which the head is cut: the newest multiple of the
    /// block range at least `max(range/2, window)` before `now` (the newest
    /// item time in the head, in the signal's unit).
    pub fn cut_boundary(&self, now: i64) -> i64 {
        let grace = (self.block_range / 2).max(self.signal.window());
        now.saturating_sub(grace).div_euclid(self.block_range) * self.block_range
    }

    /// Cuts every item older than `boundary` into blocks, uploads them
    /// (retrying until success) and then drops the WAL segments that held them.
    pub async fn cut_and_upload(
        self: &Arc<Self>,
        boundary: i64,
        catalog: &BlockCatalog,
    ) -> Result<usize, IngesterError> {
        let this = self.clone();
        let frozen = tokio::task::spawn_blocking(move || this.freeze_before(boundary))
            .await
            .map_err(|e| IngesterError::Task(format!("{} cut task failed: {e}", S::NAME)))??;
        let Some((segment, frozen)) = frozen else {
            return Ok(0);
        };
        let range = self.block_range;
        let mut uploaded = 0;
        for (tenant, head, cut) in frozen {
            for (start, items) in split_by_range(&cut, range, S::time) {
                let (min_ms, max_ms) = (
                    start / S::UNITS_PER_MS,
                    start.saturating_add(range) / S::UNITS_PER_MS,
                );
                let block =
                    encode_with_retry(&tenant, items, move |s| S::encode(s, min_ms, max_ms))
                        .await?;
                let meta = S::meta(&block);
                upload_with_retry(&tenant, &meta.ulid, || {
                    S::upload(catalog.reader().store().as_ref(), &tenant, &block)
                })
                .await;
                tracing::info!(tenant, signal = S::NAME, ulid = %meta.ulid, min_time = meta.min_time,
                    series = meta.stats.num_series, samples = meta.stats.num_samples,
                    bytes = meta.stats.num_bytes, "block uploaded");
                S::metrics().blocks_uploaded.inc();
                metrics::BLOCK_BYTES_UPLOADED.inc_by(meta.stats.num_bytes);
                catalog.add(&tenant, meta.clone()).await;
                shipped::record_upload(&self.shipped_path, &tenant, meta);
                uploaded += 1;
            }
            head.pending.write().retain(|p| !Arc::ptr_eq(p, &cut));
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> Result<(), IngesterError> {
            let mut ws = this.wal.lock();
            let removed = ws.wal.remove_before(segment)?;
            tracing::debug!(
                wal = S::NAME,
                removed,
                "WAL segments removed after block upload"
            );
            metrics::WAL_SIZE
                .with_label_values(&[S::NAME])
                .set(ws.wal.disk_size() as i64);
            Ok(())
        })
        .await
        .map_err(|e| IngesterError::Task(format!("{} WAL truncation failed: {e}", S::NAME)))??;
        Ok(uploaded)
    }

    /// Moves items older than `boundary` out of the head into pending cuts,
    /// rotating the WAL and re-logging what the head keeps. Returns the
    /// first WAL segment that must be kept, and the cuts.
    #[allow(clippy::type_complexity)]
    pub(crate) fn freeze_before(
        &self,
        boundary: i64,
    ) -> Result<Option<(u64, Vec<(String, Arc<TenantHead<S>>, Arc<Cut<S::Item>>)>)>, IngesterError>
    {
        let mut ws = self.wal.lock();
        let tenants: Vec<(String, Arc<TenantHead<S>>)> = self
            .tenants
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // From here on (the WAL lock keeps pushes out) nothing older than
        // the boundary is accepted.
        for (_, h) in &tenants {
            h.min_valid.fetch_max(boundary, Ordering::AcqRel);
        }
        if !tenants
            .iter()
            .any(|(_, h)| S::any_before(&h.index.read(), boundary))
        {
            return Ok(None);
        }
        let segment = ws.wal.rotate()?;
        let WalState { wal, buf, .. } = &mut *ws;
        // Phase 1: re-log what the head keeps, so segments before `segment`
        // can go after the upload. Nothing in the head changes yet, so a
        // failed write (a full disk) loses nothing.
        for (tenant, head) in &tenants {
            S::relog_kept(tenant, &head.index.read(), boundary, buf, &mut |records| {
                wal.append_batch(records.iter().copied())
            })?;
        }
        wal.sync()?;
        // Phase 2: move the old items out of the head into pending cuts.
        let mut out = Vec::new();
        for (tenant, head) in tenants {
            // The cut joins `pending` before the index lock is released, so
            // a reader (index lock, then pending) sees each item once.
            let mut index = head.index.write();
            let cut = S::take_before(&mut index, boundary);
            if !cut.is_empty() {
                let cut = Arc::new(cut);
                head.pending.write().push(cut.clone());
                drop(index);
                out.push((tenant, head, cut));
            }
        }
        S::metrics().series.set(self.num_series() as i64);
        Ok(Some((segment, out)))
    }

    /// Periodically cuts and uploads blocks until `shutdown` fires.
    pub async fn run_cutter(
        self: Arc<Self>,
        catalog: Arc<BlockCatalog>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        every(self.cfg.head_compaction_interval, shutdown, || async {
            // The head's own clock, never ahead of the wall clock (items
            // may be up to the creation grace period in the future).
            let head_now = self
                .head_max
                .load(Ordering::Relaxed)
                .min(now_ms().saturating_mul(S::UNITS_PER_MS));
            if head_now == i64::MIN {
                return;
            }
            let boundary = self.cut_boundary(head_now);
            if let Err(e) = self.cut_and_upload(boundary, &catalog).await {
                tracing::error!(wal = S::NAME, error = %e, "cutting the head into blocks failed; will retry");
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

/// Makes a WAL replay visible while it runs: a log line at least every
/// few seconds (segments, records, percent), the
/// `strata_ingester_wal_replay_*` gauges, and a text for the process's
/// `/ready` answer.
struct ReplayReporter<'a> {
    wal: &'static str,
    report: &'a (dyn Fn(String) + Sync),
    last_log: std::time::Instant,
}

impl<'a> ReplayReporter<'a> {
    /// A reporter of the WAL named `wal` ("metrics" or "logs").
    fn new(wal: &'static str, report: &'a (dyn Fn(String) + Sync)) -> Self {
        Self {
            wal,
            report,
            last_log: std::time::Instant::now(),
        }
    }

    /// Records one step of the replay.
    fn progress(&mut self, p: &strata_wal::ReplayProgress) {
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
        if self.last_log.elapsed() >= Duration::from_secs(5) {
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
fn split_by_range<T: Clone>(series: &Cut<T>, range: i64, ts: fn(&T) -> i64) -> Vec<(i64, Cut<T>)> {
    let mut by_range: HashMap<i64, Cut<T>> = HashMap::new();
    for (labels, items) in series {
        let mut rest: &[T] = items;
        while let Some(first) = rest.first() {
            let start = ts(first).div_euclid(range) * range;
            let n = rest.partition_point(|x| ts(x) < start.saturating_add(range));
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
