//! Numeric reductions PromQL and LogQL share, with Prometheus's semantics,
//! so the two languages answer alike (Loki evaluates its range and vector
//! aggregations with Prometheus's rules).

use std::cmp::Ordering;

/// Prometheus's quantile of `values` (sorted in place): linear
/// interpolation between the closest ranks, NaNs sorting first (as Go's
/// `sort.Float64s`), `-Inf` for `q < 0`, `+Inf` for `q > 1`, NaN for an
/// empty set or a NaN `q`.
#[inline]
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// One step of Kahan–Neumaier compensated summation, as Prometheus sums:
/// returns the new `(sum, compensation)`.
#[inline]
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_bounds_and_sorts_nan_first() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(1.5, &mut v), f64::INFINITY);
        assert_eq!(quantile(-1.0, &mut v), f64::NEG_INFINITY);
        assert!(quantile(f64::NAN, &mut v).is_nan());
        assert!(quantile(0.5, &mut []).is_nan());
        // NaN is the smallest value, whatever its sign bit.
        let mut v = vec![1.0, f64::NAN, 3.0, -f64::NAN];
        assert!(quantile(0.0, &mut v).is_nan());
        assert!(quantile(1.0 / 3.0, &mut v).is_nan());
        assert_eq!(quantile(1.0, &mut v), 3.0);
    }

    #[test]
    fn kahan_keeps_small_terms_a_plain_sum_loses() {
        let (mut s, mut c) = (0.0, 0.0);
        for x in [1e16, 1.0, -1e16] {
            (s, c) = kahan_inc(x, s, c);
        }
        assert_eq!(s + c, 1.0);
    }
}
