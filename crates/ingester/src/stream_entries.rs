//! A log stream's entries in the head: time-ordered, entries with equal
//! timestamps in arrival order, and never the same (time, line) twice (a
//! retried push, or the replicas of one, is stored once).
//!
//! Finding duplicates must not cost quadratic time: one push of many
//! distinct lines at a single timestamp is legitimate (a batch stamped by
//! one clock tick) and is checked under the log WAL's lock, which every
//! tenant's pushes share. [`Duplicates`] hashes the lines at a timestamp,
//! and a batch goes into the stream by one merge rather than one shifting
//! insert per entry.

use strata_model::logs::{Duplicates, LogEntry};

/// Adds `entries` to the time-ordered `stored`, leaving out duplicates (of
/// stored entries and among themselves). Returns how many were added.
pub(crate) fn add(stored: &mut Vec<LogEntry>, mut entries: Vec<LogEntry>) -> usize {
    entries.sort_by_key(|e| e.ts);
    let mut dups = Duplicates::new();
    let mut fresh = Vec::with_capacity(entries.len());
    for e in entries {
        if !dups.check(stored, &fresh, &e) {
            fresh.push(e);
        }
    }
    let n = fresh.len();
    merge(stored, fresh);
    n
}

/// Merges time-ordered `fresh` (no duplicates of `stored`) into `stored`:
/// appended when it starts after the last stored entry, else one merge of
/// the overlapping tail, stored entries first at equal times.
pub(crate) fn merge(stored: &mut Vec<LogEntry>, fresh: Vec<LogEntry>) {
    let Some(first) = fresh.first() else { return };
    let at = stored.partition_point(|x| x.ts <= first.ts);
    if at == stored.len() {
        stored.extend(fresh);
        return;
    }
    let tail = stored.split_off(at);
    stored.reserve(tail.len() + fresh.len());
    let mut tail = tail.into_iter().peekable();
    let mut fresh = fresh.into_iter().peekable();
    loop {
        let take_tail = match (tail.peek(), fresh.peek()) {
            (Some(t), Some(f)) => t.ts <= f.ts,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_tail { tail.next() } else { fresh.next() };
        stored.extend(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_model::Labels;

    fn e(ts: i64, line: &str) -> LogEntry {
        LogEntry {
            ts,
            line: line.into(),
            metadata: Labels::default(),
        }
    }

    fn lines(v: &[LogEntry]) -> Vec<(i64, &str)> {
        v.iter().map(|x| (x.ts, x.line.as_str())).collect()
    }

    #[test]
    fn duplicates_are_dropped_and_order_kept() {
        let mut stored = vec![e(1, "a"), e(2, "b"), e(2, "c"), e(5, "d")];
        let added = add(
            &mut stored,
            vec![
                e(2, "c"),
                e(2, "x"),
                e(0, "z"),
                e(2, "x"),
                e(5, "d"),
                e(6, "y"),
                e(3, "m"),
            ],
        );
        assert_eq!(added, 4);
        assert_eq!(
            lines(&stored),
            vec![
                (0, "z"),
                (1, "a"),
                (2, "b"),
                (2, "c"),
                (2, "x"),
                (3, "m"),
                (5, "d"),
                (6, "y")
            ]
        );
        // Appending after the last entry keeps everything in place.
        assert_eq!(add(&mut stored, vec![e(7, "q"), e(7, "q")]), 1);
        assert_eq!(stored.last().map(|x| x.line.as_str()), Some("q"));
    }

    #[test]
    fn many_lines_at_one_time_are_linear() {
        // 200,000 distinct lines at one timestamp, pushed twice: checked
        // pairwise that is 4e10 comparisons (hours), by hash well under a
        // second; the stored result must still be exact.
        let batch: Vec<LogEntry> = (0..200_000).map(|i| e(42, &format!("line {i}"))).collect();
        let mut stored = Vec::new();
        assert_eq!(add(&mut stored, batch.clone()), 200_000);
        assert_eq!(add(&mut stored, batch), 0);
        assert_eq!(stored.len(), 200_000);
        assert_eq!(stored[7].line, "line 7");
    }
}
