//! Log patterns as Loki's `/loki/api/v1/patterns` answers them: each
//! stream's lines clustered by Drain (one drain per stream and detected
//! level, Loki 3.6), occurrences counted per step, the same pattern text
//! summed across streams, patterns seen fewer than 30 times dropped and the
//! 300 most frequent kept.
//!
//! Loki trains drains at ingestion in a pattern ingester that keeps three
//! hours; Strata trains them when asked, over the lines of the requested
//! range (bounded by the caller), so patterns exist for any range the logs
//! are kept for.

pub mod drain;
pub mod tokenize;

use std::collections::{BTreeMap, HashMap};

pub use drain::{Drain, DrainConfig};

/// Patterns seen fewer times in the range are left out (Loki's `minClusterSize`).
pub const MIN_OCCURRENCES: u64 = 30;
/// Most patterns answered (Loki's `maxPatterns`).
pub const MAX_PATTERNS: usize = 300;
/// The levels a pattern can be found under; anything else is `unknown`.
const LEVELS: [&str; 8] = [
    "unknown", "debug", "info", "warn", "error", "fatal", "critical", "trace",
];

/// The level of an entry from its `detected_level` structured metadata.
pub fn level_of(detected: Option<&str>) -> &'static str {
    let Some(d) = detected else {
        return LEVELS[0];
    };
    LEVELS
        .iter()
        .find(|l| l.eq_ignore_ascii_case(d))
        .copied()
        .unwrap_or(LEVELS[0])
}

/// One pattern of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternSeries {
    pub pattern: String,
    pub level: &'static str,
    /// (Unix seconds, occurrences in that step).
    pub samples: Vec<(i64, u64)>,
}

/// Drains of the streams of one request.
#[derive(Default)]
pub struct PatternSet {
    drains: HashMap<(usize, &'static str), Drain>,
}

impl PatternSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Trains stream `stream`'s drain of `level` on one line (lines of a
    /// stream in time order).
    pub fn add(&mut self, stream: usize, level: &'static str, ts_ms: i64, line: &str) {
        self.drains
            .entry((stream, level))
            .or_insert_with(|| Drain::new(DrainConfig::default()))
            .train(line, ts_ms);
    }

    /// The patterns over `[from_ms, through_ms)` counted per `step_ms`
    /// (at least 10 s), most frequent first.
    pub fn series(&self, from_ms: i64, through_ms: i64, step_ms: i64) -> Vec<PatternSeries> {
        let mut merged: HashMap<(String, &'static str), BTreeMap<i64, u64>> = HashMap::new();
        for ((_, level), drain) in &self.drains {
            for (pattern, cluster) in drain.patterns() {
                let samples = cluster.samples(from_ms, through_ms, step_ms);
                if samples.is_empty() {
                    continue;
                }
                let series = merged.entry((pattern, level)).or_default();
                for (t, n) in samples {
                    *series.entry(t).or_default() += n;
                }
            }
        }
        let mut out: Vec<(u64, PatternSeries)> = merged
            .into_iter()
            .map(|((pattern, level), samples)| {
                let total = samples.values().sum();
                (
                    total,
                    PatternSeries {
                        pattern,
                        level,
                        samples: samples
                            .into_iter()
                            .map(|(t, n)| (t.div_euclid(1000), n))
                            .collect(),
                    },
                )
            })
            .filter(|(total, _)| *total >= MIN_OCCURRENCES)
            .collect();
        out.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.pattern.cmp(&b.1.pattern))
                .then_with(|| a.1.level.cmp(b.1.level))
        });
        out.truncate(MAX_PATTERNS);
        out.into_iter().map(|(_, s)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_merge_across_streams_and_rare_ones_are_dropped() {
        let mut set = PatternSet::new();
        for i in 0..40 {
            let t = 1_700_000_000_000 + i * 1_000;
            set.add(
                i as usize % 2,
                "info",
                t,
                &format!("request {i} served in {}ms", i * 3),
            );
            if i < 10 {
                set.add(0, "error", t, &format!("disk {i} failed with code {i}"));
            }
        }
        let s = set.series(1_700_000_000_000, 1_700_000_100_000, 10_000);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].pattern, "request <_> served in <_>");
        assert_eq!(s[0].level, "info");
        assert_eq!(s[0].samples.iter().map(|(_, n)| n).sum::<u64>(), 40);
        assert_eq!(s[0].samples[0], (1_700_000_000, 10));
    }

    #[test]
    fn levels_are_loki_names_or_unknown() {
        assert_eq!(level_of(Some("ERROR")), "error");
        assert_eq!(level_of(Some("warning")), "unknown");
        assert_eq!(level_of(None), "unknown");
    }
}
