//! Classic histograms: `_bucket` series with an `le` label, grouped per
//! histogram, and the quantile and fraction estimates Prometheus computes
//! from them (linear interpolation inside a bucket).

use std::collections::HashMap;

use strata_model::Labels;

use crate::eval::Series;

/// The bucket label.
pub(crate) const BUCKET_LABEL: &str = "le";

/// One histogram: the labels its result carries (without `le`) and, per
/// bucket, its upper bound and the bucket series' values at each step.
pub(crate) struct BucketGroup {
    pub labels: Labels,
    pub buckets: Vec<(f64, Vec<Option<f64>>)>,
}

/// Groups bucket series by their labels without `le`. Series whose `le` is
/// missing or not a number are returned apart (Prometheus warns and ignores them).
pub(crate) fn group_buckets(input: Vec<Series>) -> (Vec<BucketGroup>, Vec<Labels>) {
    let mut groups: Vec<BucketGroup> = Vec::new();
    let mut malformed = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in input {
        let Some(upper) = s.labels.get(BUCKET_LABEL).and_then(parse_bound) else {
            malformed.push(s.labels);
            continue;
        };
        let mut key = s.labels.clone();
        key.set(BUCKET_LABEL, "");
        let g = *index.entry(key.clone()).or_insert_with(|| {
            groups.push(BucketGroup {
                labels: key,
                buckets: Vec::new(),
            });
            groups.len() - 1
        });
        groups[g].buckets.push((upper, s.vals));
    }
    (groups, malformed)
}

/// Parses an `le` value as Go's `strconv.ParseFloat` would for bucket bounds.
fn parse_bound(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// A bucket at one step: (upper bound, cumulative count).
pub(crate) type Bucket = (f64, f64);

/// Sorts by upper bound and merges buckets with equal bounds (`le="1"` and
/// `le="1.0"`); None unless the highest bucket is `+Inf`.
fn prepare(buckets: &mut Vec<Bucket>) -> Option<()> {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last()?.0 != f64::INFINITY {
        return None;
    }
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => out.push((ub, c)),
        }
    }
    *buckets = out;
    Some(())
}

/// Makes counts non-decreasing: differences within `tolerance` (float
/// rounding) are evened out silently; real decreases are raised to the
/// running maximum and reported (Prometheus adds an info annotation).
fn ensure_monotonic(buckets: &mut [Bucket], tolerance: f64) -> bool {
    let mut forced = false;
    let Some(&(_, first)) = buckets.first() else {
        return false;
    };
    let mut prev = first;
    for b in buckets.iter_mut().skip(1) {
        let cur = b.1;
        if cur == prev {
            continue;
        }
        if almost_equal(prev, cur, tolerance) {
            b.1 = prev;
            continue;
        }
        if cur < prev {
            b.1 = prev;
            forced = true;
            continue;
        }
        prev = cur;
    }
    forced
}

fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// The q-quantile of cumulative buckets, and whether monotonicity had to be
/// forced. The lowest bucket interpolates from 0 when its bound is positive;
/// a quantile in the `+Inf` bucket is the second highest bound.
pub(crate) fn bucket_quantile(q: f64, mut buckets: Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    if prepare(&mut buckets).is_none() {
        return (f64::NAN, false);
    }
    let forced = ensure_monotonic(&mut buckets, 1e-12);
    if buckets.len() < 2 {
        return (f64::NAN, false);
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, false);
    }
    let mut rank = q * observations;
    let n = buckets.len();
    let b = buckets[..n - 1].partition_point(|x| x.1 < rank);
    if b == n - 1 {
        return (buckets[n - 2].0, forced);
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return (buckets[0].0, forced);
    }
    let (end, mut count) = buckets[b];
    let mut start = 0.0;
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    (start + (end - start) * (rank / count), forced)
}

/// Fraction of observations between `lower` and `upper`, interpolating
/// linearly inside finite buckets. A bound inside an infinitely wide bucket
/// (the lowest one when its bound is not positive, and `+Inf`) takes none of
/// that bucket.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, mut buckets: Vec<Bucket>) -> f64 {
    if prepare(&mut buckets).is_none() {
        return f64::NAN;
    }
    ensure_monotonic(&mut buckets, 1e-12);
    let count = buckets[buckets.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, &(ub, c)) in buckets.iter().enumerate() {
        let lb = match i {
            0 if ub > 0.0 => 0.0,
            0 => f64::NEG_INFINITY,
            _ => buckets[i - 1].0,
        };
        let rank_at = |v: f64| {
            if lb == f64::NEG_INFINITY {
                c
            } else if ub == f64::INFINITY {
                rank
            } else {
                rank + (c - rank) * (v - lb) / (ub - lb)
            }
        };
        if !lower_set && lb >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lb >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lb < lower && ub > lower {
            lower_rank = rank_at(lower);
            lower_set = true;
        }
        if !upper_set && lb < upper && ub > upper {
            upper_rank = rank_at(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = c;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_and_forces_monotonicity() {
        // Prometheus's own example: q(1/2) in the middle of the (2, 4] bucket.
        let b = vec![
            (0.0, 0.0),
            (2.0, 1.0),
            (4.0, 2.0),
            (6.0, 3.0),
            (f64::INFINITY, 3.0),
        ];
        assert_eq!(bucket_quantile(0.5, b.clone()).0, 3.0);
        assert_eq!(bucket_quantile(1.0 / 6.0, b.clone()).0, 1.0);
        assert!(
            bucket_quantile(0.5, vec![(1.0, 1.0)]).0.is_nan(),
            "needs +Inf"
        );
        let non_monotonic = vec![
            (0.1, 20.0),
            (1.0, 10.0),
            (10.0, 50.0),
            (100.0, 40.0),
            (1000.0, 90.0),
            (f64::INFINITY, 80.0),
        ];
        let (v, forced) = bucket_quantile(0.5, non_monotonic);
        assert!(forced);
        assert!((v - 8.5).abs() < 1e-12, "{v}");
    }

    #[test]
    fn fraction_takes_nothing_from_infinite_buckets() {
        let neg = vec![
            (-3.0, 10.0),
            (-2.0, 12.0),
            (-1.0, 15.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((bucket_fraction(-4.0, -2.0, neg.clone()) - 0.02).abs() < 1e-12);
        assert!((bucket_fraction(f64::NEG_INFINITY, -1.5, neg) - 0.135).abs() < 1e-12);
        let pos = vec![(1.0, 1.0), (2.0, 3.0), (3.0, 6.0), (f64::INFINITY, 100.0)];
        assert!((bucket_fraction(0.0, 1.5, pos.clone()) - 0.02).abs() < 1e-12);
        assert_eq!(bucket_fraction(4.0, 5.0, pos.clone()), 0.0);
        assert_eq!(bucket_fraction(3.0, 2.0, pos), 0.0);
    }
}
