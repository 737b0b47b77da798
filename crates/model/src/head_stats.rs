//! A tenant's head cardinality, as Prometheus's `/api/v1/status/tsdb`
//! reports it: series, label pairs, chunks, the time span, and the largest
//! metric names, label names and label pairs.

/// See the module documentation. Lists are `(name, count)`, largest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadStats {
    pub num_series: u64,
    pub num_label_pairs: u64,
    pub chunk_count: u64,
    /// Oldest and newest sample (ms); `i64::MAX` and `i64::MIN` when empty,
    /// as Prometheus reports an empty head.
    pub min_time: i64,
    pub max_time: i64,
    /// Series per metric name.
    pub series_by_metric: Vec<(String, u64)>,
    /// Distinct values per label name.
    pub values_by_label: Vec<(String, u64)>,
    /// Bytes of the values per label name.
    pub bytes_by_label: Vec<(String, u64)>,
    /// Series per `name=value` pair.
    pub series_by_pair: Vec<(String, u64)>,
}

impl Default for HeadStats {
    fn default() -> Self {
        HeadStats {
            num_series: 0,
            num_label_pairs: 0,
            chunk_count: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
            series_by_metric: Vec::new(),
            values_by_label: Vec::new(),
            bytes_by_label: Vec::new(),
            series_by_pair: Vec::new(),
        }
    }
}

/// Largest first, ties by name; at most `limit`.
fn top(list: &mut Vec<(String, u64)>, limit: usize) {
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list.truncate(limit);
}

impl HeadStats {
    /// Keeps the `limit` largest entries of each list.
    pub fn truncate(&mut self, limit: usize) {
        top(&mut self.series_by_metric, limit);
        top(&mut self.values_by_label, limit);
        top(&mut self.bytes_by_label, limit);
        top(&mut self.series_by_pair, limit);
    }

    /// The stats of a tenant whose series are spread over several
    /// ingesters, each series on `replicas` of them: series counts and
    /// bytes summed and divided by `replicas` (Mimir's estimate; exact when
    /// every replica answered), distinct value counts the largest any
    /// ingester has (a lower bound), times the widest span.
    pub fn merge(parts: Vec<HeadStats>, replicas: u64, limit: usize) -> HeadStats {
        use std::collections::HashMap;
        let replicas = replicas.max(1);
        let mut out = HeadStats::default();
        let mut by_metric: HashMap<String, u64> = HashMap::new();
        let mut values: HashMap<String, u64> = HashMap::new();
        let mut bytes: HashMap<String, u64> = HashMap::new();
        let mut pairs: HashMap<String, u64> = HashMap::new();
        for p in parts {
            out.num_series += p.num_series;
            out.num_label_pairs = out.num_label_pairs.max(p.num_label_pairs);
            out.chunk_count += p.chunk_count;
            out.min_time = out.min_time.min(p.min_time);
            out.max_time = out.max_time.max(p.max_time);
            for (k, v) in p.series_by_metric {
                *by_metric.entry(k).or_default() += v;
            }
            for (k, v) in p.values_by_label {
                let e = values.entry(k).or_default();
                *e = (*e).max(v);
            }
            for (k, v) in p.bytes_by_label {
                *bytes.entry(k).or_default() += v;
            }
            for (k, v) in p.series_by_pair {
                *pairs.entry(k).or_default() += v;
            }
        }
        let divide = |m: HashMap<String, u64>| -> Vec<(String, u64)> {
            m.into_iter()
                .map(|(k, v)| (k, v.div_ceil(replicas)))
                .collect()
        };
        out.num_series = out.num_series.div_ceil(replicas);
        out.chunk_count = out.chunk_count.div_ceil(replicas);
        out.series_by_metric = divide(by_metric);
        out.values_by_label = values.into_iter().collect();
        out.bytes_by_label = divide(bytes);
        out.series_by_pair = divide(pairs);
        out.truncate(limit);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(
        series: u64,
        metric: &[(&str, u64)],
        values: &[(&str, u64)],
        t: (i64, i64),
    ) -> HeadStats {
        HeadStats {
            num_series: series,
            num_label_pairs: 4,
            chunk_count: series,
            min_time: t.0,
            max_time: t.1,
            series_by_metric: metric.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            values_by_label: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            bytes_by_label: vec![],
            series_by_pair: vec![],
        }
    }

    #[test]
    fn replicas_are_counted_once_and_lists_keep_the_largest() {
        // Three ingesters, RF 3: each holds every series.
        let parts = vec![
            stats(6, &[("up", 4), ("a", 2)], &[("job", 3)], (10, 50)),
            stats(6, &[("up", 4), ("a", 2)], &[("job", 3)], (5, 40)),
            stats(6, &[("up", 4), ("a", 2)], &[("job", 2)], (20, 60)),
        ];
        let m = HeadStats::merge(parts, 3, 1);
        assert_eq!(m.num_series, 6);
        assert_eq!(m.chunk_count, 6);
        assert_eq!((m.min_time, m.max_time), (5, 60));
        assert_eq!(m.series_by_metric, vec![("up".to_string(), 4)], "top 1");
        assert_eq!(m.values_by_label, vec![("job".to_string(), 3)]);
        let empty = HeadStats::merge(vec![], 3, 10);
        assert_eq!((empty.min_time, empty.max_time), (i64::MAX, i64::MIN));
    }

    #[test]
    fn ties_are_ordered_by_name() {
        let mut s = stats(0, &[("b", 1), ("a", 1), ("c", 2)], &[], (0, 0));
        s.truncate(2);
        assert_eq!(
            s.series_by_metric,
            vec![("c".to_string(), 2), ("a".to_string(), 1)]
        );
    }
}
