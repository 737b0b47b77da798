//! Log data shared by the write and read paths: entries, streams, and the
//! line filters that both the head and Parquet scans apply.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use regex::Regex;

use crate::Labels;

/// One log line of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Nanoseconds since the Unix epoch.
    pub ts: i64,
    pub line: String,
    /// Structured metadata attached to this entry (not part of the stream's labels).
    pub metadata: Labels,
}

impl LogEntry {
    /// Bytes of structured metadata: names plus values, as Loki counts them.
    pub fn metadata_size(&self) -> usize {
        self.metadata
            .iter()
            .map(|l| l.name.len() + l.value.len())
            .sum()
    }

    /// The line plus its structured metadata, what rate limits count.
    pub fn total_size(&self) -> usize {
        self.line.len() + self.metadata_size()
    }
}

/// A stream's entries in a query's time range, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct LogStream {
    pub labels: Labels,
    pub entries: Vec<LogEntry>,
}

/// Which end of the time range a limited log query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Oldest entries first.
    Forward,
    /// Newest entries first (Loki's default).
    #[default]
    Backward,
}

/// A LogQL line filter, evaluated on the raw line before any parser.
#[derive(Debug, Clone)]
pub enum LineFilter {
    /// `|= "text"`
    Contains(String),
    /// `!= "text"`
    NotContains(String),
    /// `|~ "re"` (unanchored, RE2 syntax)
    Regex(Regex),
    /// `!~ "re"`
    NotRegex(Regex),
    /// `|= "a" or "b"`: any alternative matches.
    Any(Vec<LineFilter>),
}

impl LineFilter {
    /// Whether `line` passes the filter.
    pub fn matches(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(s) => line.contains(s.as_str()),
            LineFilter::NotContains(s) => !line.contains(s.as_str()),
            LineFilter::Regex(re) => re.is_match(line),
            LineFilter::NotRegex(re) => !re.is_match(line),
            LineFilter::Any(alts) => alts.iter().any(|f| f.matches(line)),
        }
    }
}

/// Whether `line` passes every filter of a chain.
pub fn line_matches(filters: &[LineFilter], line: &str) -> bool {
    filters.iter().all(|f| f.matches(line))
}

/// Sorts by time and removes entries repeated with the same time and line
/// (the same entry read from the head and from a block).
pub fn dedup_entries(entries: &mut Vec<LogEntry>) {
    entries.sort_by_key(|e| e.ts);
    let mut dups = Duplicates::new();
    let mut out: Vec<LogEntry> = Vec::with_capacity(entries.len());
    for e in entries.drain(..) {
        if !dups.check(&[], &out, &e) {
            out.push(e);
        }
    }
    *entries = out;
}

/// Where a line seen at the current timestamp is.
#[derive(Clone, Copy)]
enum Seen {
    /// An index into the stream's stored entries.
    Stored(usize),
    /// An index into the entries accepted so far from this batch.
    Accepted(usize),
}

/// Recognizes entries whose (time, line) is already stored or already
/// accepted, for a batch read in time order, in time linear in the entries
/// sharing a timestamp: their lines are hashed (with a per-process random
/// key, so no input can force collisions) once a second one shows up.
pub struct Duplicates {
    hasher: RandomState,
    /// The timestamp whose lines are in `lines`.
    ts: Option<i64>,
    /// `stored[run]`: the stored entries at `ts`.
    run: (usize, usize),
    /// Entries accepted at `ts`: the tail of the caller's accepted list.
    accepted_here: usize,
    /// Lines at `ts` by hash; built only once a second line at `ts` shows up.
    lines: HashMap<u64, Vec<Seen>>,
    indexed: bool,
}

impl Default for Duplicates {
    fn default() -> Self {
        Self::new()
    }
}

impl Duplicates {
    /// A finder with nothing seen yet.
    pub fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            ts: None,
            run: (0, 0),
            accepted_here: 0,
            lines: HashMap::new(),
            indexed: false,
        }
    }

    /// True when `e` is a duplicate of a stored entry or of one of
    /// `accepted` (entries of this batch taken so far, in time order; `e`
    /// is no earlier than the last of them). Otherwise `e` is noted as the
    /// next accepted entry: the caller must append it to `accepted`.
    pub fn check(&mut self, stored: &[LogEntry], accepted: &[LogEntry], e: &LogEntry) -> bool {
        if self.ts != Some(e.ts) {
            self.ts = Some(e.ts);
            let lo = stored.partition_point(|x| x.ts < e.ts);
            let hi = lo + stored[lo..].iter().take_while(|x| x.ts == e.ts).count();
            self.run = (lo, hi);
            // Entries come in time order: none accepted yet at this time.
            self.accepted_here = 0;
            self.lines.clear();
            self.indexed = false;
        }
        if self.run.0 == self.run.1 && self.accepted_here == 0 {
            // The first line at this time: nothing to compare with.
            self.accepted_here = 1;
            return false;
        }
        if !self.indexed {
            let (lo, hi) = self.run;
            for (i, x) in stored.iter().enumerate().take(hi).skip(lo) {
                let h = self.hasher.hash_one(&x.line);
                self.lines.entry(h).or_default().push(Seen::Stored(i));
            }
            let first = accepted.len() - self.accepted_here;
            for (i, x) in accepted.iter().enumerate().skip(first) {
                let h = self.hasher.hash_one(&x.line);
                self.lines.entry(h).or_default().push(Seen::Accepted(i));
            }
            self.indexed = true;
        }
        let h = self.hasher.hash_one(&e.line);
        let same = self.lines.entry(h).or_default();
        let dup = same.iter().any(|s| match *s {
            Seen::Stored(i) => stored[i].line == e.line,
            Seen::Accepted(i) => accepted[i].line == e.line,
        });
        if !dup {
            same.push(Seen::Accepted(accepted.len()));
            self.accepted_here += 1;
        }
        dup
    }
}

/// What index statistics and volumes need of an entry: its time, a hash
/// of its line (so that replicas, same time and line, count once while
/// distinct lines at one time do not merge) and the line's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntrySize {
    pub ts: i64,
    pub line_hash: u64,
    pub bytes: u64,
}

impl EntrySize {
    /// The size record of a line at `ts`.
    pub fn of(ts: i64, line: &str) -> Self {
        Self {
            ts,
            line_hash: twox_hash::XxHash3_64::oneshot(line.as_bytes()),
            bytes: line.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_distinct_lines_at_one_time() {
        let e = |ts: i64, l: &str| LogEntry {
            ts,
            line: l.into(),
            metadata: Labels::default(),
        };
        let mut v = vec![e(2, "b"), e(1, "a"), e(2, "c"), e(2, "b"), e(1, "a")];
        dedup_entries(&mut v);
        assert_eq!(v, vec![e(1, "a"), e(2, "b"), e(2, "c")]);
    }

    #[test]
    fn line_filters() {
        let chain = vec![
            LineFilter::Any(vec![
                LineFilter::Contains("error".into()),
                LineFilter::Regex(Regex::new("(?i)warn").unwrap()),
            ]),
            LineFilter::NotContains("health".into()),
            LineFilter::NotRegex(Regex::new("^DEBUG").unwrap()),
        ];
        assert!(line_matches(&chain, "an error occurred"));
        assert!(line_matches(&chain, "WARNING: disk"));
        assert!(!line_matches(&chain, "error in healthcheck"));
        assert!(!line_matches(&chain, "DEBUG error"));
        assert!(!line_matches(&chain, "all fine"));
    }
}
