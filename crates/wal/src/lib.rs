//! Write-ahead log: an append-only sequence of numbered segment files holding
//! length-prefixed, CRC32C-checked records.
//!
//! The ingester appends every accepted write here (and, by default, fsyncs it)
//! before acknowledging it, and replays the log on start. Record framing is
//! `[len: u32 LE][crc32c(payload): u32 LE][payload]`.
//!
//! A torn or corrupt record is handled by where it is. In the newest
//! segment it is the torn tail of a write a crash interrupted (never
//! acknowledged): replay truncates the segment at the last good record and
//! appends continue there. In an older segment it is damage (a bad disk
//! block): the records before it are replayed, the damaged segment is
//! copied aside to `<dir>/corrupt/` for inspection and cut back to those
//! records, an error is logged, and replay goes on with the later
//! segments, whose acknowledged records are kept.
//!
//! A failed fsync marks the log failed: the kernel may have dropped the
//! dirty pages, so nothing written afterwards may be acknowledged until a
//! restart replays what is really on disk. Under the `Interval` policy a
//! timer thread fsyncs pending writes every interval, so the last writes
//! before a quiet period do not wait for the next append.
//!
//! Segments are named by a zero-padded sequence number. [`Wal::rotate`] starts a
//! new segment and returns its number, and [`Wal::remove_before`] deletes
//! whole older segments once their content is durable elsewhere (a block in
//! the object store).
//!
//! Group commit: [`Wal::append_batch_deferred`] writes without syncing and
//! returns a [`SyncTicket`]; callers release whatever lock guards the `Wal`
//! and then wait on [`GroupSync::wait_durable`]. One waiter fsyncs for every
//! write that reached the file before it, so concurrent writers share fsyncs
//! instead of queueing one fsync each behind the lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const HEADER_LEN: usize = 8;
/// Records larger than this are treated as corruption on replay.
pub const MAX_RECORD_LEN: usize = 256 << 20;

/// Errors from WAL operations, with the file they concern.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("WAL is unusable after a failed write could not be rolled back; restart to recover")]
    Poisoned,
    #[error("WAL record of {0} bytes exceeds the {MAX_RECORD_LEN} byte limit")]
    RecordTooLarge(usize),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// When appended records are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync after every append: an acknowledged write survives power loss.
    Always,
    /// fsync at most once per interval; a crash of the machine (not just the
    /// process) may lose the last interval of writes.
    Interval(Duration),
    /// Never fsync explicitly; leave it to the OS.
    Never,
}

/// WAL tuning.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A new segment is started once the current one exceeds this size.
    pub segment_size: u64,
    pub fsync: FsyncPolicy,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 128 << 20,
            fsync: FsyncPolicy::Always,
        }
    }
}

/// What replay found, for logs and metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    /// Bytes dropped from a torn or corrupt tail (0 on a clean log).
    pub truncated_bytes: u64,
    /// Copies of older segments that held a corrupt record, in `<dir>/corrupt/`.
    pub corrupt_segments: Vec<PathBuf>,
}

/// How far a replay has got, reported after each segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Segments replayed so far, of `segments`.
    pub segments_done: usize,
    pub segments: usize,
    /// Bytes of segment files replayed so far, of `bytes_total`.
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub records: u64,
}

impl ReplayProgress {
    /// Done, from 0 to 1 (by bytes).
    pub fn ratio(&self) -> f64 {
        if self.bytes_total == 0 {
            1.0
        } else {
            self.bytes_done as f64 / self.bytes_total as f64
        }
    }
}

/// An open write-ahead log positioned at the end of its newest segment.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    segment: u64,
    file: Arc<File>,
    segment_len: u64,
    last_sync: Instant,
    dirty: bool,
    buf: Vec<u8>,
    bytes_written: u64,
    poisoned: bool,
    group: Arc<GroupSync>,
}

/// A write's position in the log, to wait on with [`GroupSync::wait_durable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a deferred write is not durable until its ticket is waited on"]
pub struct SyncTicket {
    /// Log position (bytes written since open) the write ends at; 0 when the
    /// fsync policy does not ask for a sync per write.
    end: u64,
}

/// Shares fsyncs between concurrent writers of one [`Wal`].
#[derive(Debug)]
pub struct GroupSync {
    state: Mutex<GroupState>,
    /// Held by the one waiter that is running fsync; the others queue here and
    /// usually find their write already covered when they get it.
    syncing: Mutex<()>,
}

#[derive(Debug)]
struct GroupState {
    file: Arc<File>,
    path: PathBuf,
    written: u64,
    synced: u64,
    /// Set when an fsync failed: the kernel may have dropped the dirty pages,
    /// so no later write may be acknowledged as durable.
    failed: bool,
}

impl GroupSync {
    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once every byte up to the ticket's position is on stable
    /// storage, running the fsync itself if nobody else has.
    pub fn wait_durable(&self, ticket: SyncTicket) -> Result<(), WalError> {
        if ticket.end == 0 {
            return Ok(());
        }
        loop {
            {
                let st = self.lock();
                if st.failed {
                    return Err(WalError::Poisoned);
                }
                if st.synced >= ticket.end {
                    return Ok(());
                }
            }
            let _syncing = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
            let (file, path, target) = {
                let st = self.lock();
                if st.failed {
                    return Err(WalError::Poisoned);
                }
                if st.synced >= ticket.end {
                    return Ok(());
                }
                (st.file.clone(), st.path.clone(), st.written)
            };
            if let Err(source) = file.sync_data() {
                self.lock().failed = true;
                return Err(WalError::Io { path, source });
            }
            let mut st = self.lock();
            st.synced = st.synced.max(target);
        }
    }

    /// fsyncs whatever was written and not yet synced (the interval
    /// policy's timer).
    pub fn sync_pending(&self) -> Result<(), WalError> {
        let end = self.lock().written;
        self.wait_durable(SyncTicket { end })
    }

    /// True once an fsync failed: the log accepts no more writes.
    pub fn is_failed(&self) -> bool {
        self.failed()
    }

    fn set_file(&self, file: Arc<File>, path: PathBuf) {
        let mut st = self.lock();
        st.file = file;
        st.path = path;
    }

    fn mark_written(&self, written: u64) {
        self.lock().written = written;
    }

    fn mark_synced(&self, synced: u64) {
        let mut st = self.lock();
        st.synced = st.synced.max(synced);
    }

    fn failed(&self) -> bool {
        self.lock().failed
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}"))
}

/// Sorted segment numbers found in `dir`; other files are ignored.
fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .filter(|s| s.len() == 8)
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Copies a damaged segment to `<dir>/corrupt/`, durably.
fn copy_aside(dir: &Path, segment: &Path) -> Result<PathBuf, WalError> {
    let corrupt = dir.join("corrupt");
    fs::create_dir_all(&corrupt).map_err(io_err(&corrupt))?;
    let name = segment.file_name().unwrap_or_default();
    let mut to = corrupt.join(name);
    let mut n = 1;
    while to.exists() {
        to = corrupt.join(format!("{}.{n}", name.to_string_lossy()));
        n += 1;
    }
    fs::copy(segment, &to).map_err(io_err(segment))?;
    File::open(&to)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&to))?;
    sync_dir(&corrupt)?;
    sync_dir(dir)?;
    Ok(to)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`, replaying every intact
    /// record in order through `on_record` before returning. A corrupt tail is
    /// cut off so that new appends follow the last good record.
    pub fn open(
        dir: impl AsRef<Path>,
        opts: WalOptions,
        on_record: impl FnMut(&[u8]),
    ) -> Result<(Self, ReplayStats), WalError> {
        Self::open_reporting(dir, opts, on_record, |_| {})
    }

    /// [`Wal::open`], calling `on_progress` before the first segment and
    /// after each one (a long replay is visible while it runs).
    pub fn open_reporting(
        dir: impl AsRef<Path>,
        opts: WalOptions,
        mut on_record: impl FnMut(&[u8]),
        mut on_progress: impl FnMut(&ReplayProgress),
    ) -> Result<(Self, ReplayStats), WalError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let segments = list_segments(&dir)?;
        let mut stats = ReplayStats::default();
        let mut progress = ReplayProgress {
            segments: segments.len(),
            bytes_total: segments
                .iter()
                .filter_map(|&n| fs::metadata(segment_path(&dir, n)).ok())
                .map(|m| m.len())
                .sum(),
            ..ReplayProgress::default()
        };
        on_progress(&progress);
        let mut last_good: Option<(u64, u64)> = None;
        for (i, &seg) in segments.iter().enumerate() {
            let path = segment_path(&dir, seg);
            let (good_len, file_len) = replay_segment(&path, &mut stats, &mut on_record)?;
            stats.segments += 1;
            progress.segments_done = i + 1;
            progress.bytes_done = (progress.bytes_done + file_len).min(progress.bytes_total);
            progress.records = stats.records;
            on_progress(&progress);
            last_good = Some((seg, good_len));
            if good_len == file_len {
                continue;
            }
            stats.truncated_bytes += file_len - good_len;
            if i + 1 < segments.len() {
                // Damage in the middle of the log: keep a copy, and what follows.
                let aside = copy_aside(&dir, &path)?;
                tracing::error!(
                    segment = %path.display(),
                    copied_to = %aside.display(),
                    good_len,
                    file_len,
                    "WAL segment has a corrupt record: replayed the records before it, kept a copy of the segment, cut it back to them and went on with the later segments"
                );
                stats.corrupt_segments.push(aside);
            } else {
                tracing::warn!(
                    segment = %path.display(),
                    good_len,
                    file_len,
                    "newest WAL segment has a torn tail (a write a crash interrupted); truncating it"
                );
            }
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.set_len(good_len).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        let (segment, segment_len) = last_good.unwrap_or((1, 0));
        let path = segment_path(&dir, segment);
        let file = Arc::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?,
        );
        if segment_len == 0 {
            sync_dir(&dir)?;
        }
        let group = Arc::new(GroupSync {
            state: Mutex::new(GroupState {
                file: file.clone(),
                path,
                written: 0,
                synced: 0,
                failed: false,
            }),
            syncing: Mutex::new(()),
        });
        if let FsyncPolicy::Interval(every) = opts.fsync {
            spawn_interval_sync(Arc::downgrade(&group), every);
        }
        Ok((
            Self {
                dir,
                opts,
                segment,
                file,
                segment_len,
                last_sync: Instant::now(),
                dirty: false,
                buf: Vec::new(),
                bytes_written: 0,
                poisoned: false,
                group,
            },
            stats,
        ))
    }

    /// Appends one record and applies the fsync policy. When this returns Ok
    /// under [`FsyncPolicy::Always`], the record is on stable storage.
    pub fn append(&mut self, payload: &[u8]) -> Result<(), WalError> {
        self.append_batch(std::iter::once(payload))
    }

    /// Appends several records with one write and at most one fsync.
    pub fn append_batch<'a>(
        &mut self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), WalError> {
        let ticket = self.append_batch_deferred(payloads)?;
        if ticket.end > 0 {
            self.sync()?;
        }
        Ok(())
    }

    /// Appends several records with one write but leaves the fsync that the
    /// [`FsyncPolicy::Always`] policy asks for to [`GroupSync::wait_durable`],
    /// so it can run after the caller released its lock. The write is
    /// durable only once that returns Ok.
    pub fn append_batch_deferred<'a>(
        &mut self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<SyncTicket, WalError> {
        self.buf.clear();
        for p in payloads {
            if p.len() > MAX_RECORD_LEN {
                return Err(WalError::RecordTooLarge(p.len()));
            }
            self.buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(&crc32c::crc32c(p).to_le_bytes());
            self.buf.extend_from_slice(p);
        }
        if self.poisoned || self.group.failed() {
            return Err(WalError::Poisoned);
        }
        if self.segment_len > 0 && self.segment_len + self.buf.len() as u64 > self.opts.segment_size
        {
            self.rotate()?;
        }
        let path = segment_path(&self.dir, self.segment);
        if let Err(e) = (&*self.file).write_all(&self.buf) {
            // A partial record (full disk) must not stay in front of later
            // records: cut the segment back to its last complete record.
            if self.file.set_len(self.segment_len).is_err() {
                self.poisoned = true;
            }
            return Err(WalError::Io { path, source: e });
        }
        self.segment_len += self.buf.len() as u64;
        self.bytes_written += self.buf.len() as u64;
        self.dirty = true;
        self.group.mark_written(self.bytes_written);
        match self.opts.fsync {
            FsyncPolicy::Always => {
                return Ok(SyncTicket {
                    end: self.bytes_written,
                });
            }
            FsyncPolicy::Interval(d) if self.last_sync.elapsed() >= d => self.sync()?,
            _ => {}
        }
        Ok(SyncTicket { end: 0 })
    }

    /// The group-commit handle of this log, shared with writers that wait
    /// for durability outside the lock that guards the `Wal`.
    pub fn group_sync(&self) -> Arc<GroupSync> {
        self.group.clone()
    }

    /// Forces appended records to stable storage. A failure marks the log
    /// failed (see the module docs).
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.group.failed() {
            return Err(WalError::Poisoned);
        }
        if self.dirty {
            let path = segment_path(&self.dir, self.segment);
            if let Err(source) = self.file.sync_data() {
                self.group.lock().failed = true;
                return Err(WalError::Io { path, source });
            }
            self.dirty = false;
        }
        self.group.mark_synced(self.bytes_written);
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes the current segment and starts the next one; returns the new
    /// segment's number. Every record appended before this call lives in a
    /// segment with a smaller number.
    pub fn rotate(&mut self) -> Result<u64, WalError> {
        self.sync()?;
        let next = self.segment + 1;
        let path = segment_path(&self.dir, next);
        self.file = Arc::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?,
        );
        self.group.set_file(self.file.clone(), path);
        sync_dir(&self.dir)?;
        self.segment = next;
        self.segment_len = 0;
        Ok(next)
    }

    /// Deletes every segment numbered below `segment`.
    pub fn remove_before(&mut self, segment: u64) -> Result<usize, WalError> {
        let mut removed = 0;
        for n in list_segments(&self.dir)? {
            if n < segment && n != self.segment {
                let p = segment_path(&self.dir, n);
                fs::remove_file(&p).map_err(io_err(&p))?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Bytes appended since the WAL was opened.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Number of the segment currently appended to.
    pub fn current_segment(&self) -> u64 {
        self.segment
    }

    /// Total bytes of all segments on disk.
    pub fn disk_size(&self) -> u64 {
        list_segments(&self.dir)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| fs::metadata(segment_path(&self.dir, n)).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// The interval policy's own timer: fsyncs pending writes every `every`
/// until the log is dropped, so writes followed by silence are durable
/// within one interval. A failure is logged (and has marked the log failed).
fn spawn_interval_sync(group: std::sync::Weak<GroupSync>, every: Duration) {
    let every = every.max(Duration::from_millis(1));
    let spawned = std::thread::Builder::new()
        .name("wal-interval-fsync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(g) = group.upgrade() else { return };
                if g.is_failed() {
                    return;
                }
                if let Err(e) = g.sync_pending() {
                    tracing::error!(error = %e, "periodic WAL fsync failed; the WAL accepts no more writes until a restart");
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the WAL's interval fsync timer; writes are synced on append only");
    }
}

/// Reads records of one segment; returns (bytes of intact records, file length).
fn replay_segment(
    path: &Path,
    stats: &mut ReplayStats,
    on_record: &mut impl FnMut(&[u8]),
) -> Result<(u64, u64), WalError> {
    let file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut good = 0u64;
    let mut header = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    loop {
        if good == file_len {
            break;
        }
        if read_full(&mut r, &mut header).map_err(io_err(path))? < HEADER_LEN {
            break;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD_LEN || good + (HEADER_LEN + len) as u64 > file_len {
            break;
        }
        payload.resize(len, 0);
        if read_full(&mut r, &mut payload).map_err(io_err(path))? < len {
            break;
        }
        if crc32c::crc32c(&payload) != crc {
            break;
        }
        on_record(&payload);
        good += (HEADER_LEN + len) as u64;
        stats.records += 1;
        stats.bytes += (HEADER_LEN + len) as u64;
    }
    Ok((good, file_len))
}

/// Like `read_exact`, but returns how many bytes were read at EOF instead of failing.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(dir: &Path, opts: WalOptions) -> (Wal, Vec<Vec<u8>>, ReplayStats) {
        let mut got = Vec::new();
        let (wal, stats) = Wal::open(dir, opts, |r| got.push(r.to_vec())).unwrap();
        (wal, got, stats)
    }

    #[test]
    fn append_and_replay_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size: 64,
            fsync: FsyncPolicy::Always,
        };
        let (mut wal, got, _) = collect(dir.path(), opts.clone());
        assert!(got.is_empty());
        let records: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 10 + i as usize]).collect();
        for r in &records {
            wal.append(r).unwrap();
        }
        assert!(wal.current_segment() > 1, "small segment size must rotate");
        drop(wal);
        let (_, got, stats) = collect(dir.path(), opts);
        assert_eq!(got, records);
        assert_eq!(stats.truncated_bytes, 0);
    }

    #[test]
    fn replay_reports_progress_per_segment() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size: 64,
            fsync: FsyncPolicy::Always,
        };
        let (mut wal, _, _) = collect(dir.path(), opts.clone());
        for i in 0..20u8 {
            wal.append(&[i; 40]).unwrap();
        }
        drop(wal);
        let mut seen = Vec::new();
        Wal::open_reporting(dir.path(), opts, |_| {}, |p| seen.push(p.clone())).unwrap();
        assert!(seen.len() > 2, "{seen:?}");
        assert_eq!(seen[0].segments_done, 0);
        assert_eq!(seen[0].ratio(), 0.0);
        let last = seen.last().unwrap();
        assert_eq!(last.segments_done, last.segments);
        assert_eq!(last.records, 20);
        assert_eq!(last.ratio(), 1.0);
        assert!(seen.windows(2).all(|w| w[0].bytes_done <= w[1].bytes_done));
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = collect(dir.path(), WalOptions::default());
        wal.append(b"first").unwrap();
        wal.append(b"second").unwrap();
        drop(wal);
        // Simulate a crash mid-write: a header promising more bytes than exist.
        let seg = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&100u32.to_le_bytes()).unwrap();
        f.write_all(&[1, 2, 3, 4, 5, 6]).unwrap();
        drop(f);
        let (mut wal, got, stats) = collect(dir.path(), WalOptions::default());
        assert_eq!(got, vec![b"first".to_vec(), b"second".to_vec()]);
        assert_eq!(stats.truncated_bytes, 10);
        wal.append(b"third").unwrap();
        drop(wal);
        let (_, got, stats) = collect(dir.path(), WalOptions::default());
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], b"third");
        assert_eq!(stats.truncated_bytes, 0);
    }

    #[test]
    fn corrupt_older_segment_is_copied_aside_and_later_segments_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = collect(dir.path(), WalOptions::default());
        wal.append(b"good").unwrap();
        wal.append(b"flipped").unwrap();
        wal.append(b"lost with its segment's tail").unwrap();
        wal.rotate().unwrap();
        wal.append(b"later").unwrap();
        wal.rotate().unwrap();
        wal.append(b"latest").unwrap();
        drop(wal);
        // A bad block in the middle of segment 1: "flipped" fails its CRC.
        let seg = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&seg).unwrap();
        let at = HEADER_LEN + 4 + HEADER_LEN + 2;
        bytes[at] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();
        let (mut wal, got, stats) = collect(dir.path(), WalOptions::default());
        assert_eq!(
            got,
            vec![b"good".to_vec(), b"later".to_vec(), b"latest".to_vec()]
        );
        assert_eq!(
            stats.corrupt_segments,
            vec![dir.path().join("corrupt/00000001")]
        );
        assert_eq!(
            fs::read(dir.path().join("corrupt/00000001")).unwrap(),
            bytes
        );
        // Appends continue in the newest segment, and every kept record
        // replays again, the damaged segment's good prefix included.
        assert_eq!(wal.current_segment(), 3);
        wal.append(b"after").unwrap();
        drop(wal);
        let (_, got, stats) = collect(dir.path(), WalOptions::default());
        assert_eq!(
            got,
            vec![
                b"good".to_vec(),
                b"later".to_vec(),
                b"latest".to_vec(),
                b"after".to_vec()
            ]
        );
        assert!(stats.corrupt_segments.is_empty());
        assert_eq!(stats.truncated_bytes, 0);
    }

    #[test]
    fn interval_policy_syncs_on_its_own_timer() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size: 4096,
            fsync: FsyncPolicy::Interval(Duration::from_millis(20)),
        };
        let (mut wal, _, _) = collect(dir.path(), opts);
        let group = wal.group_sync();
        wal.append(b"x").unwrap();
        // No further append: the timer alone must make it durable.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = group.lock();
            if st.synced >= st.written && st.written > 0 {
                break;
            }
            drop(st);
            assert!(Instant::now() < deadline, "pending write never synced");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn failed_sync_marks_the_log_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = collect(dir.path(), WalOptions::default());
        wal.append(b"x").unwrap();
        // Simulate what a failed fsync leaves behind.
        wal.group_sync().lock().failed = true;
        assert!(matches!(wal.sync(), Err(WalError::Poisoned)));
        assert!(matches!(wal.append(b"y"), Err(WalError::Poisoned)));
    }

    #[test]
    fn remove_before_keeps_current_and_newer() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = collect(dir.path(), WalOptions::default());
        wal.append(b"a").unwrap();
        let s2 = wal.rotate().unwrap();
        wal.append(b"b").unwrap();
        assert_eq!(wal.remove_before(s2).unwrap(), 1);
        drop(wal);
        let (_, got, _) = collect(dir.path(), WalOptions::default());
        assert_eq!(got, vec![b"b".to_vec()]);
    }

    #[test]
    fn group_commit_writers_share_fsyncs_and_all_records_replay() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size: 4096,
            fsync: FsyncPolicy::Always,
        };
        let (wal, _, _) = collect(dir.path(), opts.clone());
        let group = wal.group_sync();
        let wal = Arc::new(Mutex::new(wal));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let wal = wal.clone();
                let group = group.clone();
                std::thread::spawn(move || {
                    for i in 0..50u8 {
                        let rec = vec![t, i, 7, 7];
                        let ticket = wal
                            .lock()
                            .unwrap()
                            .append_batch_deferred([rec.as_slice()])
                            .unwrap();
                        assert!(ticket.end > 0, "fsync=always must hand out a ticket");
                        group.wait_durable(ticket).unwrap();
                        let st = group.lock();
                        assert!(
                            st.synced >= ticket.end,
                            "returned before its bytes were synced"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(wal);
        let (_, got, stats) = collect(dir.path(), opts);
        assert_eq!(stats.truncated_bytes, 0);
        assert_eq!(got.len(), 200);
        for t in 0..4u8 {
            let mine: Vec<u8> = got.iter().filter(|r| r[0] == t).map(|r| r[1]).collect();
            assert_eq!(
                mine,
                (0..50u8).collect::<Vec<_>>(),
                "writer {t} records out of order"
            );
        }
    }

    #[test]
    fn interval_policy_hands_out_no_wait() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size: 4096,
            fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
        };
        let (mut wal, _, _) = collect(dir.path(), opts);
        let ticket = wal.append_batch_deferred([b"x".as_slice()]).unwrap();
        assert_eq!(ticket, SyncTicket { end: 0 });
    }
}
