//! Raft's persistent state on local disk: the vote, the log and the latest
//! snapshot of the ring, under one directory. The ring is small (a few
//! hundred instances at most) and changes a few times a second (heartbeats),
//! so the log is one append-only file of checksummed JSON records, rewritten
//! whole only on the rare truncate and purge; the state machine lives in
//! memory and is rebuilt from the snapshot plus the committed log on start.

// openraft fixes the error type of its storage traits; its size is theirs.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Cursor, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{NodeId, TypeConfig};
use crate::desc::{RingDesc, RingResponse};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// One record of the log file: either an entry or the purge point.
#[derive(Serialize, Deserialize)]
enum LogRecord {
    Entry(Entry<TypeConfig>),
    Purged(LogId<NodeId>),
}

fn encode_record(rec: &LogRecord, out: &mut Vec<u8>) -> std::io::Result<()> {
    let body = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Decodes records until the end or the first torn or corrupt one (a crash
/// mid-append leaves at most the unacknowledged tail damaged).
fn decode_records(bytes: &[u8]) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let crc = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]);
        let Some(body) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        match serde_json::from_slice(body) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
        pos += 8 + len;
    }
    out
}

struct LogInner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

impl LogInner {
    fn log_path(dir: &Path) -> PathBuf {
        dir.join("raft-log")
    }

    /// Rewrites the log file from memory (after truncate or purge).
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut buf = Vec::new();
        if let Some(p) = self.last_purged {
            encode_record(&LogRecord::Purged(p), &mut buf)?;
        }
        for e in self.entries.values() {
            encode_record(&LogRecord::Entry(e.clone()), &mut buf)?;
        }
        let path = Self::log_path(&self.dir);
        write_atomic(&path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        Ok(())
    }
}

/// The Raft log and vote, persisted under one directory.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = LogInner::log_path(dir);
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)?.read_to_end(&mut bytes)?;
        }
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        for rec in decode_records(&bytes) {
            match rec {
                LogRecord::Entry(e) => {
                    // A later record for an index replaces earlier ones
                    // (appends after a truncate that was not rewritten).
                    entries.split_off(&e.log_id.index);
                    entries.insert(e.log_id.index, e);
                }
                LogRecord::Purged(id) => last_purged = Some(id),
            }
        }
        let read_json = |name: &str| -> std::io::Result<Option<Vec<u8>>> {
            match std::fs::read(dir.join(name)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        };
        let vote = match read_json("raft-vote")? {
            Some(b) => Some(serde_json::from_slice(&b).map_err(std::io::Error::other)?),
            None => None,
        };
        let committed = match read_json("raft-committed")? {
            Some(b) => serde_json::from_slice(&b).map_err(std::io::Error::other)?,
            None => None,
        };
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut inner = LogInner {
            dir: dir.to_path_buf(),
            file,
            entries,
            last_purged,
            vote,
            committed,
        };
        // Drop a torn tail so later appends follow valid records.
        inner.rewrite()?;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let inner = self.inner.lock();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = self.inner.lock();
        let last = inner.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let mut inner = self.inner.lock();
        let bytes = serde_json::to_vec(vote)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        write_atomic(&inner.dir.join("raft-vote"), &bytes)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        let mut inner = self.inner.lock();
        let bytes = serde_json::to_vec(&committed)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        write_atomic(&inner.dir.join("raft-committed"), &bytes)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.inner.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock();
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for e in entries {
            encode_record(&LogRecord::Entry(e.clone()), &mut buf)
                .map_err(|err| io_err(ErrorSubject::Logs, ErrorVerb::Write, err))?;
            added.push(e);
        }
        let result = inner
            .file
            .write_all(&buf)
            .and_then(|_| inner.file.sync_data());
        if result.is_ok() {
            for e in added {
                inner.entries.insert(e.log_id.index, e);
            }
        }
        let reported = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(reported);
        result.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut inner = self.inner.lock();
        inner.entries.split_off(&log_id.index);
        inner
            .rewrite()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut inner = self.inner.lock();
        let keep = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = keep;
        inner.last_purged = Some(log_id);
        inner
            .rewrite()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

/// What a snapshot holds: the applied position, membership and the ring.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MachineState {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
    ring: RingDesc,
}

struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The ring state machine: applies commands and publishes every new ring
/// to watchers; snapshots go to disk.
#[derive(Clone)]
pub struct RingStateMachine {
    state: Arc<Mutex<MachineState>>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    dir: PathBuf,
    publish: watch::Sender<Arc<RingDesc>>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

impl RingStateMachine {
    /// Restores the last snapshot in `dir`, publishing rings on `publish`.
    pub fn open(dir: &Path, publish: watch::Sender<Arc<RingDesc>>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut state = MachineState::default();
        let mut snapshot = None;
        match std::fs::read(dir.join("raft-snapshot")) {
            Ok(bytes) => {
                let file: SnapshotFile =
                    serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
                state = serde_json::from_slice(&file.data).map_err(std::io::Error::other)?;
                snapshot = Some(StoredSnapshot {
                    meta: file.meta,
                    data: file.data,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        publish.send_replace(Arc::new(state.ring.clone()));
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
            snapshot: Arc::new(Mutex::new(snapshot)),
            dir: dir.to_path_buf(),
            publish,
        })
    }

    fn save_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        data: &[u8],
    ) -> StorageResult<()> {
        let file = SnapshotFile {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        write_atomic(&self.dir.join("raft-snapshot"), &bytes).map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        *self.snapshot.lock() = Some(StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        });
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for RingStateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (data, last_applied, membership) = {
            let state = self.state.lock();
            let data = serde_json::to_vec(&*state)
                .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
            (data, state.last_applied, state.membership.clone())
        };
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, ulid::Ulid::new()),
            None => format!("empty-{}", ulid::Ulid::new()),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        self.save_snapshot(&meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for RingStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(
        Option<LogId<NodeId>>,
        StoredMembership<NodeId, openraft::BasicNode>,
    )> {
        let state = self.state.lock();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<RingResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut state = self.state.lock();
        let mut changed = false;
        for e in entries {
            state.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(RingResponse::default()),
                EntryPayload::Normal(cmd) => {
                    out.push(state.ring.apply(&cmd));
                    changed = true;
                }
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(RingResponse::default());
                }
            }
        }
        if changed {
            self.publish.send_replace(Arc::new(state.ring.clone()));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let new: MachineState = serde_json::from_slice(&data).map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        self.save_snapshot(meta, &data)?;
        let ring = Arc::new(new.ring.clone());
        *self.state.lock() = new;
        self.publish.send_replace(ring);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        Ok(self.snapshot.lock().as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
