//! Numeric reductions PromQL and LogQL share, with Prometheus's semantics,
//! so the two languages answer alike (Loki evaluates its vector
//! aggregations with Prometheus's rules): compensated sums, an
//! overflow-safe mean, Welford's variance, NaN-aware min and max, the
//! quantile, and the order `topk`/`bottomk` rank by.

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

/// A sum with Kahan–Neumaier compensation.
pub fn kahan_sum(v: &[f64]) -> f64 {
    kahan_sum_of(v.iter().copied())
}

/// [`kahan_sum`] of values read in place (a window's sample values), so
/// callers need not collect them first.
pub fn kahan_sum_of(values: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for x in values {
        (s, c) = kahan_inc(x, s, c);
    }
    if s.is_infinite() { s } else { s + c }
}

/// Arithmetic mean; falls back to summing `x / n` when the plain sum
/// overflows although every input is finite.
pub fn mean(v: &[f64]) -> f64 {
    mean_of(v.iter().copied())
}

/// [`mean`] of values read in place (read twice when the sum overflows).
pub fn mean_of(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let n = values.clone().count() as f64;
    let sum = kahan_sum_of(values.clone());
    if sum.is_infinite() && values.clone().all(|x| x.is_finite()) {
        return kahan_sum_of(values.map(|x| x / n));
    }
    sum / n
}

/// Population variance by Welford's method.
pub fn variance(v: &[f64]) -> f64 {
    variance_of(v.iter().copied())
}

/// [`variance`] of values read in place.
pub fn variance_of(values: impl Iterator<Item = f64>) -> f64 {
    let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for x in values {
        n += 1.0;
        let d = x - mean;
        mean += d / n;
        m2 += d * (x - mean);
    }
    m2 / n
}

/// A vector aggregation's reduction of one group's values at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    Sum,
    Avg,
    Count,
    Group,
    Min,
    Max,
    Stddev,
    Stdvar,
}

impl Reduction {
    /// The reduction PromQL and LogQL call `name`.
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "sum" => Self::Sum,
            "avg" => Self::Avg,
            "count" => Self::Count,
            "group" => Self::Group,
            "min" => Self::Min,
            "max" => Self::Max,
            "stddev" => Self::Stddev,
            "stdvar" => Self::Stdvar,
            _ => return None,
        })
    }

    /// Reduces a group's values (not empty). `min` and `max` are NaN only
    /// when every value is.
    pub fn reduce(self, v: &[f64]) -> f64 {
        self.reduce_of(v.iter().copied())
    }

    /// [`Reduction::reduce`] of values read in place.
    pub fn reduce_of(self, values: impl Iterator<Item = f64> + Clone) -> f64 {
        match self {
            Self::Sum => kahan_sum_of(values),
            Self::Avg => mean_of(values),
            Self::Count => values.count() as f64,
            Self::Group => 1.0,
            Self::Min => values.fold(f64::NAN, |m, x| if x < m || m.is_nan() { x } else { m }),
            Self::Max => values.fold(f64::NAN, |m, x| if x > m || m.is_nan() { x } else { m }),
            Self::Stdvar => variance_of(values),
            Self::Stddev => variance_of(values).sqrt(),
        }
    }
}

/// The order `topk` (`largest`) and `bottomk` pick values in: best first,
/// NaN after every number.
pub fn rank_order(largest: bool, x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if largest => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
        _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// An arithmetic or comparison operator on two values: `(value, keep)`.
/// Arithmetic always keeps its result; a comparison returns its left value
/// and whether the comparison holds.
pub type BinaryFn = fn(f64, f64) -> (f64, bool);

/// The binary operator PromQL and LogQL write as `op` (`+`, `==`, `atan2`,
/// ...), with Prometheus's float semantics (`%` is the float remainder
/// with the dividend's sign, comparisons with NaN never hold).
pub fn binary_fn(op: &str) -> Option<BinaryFn> {
    Some(match op {
        "+" => |l, r| (l + r, true),
        "-" => |l, r| (l - r, true),
        "*" => |l, r| (l * r, true),
        "/" => |l, r| (l / r, true),
        "%" => |l, r| (l % r, true),
        "^" => |l: f64, r| (l.powf(r), true),
        "atan2" => |l: f64, r| (l.atan2(r), true),
        "==" => |l, r| (l, l == r),
        "!=" => |l, r| (l, l != r),
        ">" => |l, r| (l, l > r),
        "<" => |l, r| (l, l < r),
        ">=" => |l, r| (l, l >= r),
        "<=" => |l, r| (l, l <= r),
        _ => return None,
    })
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
    fn reductions_as_prometheus() {
        let big = f64::MAX / 2.0;
        assert_eq!(mean(&[big, big, big, big]), big);
        assert_eq!(mean(&[-big, -big, big, big]), 0.0);
        assert_eq!(kahan_sum(&[1e100, 1.0, -1e100]), 1.0);
        assert!((variance(&[1.0, 2.0, 3.0, 4.0]) - 1.25).abs() < 1e-12);
        let nan = f64::NAN;
        assert_eq!(Reduction::Min.reduce(&[nan, 2.0, 1.0]), 1.0);
        assert!(Reduction::Max.reduce(&[nan, nan]).is_nan());
        assert_eq!(Reduction::Sum.reduce(&[1e16, 1.0, -1e16]), 1.0);
        let mut v = [1.0, nan, 3.0, 2.0];
        v.sort_by(|a, b| rank_order(true, *a, *b));
        assert_eq!(v[..3], [3.0, 2.0, 1.0]);
        assert!(v[3].is_nan());
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
