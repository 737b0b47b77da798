//! The log ingester: the same durability contract as metrics (WAL before
//! acknowledgement, head cut into blocks, WAL truncated only after upload),
//! for log streams.
//!
//! Entries of a stream may arrive out of order, as Loki's unordered writes
//! allow, as long as they are no more than `max_chunk_age / 2` behind the
//! stream's newest entry and not older than the last cut. An entry with the
//! same timestamp and line as a stored one is a retried push and is dropped.
//! The log WAL lives in `<tsdb dir>/logs-wal`, apart from the metrics WAL, so
//! each signal truncates on its own schedule.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use strata_model::logs::{Direction, EntrySize, LineFilter, LogEntry, LogStream, line_matches};
use strata_model::{Labels, Matcher, matches_all};
use strata_storage::{BlockCatalog, encode_log_block, upload_log_block};
use strata_wal::{GroupSync, Wal};

use crate::stream_entries;
use crate::{
    IngesterError, Rejected, TsdbConfig, encode_with_retry, every, metrics, now_ms, split_by_range,
    upload_with_retry, wal_options, walrec,
};
pub use strata_ingester_client::{LogPushOutcome, LogRejectReason, RejectedStream};

const NS_PER_MS: i64 = 1_000_000;

/// One stream in the log head.
struct MemStream {
    labels: Labels,
    /// Time-ordered (stable for equal timestamps).
    entries: Mutex<Vec<LogEntry>>,
}

/// Entries cut from the head, queried until their block upload succeeds.
struct FrozenLogs {
    streams: Vec<(Labels, Vec<LogEntry>)>,
}

#[derive(Default)]
struct TenantLogs {
    streams: RwLock<HashMap<Labels, Arc<MemStream>>>,
    /// Entries before this time (ns) belong to cut blocks and are refused.
    min_valid_ns: AtomicI64,
    pending: RwLock<Vec<Arc<FrozenLogs>>>,
}

impl TenantLogs {
    fn new() -> Self {
        Self {
            min_valid_ns: AtomicI64::new(i64::MIN),
            ..Default::default()
        }
    }
}

struct WalState {
    wal: Wal,
    buf: Vec<u8>,
    closed: bool,
}

/// Streams in the head and pending uploads that match, as (labels, entries).
type Visit<'a> = &'a mut dyn FnMut(&Labels, &[LogEntry]);

/// The log ingester.
pub struct LogIngester {
    block_range_ns: i64,
    /// How far behind a stream's newest entry an entry is accepted.
    window_ns: i64,
    head_compaction_interval: Duration,
    flush_on_shutdown: bool,
    wal: Mutex<WalState>,
    wal_sync: Arc<GroupSync>,
    tenants: RwLock<HashMap<String, Arc<TenantLogs>>>,
    head_max_ns: AtomicI64,
    /// Record of recent uploads (see [`crate::shipped`]).
    shipped_path: PathBuf,
}

impl LogIngester {
    /// Log blocks this ingester uploaded in the last day, for the catalog
    /// to offer queriers until the bucket index lists them.
    pub fn recently_shipped(&self) -> Vec<crate::shipped::Shipped> {
        crate::shipped::load(&self.shipped_path, crate::now_ms())
    }

    /// Opens the log WAL under `<cfg.dir>/logs-wal` and replays it.
    pub fn open(cfg: &TsdbConfig, max_chunk_age: Duration) -> Result<Self, IngesterError> {
        Self::open_reporting(cfg, max_chunk_age, &|_| {})
    }

    /// [`LogIngester::open`], telling `report` how the WAL replay goes.
    pub fn open_reporting(
        cfg: &TsdbConfig,
        max_chunk_age: Duration,
        report: &(dyn Fn(String) + Sync),
    ) -> Result<Self, IngesterError> {
        let opts = wal_options(cfg)?;
        let tenants: RwLock<HashMap<String, Arc<TenantLogs>>> = RwLock::new(HashMap::new());
        let mut decode_err = None;
        let mut max_ns = i64::MIN;
        let dir = PathBuf::from(&cfg.dir).join("logs-wal");
        let mut reporter = crate::ReplayReporter::new("logs", report);
        let replay = |payload: &[u8]| {
            if decode_err.is_some() {
                return;
            }
            match walrec::decode(payload) {
                Ok(walrec::Record::LogEntries { tenant, streams }) => {
                    let head = tenants
                        .write()
                        .entry(tenant)
                        .or_insert_with(|| Arc::new(TenantLogs::new()))
                        .clone();
                    for (labels, entries) in streams {
                        if let Some(e) = entries.last() {
                            max_ns = max_ns.max(e.ts);
                        }
                        let (stream, _) = stream_for(&head, labels);
                        stream_entries::add(&mut stream.entries.lock(), entries);
                    }
                }
                Ok(_) => tracing::warn!("metrics record in the log WAL; skipped"),
                Err(e) => decode_err = Some(e),
            }
        };
        let (wal, stats) = Wal::open_reporting(&dir, opts, replay, |p| reporter.progress(p))?;
        if let Some(e) = decode_err {
            return Err(e.into());
        }
        let ing = Self {
            block_range_ns: cfg.block_ranges_period.as_millis() as i64 * NS_PER_MS,
            window_ns: (max_chunk_age / 2).as_nanos() as i64,
            head_compaction_interval: cfg.head_compaction_interval,
            flush_on_shutdown: cfg.flush_blocks_on_shutdown,
            wal_sync: wal.group_sync(),
            wal: Mutex::new(WalState {
                wal,
                buf: Vec::new(),
                closed: false,
            }),
            tenants,
            head_max_ns: AtomicI64::new(max_ns),
            shipped_path: crate::shipped::logs_path(&cfg.dir),
        };
        tracing::info!(
            segments = stats.segments,
            records = stats.records,
            truncated_bytes = stats.truncated_bytes,
            corrupt_segments = stats.corrupt_segments.len(),
            streams = ing.num_streams(),
            "log WAL replayed"
        );
        metrics::WAL_CORRUPTIONS
            .with_label_values(&["logs"])
            .inc_by(stats.corrupt_segments.len() as u64);
        metrics::LOG_STREAMS.set(ing.num_streams() as i64);
        Ok(ing)
    }

    fn tenant(&self, tenant: &str) -> Arc<TenantLogs> {
        if let Some(h) = self.tenants.read().get(tenant) {
            return h.clone();
        }
        self.tenants
            .write()
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(TenantLogs::new()))
            .clone()
    }

    /// Streams in all tenants' log heads.
    pub fn num_streams(&self) -> usize {
        self.tenants
            .read()
            .values()
            .map(|t| t.streams.read().len())
            .sum()
    }

    /// Checks, logs and applies pushed streams (labels already validated by
    /// the distributor). Blocking: call from a blocking thread.
    pub fn push(
        &self,
        tenant: &str,
        batch: Vec<(Labels, Vec<LogEntry>)>,
        max_streams: usize,
    ) -> Result<LogPushOutcome, IngesterError> {
        let _span =
            tracing::debug_span!("ingester_push_logs", tenant, streams = batch.len()).entered();
        let head = self.tenant(tenant);
        let min_valid = head.min_valid_ns.load(Ordering::Acquire);
        let mut ws = self.wal.lock();
        if ws.closed {
            return Err(IngesterError::ShuttingDown);
        }
        let mut outcome = LogPushOutcome::default();
        let mut accepted: Vec<(Labels, Vec<LogEntry>)> = Vec::with_capacity(batch.len());
        {
            let streams = head.streams.read();
            // Streams this batch creates (a set: a batch may name thousands).
            let mut new_streams: HashSet<Labels> = HashSet::new();
            for (i, (labels, mut entries)) in batch.into_iter().enumerate() {
                if entries.is_empty() {
                    continue;
                }
                entries.sort_by_key(|e| e.ts);
                let existing = streams.get(&labels);
                let already_new = existing.is_none() && new_streams.contains(&labels);
                if existing.is_none()
                    && !already_new
                    && max_streams > 0
                    && streams.len() + new_streams.len() >= max_streams
                {
                    let reason = LogRejectReason::StreamLimit;
                    metrics::LOG_ENTRIES_REJECTED
                        .with_label_values(&[reason.as_str()])
                        .inc_by(entries.len() as u64);
                    outcome.rejected.push(RejectedStream {
                        index: i,
                        reason,
                        count: entries.len(),
                        first_timestamp: entries[0].ts,
                    });
                    continue;
                }
                if existing.is_none() && !already_new {
                    new_streams.insert(labels.clone());
                }
                let held = existing.map(|s| s.entries.lock());
                let stored: &[LogEntry] = held.as_deref().map_or(&[], |h| h.as_slice());
                let mut dups = strata_model::logs::Duplicates::new();
                let mut newest = held
                    .as_ref()
                    .and_then(|h| h.last().map(|e| e.ts))
                    .unwrap_or(i64::MIN);
                let mut keep = Vec::with_capacity(entries.len());
                let mut rejected: Option<RejectedStream> = None;
                for e in entries {
                    let verdict = if e.ts < min_valid {
                        Err(LogRejectReason::OutOfBounds)
                    } else if newest != i64::MIN && e.ts < newest.saturating_sub(self.window_ns) {
                        Err(LogRejectReason::TooFarBehind)
                    } else {
                        Ok(())
                    };
                    match verdict {
                        Ok(()) => {
                            if !dups.check(stored, &keep, &e) {
                                newest = newest.max(e.ts);
                                keep.push(e);
                            }
                        }
                        Err(reason) => {
                            metrics::LOG_ENTRIES_REJECTED
                                .with_label_values(&[reason.as_str()])
                                .inc();
                            Rejected::note(&mut rejected, i, reason, e.ts);
                        }
                    }
                }
                outcome.rejected.extend(rejected);
                if !keep.is_empty() {
                    outcome.accepted += keep.len();
                    accepted.push((labels, keep));
                }
            }
        }
        if accepted.is_empty() {
            return Ok(outcome);
        }

        // Log, then apply. Nothing is applied unless the WAL write succeeded.
        let WalState { wal, buf, .. } = &mut *ws;
        buf.clear();
        walrec::encode_log_entries(buf, tenant, accepted.iter().map(|(l, e)| (l, e.as_slice())));
        let ticket = wal.append_batch_deferred([buf.as_slice()])?;
        let mut bytes = 0usize;
        let mut max_ts = i64::MIN;
        let mut created = 0i64;
        for (labels, entries) in accepted {
            let (stream, new) = stream_for(&head, labels);
            created += i64::from(new);
            for e in &entries {
                bytes += e.line.len();
                max_ts = max_ts.max(e.ts);
            }
            // Checked for duplicates above, under the same WAL lock.
            stream_entries::merge(&mut stream.entries.lock(), entries);
        }
        self.head_max_ns.fetch_max(max_ts, Ordering::Relaxed);
        drop(ws);
        self.wal_sync.wait_durable(ticket)?;
        metrics::LOG_ENTRIES_APPENDED.inc_by(outcome.accepted as u64);
        metrics::LOG_BYTES_APPENDED.inc_by(bytes as u64);
        // Streams only leave the head at a cut, which sets the gauge exactly.
        metrics::LOG_STREAMS.add(created);
        Ok(outcome)
    }

    /// Calls `visit` with every stream (head and not yet uploaded cuts) of
    /// the tenant whose labels match.
    fn visit(&self, tenant: &str, matchers: &[Matcher], visit: Visit<'_>) {
        let Some(head) = self.tenants.read().get(tenant).cloned() else {
            return;
        };
        // Pending cuts first, then the head: together they hold every entry
        // not yet in a block, whatever a concurrent cut does.
        let pending: Vec<Arc<FrozenLogs>> = head.pending.read().clone();
        for p in &pending {
            for (labels, entries) in &p.streams {
                if matches_all(matchers, labels) {
                    visit(labels, entries);
                }
            }
        }
        let streams: Vec<Arc<MemStream>> = head
            .streams
            .read()
            .values()
            .filter(|s| matches_all(matchers, &s.labels))
            .cloned()
            .collect();
        for s in streams {
            let held = s.entries.lock();
            visit(&s.labels, &held);
        }
    }

    /// Entries in `[start_ns, end_ns)` of matching streams that pass the line
    /// filters; with a limit, at most that many per stream from the end the
    /// direction reads first (the caller merges streams and trims).
    #[allow(clippy::too_many_arguments)]
    pub fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        filters: &[LineFilter],
        start_ns: i64,
        end_ns: i64,
        limit: Option<(usize, Direction)>,
    ) -> Vec<LogStream> {
        let mut by_labels: HashMap<Labels, Vec<LogEntry>> = HashMap::new();
        self.visit(tenant, matchers, &mut |labels, entries| {
            let lo = entries.partition_point(|e| e.ts < start_ns);
            let hi = entries.partition_point(|e| e.ts < end_ns);
            let window = &entries[lo..hi];
            let pass = |e: &&LogEntry| line_matches(filters, &e.line);
            let picked: Vec<LogEntry> = match limit {
                Some((n, Direction::Backward)) => {
                    let mut v: Vec<LogEntry> =
                        window.iter().rev().filter(pass).take(n).cloned().collect();
                    v.reverse();
                    v
                }
                Some((n, Direction::Forward)) => {
                    window.iter().filter(pass).take(n).cloned().collect()
                }
                None => window.iter().filter(pass).cloned().collect(),
            };
            if !picked.is_empty() {
                stream_entries::add(by_labels.entry(labels.clone()).or_default(), picked);
            }
        });
        by_labels
            .into_iter()
            .map(|(labels, entries)| LogStream { labels, entries })
            .collect()
    }

    /// Sizes of the entries in `[start_ns, end_ns)` of matching streams,
    /// without copying a line.
    pub fn select_sizes(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Vec<(Labels, Vec<EntrySize>)> {
        let mut by_labels: HashMap<Labels, Vec<EntrySize>> = HashMap::new();
        self.visit(tenant, matchers, &mut |labels, entries| {
            let lo = entries.partition_point(|e| e.ts < start_ns);
            let hi = entries.partition_point(|e| e.ts < end_ns);
            if lo < hi {
                by_labels
                    .entry(labels.clone())
                    .or_default()
                    .extend(entries[lo..hi].iter().map(|e| EntrySize::of(e.ts, &e.line)));
            }
        });
        by_labels.into_iter().collect()
    }

    /// Label sets of matching streams with entries in `[start_ns, end_ns)`.
    pub fn streams(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Vec<Labels> {
        let mut out: Vec<Labels> = Vec::new();
        self.visit(tenant, matchers, &mut |labels, entries| {
            let lo = entries.partition_point(|e| e.ts < start_ns);
            if entries.get(lo).is_some_and(|e| e.ts < end_ns) {
                out.push(labels.clone());
            }
        });
        out.sort();
        out.dedup();
        out
    }

    /// The cut boundary (ns) for a head whose newest entry is at `now_ns`.
    pub fn cut_boundary(&self, now_ns: i64) -> i64 {
        let grace = (self.block_range_ns / 2).max(self.window_ns);
        (now_ns - grace).div_euclid(self.block_range_ns) * self.block_range_ns
    }

    /// Cuts every entry older than `boundary_ns` into log blocks, uploads them
    /// (retrying until success), then drops the WAL segments that held them.
    pub async fn cut_and_upload(
        self: &Arc<Self>,
        boundary_ns: i64,
        catalog: &BlockCatalog,
    ) -> Result<usize, IngesterError> {
        let this = self.clone();
        let frozen = tokio::task::spawn_blocking(move || this.freeze_before(boundary_ns))
            .await
            .map_err(|e| IngesterError::Config(format!("log cut task failed: {e}")))??;
        let Some((segment, frozen)) = frozen else {
            return Ok(0);
        };
        let range = self.block_range_ns;
        let mut uploaded = 0;
        for (tenant, head, fl) in frozen {
            let ranges = split_by_range(&fl.streams, range, |e: &LogEntry| e.ts);
            for (start, streams) in ranges {
                let (min_ms, max_ms) = (start / NS_PER_MS, (start + range) / NS_PER_MS);
                let block = encode_with_retry(&tenant, streams, move |s| {
                    encode_log_block(s, min_ms, max_ms)
                })
                .await?;
                upload_with_retry(&tenant, &block.meta.ulid, || {
                    upload_log_block(catalog.reader().store().as_ref(), &tenant, &block)
                })
                .await;
                tracing::info!(tenant, ulid = %block.meta.ulid, min_time = min_ms,
                    streams = block.meta.stats.num_series, entries = block.meta.stats.num_samples,
                    bytes = block.meta.stats.num_bytes, "log block uploaded");
                metrics::LOG_BLOCKS_UPLOADED.inc();
                metrics::BLOCK_BYTES_UPLOADED.inc_by(block.meta.stats.num_bytes);
                catalog.add(&tenant, block.meta.clone()).await;
                crate::shipped::record_upload(&self.shipped_path, &tenant, &block.meta);
                uploaded += 1;
            }
            head.pending.write().retain(|p| !Arc::ptr_eq(p, &fl));
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> Result<(), IngesterError> {
            this.wal.lock().wal.remove_before(segment)?;
            Ok(())
        })
        .await
        .map_err(|e| IngesterError::Config(format!("log WAL truncation failed: {e}")))??;
        Ok(uploaded)
    }

    /// Moves entries older than `boundary_ns` into pending cuts, rotating the
    /// WAL and re-logging what the head keeps.
    #[allow(clippy::type_complexity)]
    fn freeze_before(
        &self,
        boundary_ns: i64,
    ) -> Result<Option<(u64, Vec<(String, Arc<TenantLogs>, Arc<FrozenLogs>)>)>, IngesterError> {
        let mut ws = self.wal.lock();
        let tenants: Vec<(String, Arc<TenantLogs>)> = self
            .tenants
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let any = tenants.iter().any(|(_, h)| {
            h.streams
                .read()
                .values()
                .any(|s| s.entries.lock().first().is_some_and(|e| e.ts < boundary_ns))
        });
        for (_, h) in &tenants {
            h.min_valid_ns.fetch_max(boundary_ns, Ordering::AcqRel);
        }
        if !any {
            return Ok(None);
        }
        let segment = ws.wal.rotate()?;
        let WalState { wal, buf, .. } = &mut *ws;
        let mut out = Vec::new();
        // Phase 1: re-log what the head keeps, one record per stream, straight
        // from the head. Nothing changes yet (the WAL lock keeps writers out),
        // so a failed write (a full disk) loses nothing.
        for (tenant, head) in &tenants {
            for s in head.streams.read().values() {
                let held = s.entries.lock();
                let split = held.partition_point(|e| e.ts < boundary_ns);
                if split < held.len() {
                    buf.clear();
                    walrec::encode_log_entries(
                        buf,
                        tenant,
                        std::iter::once((&s.labels, &held[split..])),
                    );
                    wal.append_batch([buf.as_slice()])?;
                }
            }
        }
        wal.sync()?;
        // Phase 2: move the old entries out of the head into pending blocks.
        for (tenant, head) in tenants {
            let mut streams = head.streams.write();
            let mut cut = Vec::new();
            for s in streams.values() {
                let mut held = s.entries.lock();
                let split = held.partition_point(|e| e.ts < boundary_ns);
                let rest = held.split_off(split);
                let old = std::mem::replace(&mut *held, rest);
                if !old.is_empty() {
                    cut.push((s.labels.clone(), old));
                }
            }
            streams.retain(|_, s| !s.entries.lock().is_empty());
            drop(streams);
            if !cut.is_empty() {
                let fl = Arc::new(FrozenLogs { streams: cut });
                head.pending.write().push(fl.clone());
                out.push((tenant, head, fl));
            }
        }
        metrics::LOG_STREAMS.set(self.num_streams() as i64);
        Ok(Some((segment, out)))
    }

    /// Periodically cuts and uploads log blocks until `shutdown` fires.
    pub async fn run_cutter(
        self: Arc<Self>,
        catalog: Arc<BlockCatalog>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        every(self.head_compaction_interval, shutdown, || async {
            let head_now = self
                .head_max_ns
                .load(Ordering::Relaxed)
                .min(now_ms().saturating_mul(NS_PER_MS));
            if head_now == i64::MIN {
                return;
            }
            let boundary = self.cut_boundary(head_now);
            if let Err(e) = self.cut_and_upload(boundary, &catalog).await {
                tracing::error!(error = %e, "cutting the log head into blocks failed; will retry");
            }
        })
        .await
    }

    /// Graceful stop: refuses new pushes, syncs the WAL and, when
    /// configured, cuts the whole head into blocks.
    pub async fn shutdown(self: &Arc<Self>, catalog: &BlockCatalog) -> Result<(), IngesterError> {
        if self.flush_on_shutdown {
            self.cut_and_upload(i64::MAX, catalog).await?;
        }
        let mut ws = self.wal.lock();
        ws.closed = true;
        ws.wal.sync()?;
        Ok(())
    }
}

/// The head stream with these labels, created when missing (`true` then).
fn stream_for(head: &TenantLogs, labels: Labels) -> (Arc<MemStream>, bool) {
    if let Some(s) = head.streams.read().get(&labels) {
        return (s.clone(), false);
    }
    let mut streams = head.streams.write();
    if let Some(s) = streams.get(&labels) {
        return (s.clone(), false);
    }
    let s = Arc::new(MemStream {
        labels: labels.clone(),
        entries: Mutex::new(Vec::new()),
    });
    streams.insert(labels, s.clone());
    (s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path) -> TsdbConfig {
        TsdbConfig {
            dir: dir.to_string_lossy().into_owned(),
            block_ranges_period: Duration::from_secs(3600),
            ..TsdbConfig::default()
        }
    }

    fn entry(ts: i64, line: &str) -> LogEntry {
        LogEntry {
            ts,
            line: line.into(),
            metadata: Labels::default(),
        }
    }

    const H: i64 = 3_600_000_000_000;

    #[test]
    fn unordered_entries_duplicates_window_and_replay() {
        let dir = tempfile::tempdir().unwrap();
        let labels = Labels::from_pairs([("app", "api")]);
        {
            let ing = LogIngester::open(&cfg(dir.path()), Duration::from_secs(7200)).unwrap();
            let out = ing
                .push(
                    "t",
                    vec![(
                        labels.clone(),
                        vec![
                            entry(10 * H, "b"),
                            entry(10 * H - 5, "a"),
                            entry(10 * H, "b"),
                        ],
                    )],
                    0,
                )
                .unwrap();
            assert_eq!(out.accepted, 2, "{out:?}");
            // Within the 1h window: accepted; beyond: too far behind; a
            // retried identical entry: dropped without error.
            let out = ing
                .push(
                    "t",
                    vec![(
                        labels.clone(),
                        vec![
                            entry(10 * H - H / 2, "c"),
                            entry(8 * H, "old"),
                            entry(10 * H, "b"),
                        ],
                    )],
                    0,
                )
                .unwrap();
            assert_eq!(out.accepted, 1);
            assert_eq!(out.rejected.len(), 1);
            assert_eq!(out.rejected[0].reason, LogRejectReason::TooFarBehind);
            // Stream limit.
            let other = Labels::from_pairs([("app", "web")]);
            let out = ing
                .push("t", vec![(other, vec![entry(10 * H, "x")])], 1)
                .unwrap();
            assert_eq!(out.rejected[0].reason, LogRejectReason::StreamLimit);
        }
        let ing = LogIngester::open(&cfg(dir.path()), Duration::from_secs(7200)).unwrap();
        let got = ing.select("t", &[], &[], 0, i64::MAX, None);
        assert_eq!(got.len(), 1);
        let lines: Vec<&str> = got[0].entries.iter().map(|e| e.line.as_str()).collect();
        assert_eq!(lines, vec!["c", "a", "b"]);
        let newest = ing.select(
            "t",
            &[],
            &[LineFilter::NotContains("b".into())],
            0,
            i64::MAX,
            Some((1, Direction::Backward)),
        );
        assert_eq!(newest[0].entries, vec![entry(10 * H - 5, "a")]);
    }

    #[tokio::test]
    async fn cut_uploads_blocks_and_keeps_the_rest_across_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let catalog = BlockCatalog::new(
            Arc::new(strata_storage::BlockReader::new(store)),
            strata_storage::Signal::Logs,
            Duration::from_secs(60),
        );
        let wal_dir = dir.path().join("wal");
        let labels = Labels::from_pairs([("app", "api")]);
        let ing = Arc::new(LogIngester::open(&cfg(&wal_dir), Duration::from_secs(7200)).unwrap());
        let entries: Vec<LogEntry> = (0..10)
            .map(|i| entry(i * H / 2, &format!("l{i}")))
            .collect();
        ing.push("t", vec![(labels.clone(), entries.clone())], 0)
            .unwrap();
        let uploaded = ing.cut_and_upload(3 * H, &catalog).await.unwrap();
        assert_eq!(uploaded, 3);
        let blocks = catalog.blocks("t", 0, i64::MAX).await.unwrap();
        assert_eq!(blocks.len(), 3);
        let mut from_blocks = Vec::new();
        for b in &blocks {
            for s in catalog
                .reader()
                .select_log_entries("t", b, &[], &[], 0, i64::MAX, None)
                .await
                .unwrap()
            {
                from_blocks.extend(s.entries);
            }
        }
        from_blocks.sort_by_key(|e| e.ts);
        assert_eq!(from_blocks, entries[..6].to_vec());
        // Older than the cut: refused.
        let out = ing
            .push("t", vec![(labels.clone(), vec![entry(H, "late")])], 0)
            .unwrap();
        assert_eq!(out.rejected[0].reason, LogRejectReason::OutOfBounds);
        drop(ing);
        let ing = LogIngester::open(&cfg(&wal_dir), Duration::from_secs(7200)).unwrap();
        let head = ing.select("t", &[], &[], 0, i64::MAX, None);
        assert_eq!(head[0].entries, entries[6..].to_vec());
    }
}
