//! Log data shared by the write and read paths: entries, streams, and the
//! line filters that both the head and Parquet scans apply.

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
    let mut out: Vec<LogEntry> = Vec::with_capacity(entries.len());
    let mut run_start = 0;
    for e in entries.drain(..) {
        if out.last().is_none_or(|l| l.ts != e.ts) {
            run_start = out.len();
        }
        if !out[run_start..].iter().any(|x| x.line == e.line) {
            out.push(e);
        }
    }
    *entries = out;
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
