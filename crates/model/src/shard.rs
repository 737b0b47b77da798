//! Query shards: a query-frontend runs an aggregation as N queries, each
//! over the series whose label hash falls in one shard, and merges their
//! answers. The shard travels as a label matcher, `__query_shard__="2_of_16"`
//! (Mimir's name and format), so it reaches ingesters and store-gateways
//! over the wire every matcher already takes, and a user may write it by
//! hand. Every place that tests matchers against a series honours it
//! through [`crate::matcher_matches`].

use crate::{MatchOp, Matcher};

/// The label name of the shard matcher.
pub const QUERY_SHARD_LABEL: &str = "__query_shard__";

/// Most shards a query may be cut into: more would only multiply the
/// queries (Mimir bounds it the same way).
pub const MAX_SHARDS: u32 = 128;

/// Longest query a query-frontend shards: its shard queries travel in
/// URLs, one per shard.
pub const MAX_SHARDED_QUERY_BYTES: usize = 8 << 10;

/// One shard of `total`: the series whose [`Labels::hash64`] modulo
/// `total` is `index` (0-based; written 1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryShard {
    pub index: u32,
    pub total: u32,
}

impl QueryShard {
    /// Shard `index` (0-based) of `total`, when that is a shard.
    pub fn new(index: u32, total: u32) -> Option<Self> {
        ((1..=MAX_SHARDS).contains(&total) && index < total).then_some(Self { index, total })
    }

    /// Parses `"<i>_of_<n>"` (1 <= i <= n).
    pub fn parse(value: &str) -> Option<Self> {
        let (i, n) = value.split_once("_of_")?;
        let i: u32 = i.parse().ok()?;
        let n: u32 = n.parse().ok()?;
        Self::new(i.checked_sub(1)?, n)
    }

    /// The shard a matcher selects: an equality matcher on
    /// [`QUERY_SHARD_LABEL`] with a valid value. Any other matcher on that
    /// label is an ordinary matcher (on a label no series has).
    pub fn of_matcher(m: &Matcher) -> Option<Self> {
        if m.name != QUERY_SHARD_LABEL || m.op != MatchOp::Equal {
            return None;
        }
        Self::parse(&m.value)
    }

    /// The matcher that selects this shard.
    pub fn matcher(&self) -> Matcher {
        Matcher::new(MatchOp::Equal, QUERY_SHARD_LABEL, &self.label_value())
    }

    /// `"<i>_of_<n>"`, 1-based.
    pub fn label_value(&self) -> String {
        format!("{}_of_{}", self.index + 1, self.total)
    }

    /// Whether the series with these labels is in this shard.
    pub fn contains<L: crate::LabelSet + ?Sized>(&self, labels: &L) -> bool {
        labels.label_hash() % u64::from(self.total) == u64::from(self.index)
    }
}

/// What one shard query of a sharded aggregation computes: the
/// aggregation itself, or one half of an `avg` (run as a sum and a count
/// per shard, divided once merged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    Whole,
    AvgSum,
    AvgCount,
}

/// Whether `m` is a shard matcher (see [`QueryShard::of_matcher`]).
pub fn is_shard_matcher(m: &Matcher) -> bool {
    QueryShard::of_matcher(m).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_one_based_and_bounded() {
        assert_eq!(QueryShard::parse("1_of_4"), QueryShard::new(0, 4));
        assert_eq!(QueryShard::parse("4_of_4"), QueryShard::new(3, 4));
        for bad in [
            "0_of_4", "5_of_4", "1_of_0", "1_of_129", "x_of_2", "1of2", "", "-1_of_2",
        ] {
            assert_eq!(QueryShard::parse(bad), None, "{bad}");
        }
        let s = QueryShard::new(2, 16).unwrap();
        assert_eq!(QueryShard::parse(&s.label_value()), Some(s));
        assert!(is_shard_matcher(&s.matcher()));
        let not_equal = Matcher::new(MatchOp::NotEqual, QUERY_SHARD_LABEL, "1_of_2");
        assert!(!is_shard_matcher(&not_equal));
    }

    #[test]
    fn every_series_is_in_exactly_one_shard() {
        let n = 7;
        let mut counts = vec![0; n as usize];
        for i in 0..700 {
            let l = crate::Labels::from_pairs([("__name__", "up"), ("instance", &format!("h{i}"))]);
            let owners: Vec<u32> = (0..n)
                .filter(|&k| QueryShard::new(k, n).unwrap().contains(&l))
                .collect();
            assert_eq!(owners.len(), 1);
            counts[owners[0] as usize] += 1;
            // The matcher form selects the same series.
            let m = QueryShard::new(owners[0], n).unwrap().matcher();
            assert!(crate::matches_all(&[m], &l));
        }
        // Hashes spread: no shard is empty or holds most series.
        assert!(counts.iter().all(|&c| c > 50 && c < 200), "{counts:?}");
    }
}
