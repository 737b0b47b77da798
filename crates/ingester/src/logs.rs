//! Logs as a [`Signal`] of the head: entries in streams, nanosecond
//! timestamps, self-contained WAL records (a tenant's pushed streams with
//! labels and entries: log lines dwarf their labels, so refs would save
//! little), Parquet log blocks. The log WAL lives in `<tsdb dir>/logs-wal`,
//! apart from the metrics WAL, so each signal truncates on its own schedule.
//!
//! Entries of a stream may arrive out of order, as Loki's unordered writes
//! allow, as long as they are no more than `max_chunk_age / 2` behind the
//! stream's newest entry and not older than the last cut. An entry with the
//! same timestamp and line as a stored one is a retried push and is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use parking_lot::Mutex;
use strata_model::logs::{Direction, EntrySize, LineFilter, LogEntry, LogStream, line_matches};
use strata_model::{Labels, Matcher, matches_all};
use strata_storage::{
    BlockMeta, EncodedLogBlock, StorageError, encode_log_block, upload_log_block,
};

use crate::head::{Head, TenantHead};
use crate::signal::{Applied, Cut, Signal, SignalMetrics, WalAppend};
use crate::stream_entries;
use crate::{IngesterError, Rejected, TsdbConfig, metrics, walrec};
pub use strata_ingester_client::{LogPushOutcome, LogRejectReason, RejectedStream};

/// The log ingester.
pub type LogIngester = Head<LogSignal>;

/// One stream in the log head.
pub struct MemStream {
    labels: Labels,
    /// Time-ordered (stable for equal timestamps).
    entries: Mutex<Vec<LogEntry>>,
}

/// The streams of one tenant.
pub type Streams = HashMap<Labels, Arc<MemStream>>;

/// Logs in the head (see the module documentation).
pub struct LogSignal {
    /// How far behind a stream's newest entry an entry is accepted (ns).
    window_ns: i64,
}

impl Signal for LogSignal {
    const NAME: &'static str = "logs";
    const WAL_DIR: &'static str = "logs-wal";
    const SHIPPED_FILE: &'static str = "shipped-logs.json";
    const UNITS_PER_MS: i64 = 1_000_000;

    type Item = LogEntry;
    type Index = Streams;
    type Batch<'a> = Vec<(Labels, Vec<LogEntry>)>;
    /// The tenant's stream limit (0: none).
    type Limits = usize;
    type Outcome = LogPushOutcome;
    type Accepted = Vec<(Labels, Vec<LogEntry>)>;
    type Replay = ();
    type Block = EncodedLogBlock;

    fn time(item: &LogEntry) -> i64 {
        item.ts
    }

    fn metrics() -> SignalMetrics {
        SignalMetrics {
            appended: &metrics::LOG_ENTRIES_APPENDED,
            rejected: &metrics::LOG_ENTRIES_REJECTED,
            series: &metrics::LOG_STREAMS,
            blocks_uploaded: &metrics::LOG_BLOCKS_UPLOADED,
        }
    }

    fn window(&self) -> i64 {
        self.window_ns
    }

    fn check(
        &self,
        head: &TenantHead<Self>,
        batch: Vec<(Labels, Vec<LogEntry>)>,
        max_streams: &usize,
        min_valid: i64,
    ) -> (LogPushOutcome, Option<Vec<(Labels, Vec<LogEntry>)>>) {
        let max_streams = *max_streams;
        let mut outcome = LogPushOutcome::default();
        let mut accepted: Vec<(Labels, Vec<LogEntry>)> = Vec::with_capacity(batch.len());
        let streams = head.index.read();
        // Streams this batch creates (a set: a batch may name thousands).
        let mut new_streams: HashSet<Labels> = HashSet::new();
        for (i, (labels, mut entries)) in batch.into_iter().enumerate() {
            let Some(first_ts) = entries.iter().map(|e| e.ts).min() else {
                continue;
            };
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
                    first_timestamp: first_ts,
                });
                continue;
            }
            if existing.is_none() && !already_new {
                new_streams.insert(labels.clone());
            }
            entries.sort_by_key(|e| e.ts);
            let held = existing.map(|s| s.entries.lock());
            let stored: &[LogEntry] = held.as_deref().map_or(&[], |h| h.as_slice());
            let mut dups = strata_model::logs::Duplicates::new();
            let mut newest = stored.last().map_or(i64::MIN, |e| e.ts);
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
        let accepted = (!accepted.is_empty()).then_some(accepted);
        (outcome, accepted)
    }

    fn log(
        &self,
        tenant: &str,
        accepted: &Vec<(Labels, Vec<LogEntry>)>,
        buf: &mut Vec<u8>,
    ) -> Vec<usize> {
        walrec::encode_log_entries(buf, tenant, accepted.iter().map(|(l, e)| (l, e.as_slice())));
        vec![buf.len()]
    }

    fn apply(&self, head: &TenantHead<Self>, accepted: Vec<(Labels, Vec<LogEntry>)>) -> Applied {
        let mut bytes = 0usize;
        let mut max_time = i64::MIN;
        let mut created = 0;
        for (labels, entries) in accepted {
            let (stream, new) = stream_for(head, labels);
            created += usize::from(new);
            for e in &entries {
                bytes += e.line.len();
                max_time = max_time.max(e.ts);
            }
            // Checked for duplicates under the same WAL lock.
            stream_entries::merge(&mut stream.entries.lock(), entries);
        }
        metrics::LOG_BYTES_APPENDED.inc_by(bytes as u64);
        Applied { max_time, created }
    }

    fn accepted(outcome: &LogPushOutcome) -> usize {
        outcome.accepted
    }

    fn replay(
        &self,
        _: &mut (),
        record: walrec::Record,
        tenant: &dyn Fn(String) -> Arc<TenantHead<Self>>,
    ) {
        match record {
            walrec::Record::LogEntries {
                tenant: name,
                streams,
            } => {
                let head = tenant(name);
                for (labels, entries) in streams {
                    let (stream, _) = stream_for(&head, labels);
                    stream_entries::add(&mut stream.entries.lock(), entries);
                }
            }
            _ => tracing::warn!("metrics record in the log WAL; skipped"),
        }
    }

    fn replayed(&self, _: ()) {}

    fn len(index: &Streams) -> usize {
        index.len()
    }

    fn newest(index: &Streams) -> Option<i64> {
        index
            .values()
            .filter_map(|s| s.entries.lock().last().map(|e| e.ts))
            .max()
    }

    fn any_before(index: &Streams, boundary: i64) -> bool {
        index
            .values()
            .any(|s| s.entries.lock().first().is_some_and(|e| e.ts < boundary))
    }

    fn relog_kept(
        tenant: &str,
        index: &Streams,
        boundary: i64,
        buf: &mut Vec<u8>,
        append: &mut WalAppend<'_>,
    ) -> Result<(), strata_wal::WalError> {
        // One record per stream, straight from the head.
        for s in index.values() {
            let held = s.entries.lock();
            let split = held.partition_point(|e| e.ts < boundary);
            if split < held.len() {
                buf.clear();
                walrec::encode_log_entries(
                    buf,
                    tenant,
                    std::iter::once((&s.labels, &held[split..])),
                );
                append(&[buf.as_slice()])?;
            }
        }
        Ok(())
    }

    fn take_before(index: &mut Streams, boundary: i64) -> Cut<LogEntry> {
        let mut cut = Vec::new();
        for s in index.values() {
            let mut held = s.entries.lock();
            let split = held.partition_point(|e| e.ts < boundary);
            let rest = held.split_off(split);
            let old = std::mem::replace(&mut *held, rest);
            if !old.is_empty() {
                cut.push((s.labels.clone(), old));
            }
        }
        index.retain(|_, s| !s.entries.lock().is_empty());
        cut
    }

    fn encode(
        items: &Cut<LogEntry>,
        min_ms: i64,
        max_ms: i64,
    ) -> Result<EncodedLogBlock, StorageError> {
        encode_log_block(items, min_ms, max_ms)
    }

    fn upload(
        store: &dyn ObjectStore,
        tenant: &str,
        block: &EncodedLogBlock,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        upload_log_block(store, tenant, block)
    }

    fn meta(block: &EncodedLogBlock) -> &BlockMeta {
        &block.meta
    }
}

impl Head<LogSignal> {
    /// Checks, logs and applies pushed streams (labels already validated by
    /// the distributor) under a stream limit (0: none). Blocking: call from
    /// a blocking thread.
    pub fn push(
        &self,
        tenant: &str,
        streams: Vec<(Labels, Vec<LogEntry>)>,
        max_streams: usize,
    ) -> Result<LogPushOutcome, IngesterError> {
        self.write(tenant, streams, max_streams)
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
        let signal = LogSignal {
            window_ns: i64::try_from((max_chunk_age / 2).as_nanos()).unwrap_or(i64::MAX),
        };
        Head::open_with(signal, cfg, report)
    }

    /// Streams in all tenants' log heads.
    pub fn num_streams(&self) -> usize {
        self.num_series()
    }

    /// Calls `visit` with every stream (head and cuts still uploading) of
    /// the tenant whose labels match.
    fn visit(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mut visit: impl FnMut(&Labels, &[LogEntry]),
    ) {
        self.read_tenant(tenant, |pending, streams| {
            for cut in pending {
                for (labels, entries) in cut.iter() {
                    if matches_all(matchers, labels) {
                        visit(labels, entries);
                    }
                }
            }
            for s in streams.values() {
                if matches_all(matchers, &s.labels) {
                    visit(&s.labels, &s.entries.lock());
                }
            }
        });
    }
    /// The timestamp of the `n`-th entry from the end the direction reads
    /// first, over all matching streams (`None`: fewer entries than `n`):
    /// only entries up to it can be among a limited answer. Reads
    /// timestamps only, and each stream only as far as it can still matter.
    fn limit_cutoff(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        filters: &[LineFilter],
        (start_ns, end_ns): (i64, i64),
        (n, direction): (usize, Direction),
    ) -> Option<i64> {
        use std::collections::BinaryHeap;
        if n == 0 {
            return None;
        }
        // Backward keeps the n newest (a min-heap), forward the n oldest
        // (a max-heap); keys are negated for the min-heap.
        let key = |ts: i64| match direction {
            Direction::Backward => -ts,
            Direction::Forward => ts,
        };
        // Grows with what is read, never sized by the request's limit.
        let mut kept: BinaryHeap<i64> = BinaryHeap::new();
        self.visit(tenant, matchers, |_, entries| {
            let lo = entries.partition_point(|e| e.ts < start_ns);
            let hi = entries.partition_point(|e| e.ts < end_ns);
            let window = &entries[lo..hi];
            let ordered: Box<dyn Iterator<Item = &LogEntry>> = match direction {
                Direction::Backward => Box::new(window.iter().rev()),
                Direction::Forward => Box::new(window.iter()),
            };
            for e in ordered {
                let k = key(e.ts);
                if kept.len() == n && kept.peek().is_some_and(|worst| k >= *worst) {
                    // Sorted by time: the rest of this stream is further away.
                    break;
                }
                if !line_matches(filters, &e.line) {
                    continue;
                }
                if kept.len() == n {
                    kept.pop();
                }
                kept.push(k);
            }
        });
        (kept.len() == n).then(|| key(kept.peek().copied().unwrap_or_default()))
    }

    /// Entries in `[start_ns, end_ns)` of matching streams that pass the line
    /// filters; with a limit, only those that can be among the first that
    /// many in the direction over all streams (the caller merges streams
    /// and trims).
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
        // Without a global cutoff each stream would give up to `limit`
        // entries: a limit of 5,000 over 1,000 busy streams copied 5 million.
        let cutoff =
            limit.and_then(|l| self.limit_cutoff(tenant, matchers, filters, (start_ns, end_ns), l));
        let mut by_labels: HashMap<Labels, Vec<LogEntry>> = HashMap::new();
        self.visit(tenant, matchers, |labels, entries| {
            let lo = entries.partition_point(|e| e.ts < start_ns);
            let hi = entries.partition_point(|e| e.ts < end_ns);
            let window = &entries[lo..hi];
            let pass = |e: &&LogEntry| line_matches(filters, &e.line);
            let picked: Vec<LogEntry> = match limit {
                Some((n, Direction::Backward)) => {
                    let from = cutoff.unwrap_or(i64::MIN);
                    let mut v: Vec<LogEntry> = window
                        .iter()
                        .rev()
                        .take_while(|e| e.ts >= from)
                        .filter(pass)
                        .take(n)
                        .cloned()
                        .collect();
                    v.reverse();
                    v
                }
                Some((n, Direction::Forward)) => {
                    let to = cutoff.unwrap_or(i64::MAX);
                    window
                        .iter()
                        .take_while(|e| e.ts <= to)
                        .filter(pass)
                        .take(n)
                        .cloned()
                        .collect()
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
        self.visit(tenant, matchers, |labels, entries| {
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
        self.visit(tenant, matchers, |labels, entries| {
            let lo = entries.partition_point(|e| e.ts < start_ns);
            if entries.get(lo).is_some_and(|e| e.ts < end_ns) {
                out.push(labels.clone());
            }
        });
        out.sort();
        out.dedup();
        out
    }
}

/// The head stream with these labels, created when missing (`true` then).
fn stream_for(head: &TenantHead<LogSignal>, labels: Labels) -> (Arc<MemStream>, bool) {
    if let Some(s) = head.index.read().get(&labels) {
        return (s.clone(), false);
    }
    let mut streams = head.index.write();
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
    use strata_storage::BlockCatalog;

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
    fn a_limited_select_copies_only_the_first_entries_over_all_streams() {
        let dir = tempfile::tempdir().unwrap();
        let ing = LogIngester::open(&cfg(dir.path()), Duration::from_secs(7200)).unwrap();
        // Three streams with interleaved times: stream s holds 10H + 3i + s.
        let batch = (0..3i64)
            .map(|s| {
                let labels =
                    Labels::from_pairs([("app", "api"), ("s", ["a", "b", "c"][s as usize])]);
                let entries = (0..20i64)
                    .map(|i| entry(10 * H + 3 * i + s, if i % 2 == 0 { "even" } else { "odd" }))
                    .collect();
                (labels, entries)
            })
            .collect();
        ing.push("t", batch, 0).unwrap();
        let times = |streams: Vec<LogStream>| -> Vec<i64> {
            let mut t: Vec<i64> = streams
                .iter()
                .flat_map(|s| s.entries.iter().map(|e| e.ts))
                .collect();
            t.sort();
            t
        };
        let newest = ing.select("t", &[], &[], 0, i64::MAX, Some((4, Direction::Backward)));
        assert_eq!(
            times(newest),
            [10 * H + 56, 10 * H + 57, 10 * H + 58, 10 * H + 59]
        );
        let oldest = ing.select("t", &[], &[], 0, i64::MAX, Some((4, Direction::Forward)));
        assert_eq!(times(oldest), [10 * H, 10 * H + 1, 10 * H + 2, 10 * H + 3]);
        // Filters count: the 3 newest "odd" lines.
        let odd = ing.select(
            "t",
            &[],
            &[LineFilter::Contains("odd".into())],
            0,
            i64::MAX,
            Some((3, Direction::Backward)),
        );
        assert_eq!(times(odd), [10 * H + 57, 10 * H + 58, 10 * H + 59]);
        // More asked than there are: everything.
        let all = ing.select("t", &[], &[], 0, i64::MAX, Some((100, Direction::Backward)));
        assert_eq!(times(all).len(), 60);
    }

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
