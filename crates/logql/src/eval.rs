//! Evaluates LogQL over a [`LogSource`]: log queries return streams (limit
//! and direction applied across streams); metric queries evaluate range
//! aggregations at every step over left-open windows `(t - range, t]`, then
//! vector aggregations and binary operators step by step, with Prometheus's
//! vector-matching rules.

use std::collections::HashMap;
use std::future::Future;

use strata_model::logs::{Direction, LineFilter, LogEntry, LogStream};
use strata_model::matching::{MatchedOp, SetFilter, SetOp, StepValues};
use strata_model::stats::{Reduction, binary_fn, quantile, rank_order};
use strata_model::{Label, Labels, MatchOp, Matcher};

use crate::ast::*;
use crate::pipeline::{self, ERROR_LABEL};

/// What a query asks storage for.
#[derive(Debug, Clone)]
pub struct Selection {
    pub matchers: Vec<Matcher>,
    /// Filters on the raw line, safe to run in the scan.
    pub line_filters: Vec<LineFilter>,
    /// Inclusive start, nanoseconds.
    pub start_ns: i64,
    /// Exclusive end, nanoseconds.
    pub end_ns: i64,
    /// Per-source limit, when the pipeline cannot drop entries.
    pub limit: Option<(usize, Direction)>,
}

/// Where entries come from (the querier: head plus blocks).
pub trait LogSource: Sync {
    /// Entries of matching streams, each stream's entries oldest first.
    fn select(
        &self,
        sel: Selection,
    ) -> impl Future<Output = Result<Vec<LogStream>, EvalError>> + Send;
}

/// Errors while evaluating.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    BadQuery(String),
    #[error("{0}")]
    Limit(String),
    #[error("storage: {0}")]
    Storage(String),
}

/// Most steps of a range query: Loki's 11,000 points per series, plus the
/// first.
pub const MAX_STEPS: usize = 11_001;

/// Most series a metric query returns: Loki's default `max_query_series`.
pub const MAX_QUERY_SERIES: usize = 500;

/// Time range and shape of a query.
#[derive(Debug, Clone, Copy)]
pub struct QueryParams {
    /// Nanoseconds. For an instant query, `start == end` is the evaluation time.
    pub start_ns: i64,
    pub end_ns: i64,
    /// Step of a range metric query, nanoseconds (ignored for instant queries).
    pub step_ns: i64,
    /// Most entries a log query returns.
    pub limit: usize,
    pub direction: Direction,
    pub instant: bool,
    /// Most series a metric query may return.
    pub max_series: usize,
}

/// One series of a metric result: labels and `(t_ns, value)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// A query result.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    /// Log lines, each stream's entries in the query's direction.
    Streams(Vec<LogStream>),
    Matrix(Vec<Series>),
    /// Instant vector at `t_ns`.
    Vector(i64, Vec<(Labels, f64)>),
    Scalar(i64, f64),
}

/// Counts of what a query read, for the `stats` block.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryStats {
    pub entries: usize,
    pub bytes: usize,
}

/// Evaluates `expr`.
pub async fn evaluate<S: LogSource>(
    source: &S,
    expr: &Expr,
    p: &QueryParams,
) -> Result<(QueryResult, QueryStats), EvalError> {
    let mut stats = QueryStats::default();
    match expr {
        Expr::Log(log) => {
            let streams = log_query(source, log, p, &mut stats).await?;
            Ok((QueryResult::Streams(streams), stats))
        }
        Expr::Metric(m) => {
            let steps: Vec<i64> = if p.instant || p.step_ns <= 0 {
                vec![p.end_ns]
            } else {
                // Counted (without overflow) before anything is allocated.
                let n = (i128::from(p.end_ns) - i128::from(p.start_ns)) / i128::from(p.step_ns) + 1;
                if n > MAX_STEPS as i128 {
                    return Err(EvalError::BadQuery(format!(
                        "exceeded maximum resolution of {} points per time series ({n} steps). Try increasing the value of the step parameter",
                        MAX_STEPS - 1
                    )));
                }
                // Each step is at most `end`, but `i * step` alone may not fit.
                let (start, step) = (i128::from(p.start_ns), i128::from(p.step_ns));
                (0..n.max(0)).map(|i| (start + i * step) as i64).collect()
            };
            let value = eval_metric(source, m, &steps, &mut stats).await?;
            let result = match value {
                Value::Scalar(v) => {
                    if p.instant {
                        QueryResult::Scalar(p.end_ns, v)
                    } else {
                        QueryResult::Matrix(vec![Series {
                            labels: Labels::default(),
                            points: steps.iter().map(|&t| (t, v)).collect(),
                        }])
                    }
                }
                Value::Steps(per_step) => {
                    if p.instant {
                        let v = per_step.into_iter().next().unwrap_or_default();
                        check_errors(v.iter().map(|(l, _)| l))?;
                        if v.len() > p.max_series && p.max_series > 0 {
                            return Err(series_limit(p.max_series));
                        }
                        QueryResult::Vector(p.end_ns, v)
                    } else {
                        let m = to_matrix(&steps, per_step);
                        check_errors(m.iter().map(|s| &s.labels))?;
                        if m.len() > p.max_series && p.max_series > 0 {
                            return Err(series_limit(p.max_series));
                        }
                        QueryResult::Matrix(m)
                    }
                }
            };
            Ok((result, stats))
        }
    }
}

pub(crate) fn series_limit(n: usize) -> EvalError {
    EvalError::Limit(format!(
        "maximum number of series ({n}) reached for a single query; consider reducing query cardinality by adding more specific stream selectors or aggregating"
    ))
}

/// Loki refuses metric results that still carry a pipeline error.
fn check_errors<'a>(mut labels: impl Iterator<Item = &'a Labels>) -> Result<(), EvalError> {
    if let Some(l) = labels.find(|l| l.get(ERROR_LABEL).is_some()) {
        return Err(EvalError::BadQuery(format!(
            "pipeline error: '{}' for series: '{}'. Use a label filter to intentionally skip this error (e.g | __error__!=\"{}\").",
            l.get(ERROR_LABEL).unwrap_or(""),
            format_labels(l),
            l.get(ERROR_LABEL).unwrap_or("")
        )));
    }
    Ok(())
}

/// `{a="b", c="d"}`.
pub fn format_labels(l: &Labels) -> String {
    let inner: Vec<String> = l
        .iter()
        .map(|x| format!("{}={:?}", x.name, x.value))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

pub(crate) fn to_matrix(steps: &[i64], per_step: Vec<Vec<(Labels, f64)>>) -> Vec<Series> {
    let mut by_labels: strata_model::LabelsMap<Vec<(i64, f64)>> = Default::default();
    for (t, vec) in steps.iter().zip(per_step) {
        for (l, v) in vec {
            by_labels.entry(l).or_default().push((*t, v));
        }
    }
    let mut out: Vec<Series> = by_labels
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

async fn log_query<S: LogSource>(
    source: &S,
    log: &LogExpr,
    p: &QueryParams,
    stats: &mut QueryStats,
) -> Result<Vec<LogStream>, EvalError> {
    let pushdown = pipeline::only_line_filters(&log.pipeline);
    let raw = source
        .select(Selection {
            matchers: log.matchers.clone(),
            line_filters: log.leading_line_filters(),
            start_ns: p.start_ns,
            end_ns: p.end_ns,
            limit: pushdown.then_some((p.limit, p.direction)),
        })
        .await?;
    let mut out: Vec<(Labels, LogEntry)> = Vec::new();
    for s in &raw {
        for e in &s.entries {
            stats.entries += 1;
            stats.bytes += e.line.len();
            if let Some((line, labels)) = pipeline::process(&log.pipeline, &s.labels, e) {
                out.push((
                    labels.into_labels(),
                    LogEntry {
                        ts: e.ts,
                        line,
                        metadata: e.metadata.clone(),
                    },
                ));
            }
        }
    }
    // Stable across streams: by time, then labels, so equal timestamps come out deterministically.
    out.sort_by(|a, b| a.1.ts.cmp(&b.1.ts).then_with(|| a.0.cmp(&b.0)));
    if p.direction == Direction::Backward {
        out.reverse();
    }
    out.truncate(p.limit);
    let mut streams: Vec<LogStream> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (labels, e) in out {
        let i = *index.entry(labels.clone()).or_insert_with(|| {
            streams.push(LogStream {
                labels,
                entries: Vec::new(),
            });
            streams.len() - 1
        });
        streams[i].entries.push(e);
    }
    Ok(streams)
}

/// A metric value: a scalar, or one vector per step.
enum Value {
    Scalar(f64),
    Steps(Vec<Vec<(Labels, f64)>>),
}

fn eval_metric<'a, S: LogSource>(
    source: &'a S,
    m: &'a MetricExpr,
    steps: &'a [i64],
    stats: &'a mut QueryStats,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Value, EvalError>> + Send + 'a>> {
    Box::pin(async move {
        match m {
            MetricExpr::Literal(v) => Ok(Value::Scalar(*v)),
            MetricExpr::VectorLiteral(v) => Ok(Value::Steps(
                steps
                    .iter()
                    .map(|_| vec![(Labels::default(), *v)])
                    .collect(),
            )),
            MetricExpr::Range {
                op,
                param,
                range,
                grouping,
            } => range_agg(source, *op, *param, range, grouping.as_ref(), steps, stats)
                .await
                .map(Value::Steps),
            MetricExpr::Vector {
                op,
                param,
                grouping,
                expr,
            } => {
                let inner = eval_metric(source, expr, steps, stats).await?;
                let Value::Steps(per_step) = inner else {
                    return Err(EvalError::BadQuery(
                        "vector aggregations need a vector, not a scalar".into(),
                    ));
                };
                Ok(Value::Steps(
                    per_step
                        .into_iter()
                        .map(|v| vector_agg(*op, *param, grouping.as_ref(), v))
                        .collect::<Result<_, _>>()?,
                ))
            }
            MetricExpr::Binary {
                op,
                return_bool,
                matching,
                lhs,
                rhs,
            } => {
                let l = eval_metric(source, lhs, steps, stats).await?;
                let r = eval_metric(source, rhs, steps, stats).await?;
                binary(*op, *return_bool, matching, l, r)
            }
        }
    })
}

/// Samples a range aggregation reads: per output series, `(t_ns, value, line bytes)`.
type Extracted = HashMap<Labels, Vec<(i64, f64)>>;

#[allow(clippy::too_many_arguments)]
async fn range_agg<S: LogSource>(
    source: &S,
    op: RangeOp,
    param: Option<f64>,
    range: &LogRange,
    grouping: Option<&Grouping>,
    steps: &[i64],
    stats: &mut QueryStats,
) -> Result<Vec<Vec<(Labels, f64)>>, EvalError> {
    // Durations stop at i64::MAX ns (the parser's limit); windows saturate
    // rather than wrap near the ends of time.
    let range_ns = i64::try_from(range.range.as_nanos()).unwrap_or(i64::MAX);
    let offset_ns = i64::try_from(range.offset.as_nanos()).unwrap_or(i64::MAX);
    let (Some(&first), Some(&last)) = (steps.first(), steps.last()) else {
        return Ok(Vec::new());
    };
    // Windows are (t - range, t]: select [first - range + 1, last + 1).
    let raw = source
        .select(Selection {
            matchers: range.log.matchers.clone(),
            line_filters: range.log.leading_line_filters(),
            start_ns: first
                .saturating_sub(offset_ns)
                .saturating_sub(range_ns)
                .saturating_add(1),
            end_ns: last.saturating_sub(offset_ns).saturating_add(1),
            limit: None,
        })
        .await?;
    let mut series: Extracted = HashMap::new();
    for s in &raw {
        for e in &s.entries {
            stats.entries += 1;
            stats.bytes += e.line.len();
            let Some((line, mut labels)) = pipeline::process(&range.log.pipeline, &s.labels, e)
            else {
                continue;
            };
            let value = match (&range.unwrap, op) {
                (Some(u), _) => match pipeline::unwrap_value(u, &mut labels) {
                    Some(v) => v,
                    None => continue,
                },
                (None, RangeOp::BytesOverTime | RangeOp::BytesRate) => line.len() as f64,
                (None, _) => 1.0,
            };
            let mut out_labels = labels.into_labels();
            if let Some(g) = grouping {
                out_labels = group_labels(&out_labels, g);
            }
            // As Loki's range aggregation: a sample still carrying an
            // error fails the query, whatever aggregates it afterwards.
            check_errors(std::iter::once(&out_labels))?;
            series.entry(out_labels).or_default().push((e.ts, value));
        }
    }
    for pts in series.values_mut() {
        pts.sort_by_key(|p| p.0);
    }
    let mut out = Vec::with_capacity(steps.len());
    for &t in steps {
        let end = t.saturating_sub(offset_ns);
        let start = end.saturating_sub(range_ns);
        let mut vec = Vec::new();
        let mut any = false;
        for (labels, pts) in &series {
            let lo = pts.partition_point(|p| p.0 <= start);
            let hi = pts.partition_point(|p| p.0 <= end);
            let w = &pts[lo..hi];
            if w.is_empty() {
                continue;
            }
            any = true;
            if op == RangeOp::AbsentOverTime {
                continue;
            }
            if let Some(v) = aggregate_window(op, param, w, range_ns, start, end) {
                vec.push((labels.clone(), v));
            }
        }
        if op == RangeOp::AbsentOverTime && !any {
            vec.push((absent_labels(&range.log.matchers), 1.0));
        }
        out.push(vec);
    }
    Ok(out)
}

fn absent_labels(matchers: &[Matcher]) -> Labels {
    let mut out: Vec<Label> = Vec::new();
    for m in matchers {
        if m.op == MatchOp::Equal && !out.iter().any(|l| l.name == m.name) {
            out.push(Label::new(m.name.clone(), m.value.clone()));
        }
    }
    Labels::new(out)
}

fn aggregate_window(
    op: RangeOp,
    param: Option<f64>,
    w: &[(i64, f64)],
    range_ns: i64,
    start: i64,
    end: i64,
) -> Option<f64> {
    let secs = range_ns as f64 / 1e9;
    // Read in place: this runs for every series at every step.
    let reduce = |r: Reduction| r.reduce_of(w.iter().map(|p| p.1));
    Some(match op {
        RangeOp::CountOverTime => w.len() as f64,
        RangeOp::Rate | RangeOp::BytesRate => reduce(Reduction::Sum) / secs,
        RangeOp::BytesOverTime | RangeOp::SumOverTime => reduce(Reduction::Sum),
        RangeOp::AvgOverTime => reduce(Reduction::Avg),
        RangeOp::MinOverTime => reduce(Reduction::Min),
        RangeOp::MaxOverTime => reduce(Reduction::Max),
        RangeOp::StdvarOverTime => reduce(Reduction::Stdvar),
        RangeOp::StddevOverTime => reduce(Reduction::Stddev),
        RangeOp::QuantileOverTime => {
            let mut values: Vec<f64> = w.iter().map(|p| p.1).collect();
            quantile(param.unwrap_or(0.0), &mut values)
        }
        RangeOp::FirstOverTime => w[0].1,
        RangeOp::LastOverTime => w[w.len() - 1].1,
        RangeOp::RateCounter => extrapolated_rate(w, start, end)?,
        RangeOp::AbsentOverTime => return None,
    })
}

/// Prometheus's extrapolated counter rate over `(start, end]`, as Loki's `rate_counter`.
fn extrapolated_rate(w: &[(i64, f64)], start: i64, end: i64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let mut delta = w[w.len() - 1].1 - w[0].1;
    for pair in w.windows(2) {
        if pair[1].1 < pair[0].1 {
            delta += pair[0].1;
        }
    }
    let secs = |ns: i64| ns as f64 / 1e9;
    let sampled = secs(w[w.len() - 1].0 - w[0].0);
    let avg_interval = sampled / (w.len() - 1) as f64;
    let mut to_start = secs(w[0].0 - start);
    let to_end = secs(end - w[w.len() - 1].0);
    if delta > 0.0 && w[0].1 >= 0.0 {
        let zero_at = sampled * (w[0].1 / delta);
        if zero_at < to_start {
            to_start = zero_at;
        }
    }
    let threshold = avg_interval * 1.1;
    let mut extrapolate = sampled;
    extrapolate += if to_start < threshold {
        to_start
    } else {
        avg_interval / 2.0
    };
    extrapolate += if to_end < threshold {
        to_end
    } else {
        avg_interval / 2.0
    };
    Some(delta * (extrapolate / sampled) / secs(end - start))
}

fn group_labels(l: &Labels, g: &Grouping) -> Labels {
    match g {
        Grouping::By(names) => l.filter_names(names, true),
        Grouping::Without(names) => l.filter_names(names, false),
    }
}

pub(crate) fn vector_agg(
    op: VectorOp,
    param: Option<f64>,
    grouping: Option<&Grouping>,
    v: Vec<(Labels, f64)>,
) -> Result<Vec<(Labels, f64)>, EvalError> {
    let key = |l: &Labels| match grouping {
        Some(g) => group_labels(l, g),
        None => Labels::default(),
    };
    match op {
        VectorOp::Sort | VectorOp::SortDesc => {
            let mut v = v;
            v.sort_by(|a, b| a.1.total_cmp(&b.1));
            if op == VectorOp::SortDesc {
                v.reverse();
            }
            return Ok(v);
        }
        VectorOp::Topk | VectorOp::Bottomk => {
            let k = param.unwrap_or(0.0);
            if k < 1.0 {
                return Err(EvalError::BadQuery(format!(
                    "parameter of {op:?} must be at least 1, got {k}"
                )));
            }
            let mut groups: Vec<(Labels, Vec<(Labels, f64)>)> = Vec::new();
            for (l, x) in v {
                let kk = key(&l);
                match groups.iter_mut().find(|g| g.0 == kk) {
                    Some(g) => g.1.push((l, x)),
                    None => groups.push((kk, vec![(l, x)])),
                }
            }
            let mut out = Vec::new();
            for (_, mut members) in groups {
                members.sort_by(|a, b| rank_order(op == VectorOp::Topk, a.1, b.1));
                out.extend(members.into_iter().take(k as usize));
            }
            return Ok(out);
        }
        _ => {}
    }
    let mut groups: Vec<(Labels, Vec<f64>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (l, x) in v {
        let k = key(&l);
        let i = *index.entry(k.clone()).or_insert_with(|| {
            groups.push((k, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(x);
    }
    let reduction = match op {
        VectorOp::Sum => Reduction::Sum,
        VectorOp::Avg => Reduction::Avg,
        VectorOp::Count => Reduction::Count,
        VectorOp::Min => Reduction::Min,
        VectorOp::Max => Reduction::Max,
        VectorOp::Stdvar => Reduction::Stdvar,
        VectorOp::Stddev => Reduction::Stddev,
        other => {
            return Err(EvalError::BadQuery(format!(
                "vector aggregation {other:?} has no reduction"
            )));
        }
    };
    Ok(groups
        .into_iter()
        .map(|(l, xs)| (l, reduction.reduce(&xs)))
        .collect())
}

/// `op` on two values as PromQL computes it; a comparison gives 1 or 0.
/// `None` for the set operators.
fn arith(op: BinOp, a: f64, b: f64) -> Option<f64> {
    let (value, holds) = binary_fn(op.symbol())?(a, b);
    Some(if op.is_comparison() {
        f64::from(u8::from(holds))
    } else {
        value
    })
}

fn binary(
    op: BinOp,
    return_bool: bool,
    matching: &VectorMatching,
    l: Value,
    r: Value,
) -> Result<Value, EvalError> {
    match (l, r) {
        (Value::Scalar(a), Value::Scalar(b)) => {
            if op.is_set() {
                return Err(EvalError::BadQuery(format!(
                    "set operator {op:?} needs vectors on both sides"
                )));
            }
            if op.is_comparison() && !return_bool {
                return Err(EvalError::BadQuery(
                    "comparisons between scalars must use the bool modifier".into(),
                ));
            }
            Ok(Value::Scalar(arith(op, a, b).unwrap_or(f64::NAN)))
        }
        (Value::Steps(v), Value::Scalar(s)) | (Value::Scalar(s), Value::Steps(v))
            if op.is_set() =>
        {
            let _ = (v, s);
            Err(EvalError::BadQuery(format!(
                "set operator {op:?} needs vectors on both sides"
            )))
        }
        (Value::Steps(v), Value::Scalar(s)) => Ok(Value::Steps(
            v.into_iter()
                .map(|vec| scalar_op(op, return_bool, vec, s, false))
                .collect(),
        )),
        (Value::Scalar(s), Value::Steps(v)) => Ok(Value::Steps(
            v.into_iter()
                .map(|vec| scalar_op(op, return_bool, vec, s, true))
                .collect(),
        )),
        (Value::Steps(a), Value::Steps(b)) => Ok(Value::Steps(
            a.into_iter()
                .zip(b)
                .map(|(x, y)| vector_op(op, return_bool, matching, x, y))
                .collect::<Result<_, _>>()?,
        )),
    }
}

fn scalar_op(
    op: BinOp,
    return_bool: bool,
    v: Vec<(Labels, f64)>,
    s: f64,
    scalar_left: bool,
) -> Vec<(Labels, f64)> {
    v.into_iter()
        .filter_map(|(l, x)| {
            let (a, b) = if scalar_left { (s, x) } else { (x, s) };
            let r = arith(op, a, b)?;
            if op.is_comparison() {
                if return_bool {
                    Some((l, r))
                } else if r == 1.0 {
                    Some((l, x))
                } else {
                    None
                }
            } else {
                Some((l, r))
            }
        })
        .collect()
}

/// Vector matching at one step, with PromQL's semantics (shared code):
/// each side's series present at the step, paired by signature.
fn vector_op(
    op: BinOp,
    return_bool: bool,
    m: &VectorMatching,
    lhs: Vec<(Labels, f64)>,
    rhs: Vec<(Labels, f64)>,
) -> Result<Vec<(Labels, f64)>, EvalError> {
    fn at_step(v: &[(Labels, f64)]) -> Vec<StepValues> {
        v.iter().map(|(_, x)| vec![Some(*x)]).collect()
    }
    fn side<'a>(
        v: &'a [(Labels, f64)],
        values: &'a [StepValues],
    ) -> Vec<(&'a Labels, &'a StepValues)> {
        v.iter().map(|(l, _)| l).zip(values).collect()
    }
    fn labels(v: &[(Labels, f64)]) -> Vec<&Labels> {
        v.iter().map(|(l, _)| l).collect()
    }
    let (lv, rv) = (at_step(&lhs), at_step(&rhs));
    if let Some(set) = SetOp::from_symbol(op.symbol()) {
        let filter = SetFilter::new(set, m, &side(&lhs, &lv), &side(&rhs, &rv), 1);
        let candidates = match set {
            SetOp::And | SetOp::Unless => lhs,
            SetOp::Or => lhs.into_iter().chain(rhs).collect(),
        };
        return Ok(candidates
            .into_iter()
            .enumerate()
            .filter(|(i, _)| filter.keeps(*i, 0))
            .map(|(_, s)| s)
            .collect());
    }
    let f = binary_fn(op.symbol())
        .ok_or_else(|| EvalError::BadQuery(format!("binary operator {op:?}")))?;
    let matched = MatchedOp::new(f, op.is_comparison(), return_bool, m);
    let ((many, many_values), (one, one_values)) = if matched.one_to_many {
        ((rhs, rv), (lhs, lv))
    } else {
        ((lhs, lv), (rhs, rv))
    };
    let pairing = m.pair(&labels(&many), &labels(&one));
    let present = [!many.is_empty()];
    let mut values: Vec<Option<f64>> = vec![None; pairing.outputs.len()];
    for group in &pairing.groups {
        group
            .combine(
                &matched,
                &many_values,
                &one_values,
                &present,
                &mut |o, _, v| values[o] = Some(v),
            )
            .map_err(|e| EvalError::BadQuery(e.to_string()))?;
    }
    Ok(pairing
        .outputs
        .into_iter()
        .zip(values)
        .filter_map(|((labels, _), v)| Some((labels, v?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    struct Mem(Vec<LogStream>);

    impl LogSource for Mem {
        async fn select(&self, sel: Selection) -> Result<Vec<LogStream>, EvalError> {
            Ok(self
                .0
                .iter()
                .filter(|s| strata_model::matches_all(&sel.matchers, &s.labels))
                .map(|s| LogStream {
                    labels: s.labels.clone(),
                    entries: s
                        .entries
                        .iter()
                        .filter(|e| e.ts >= sel.start_ns && e.ts < sel.end_ns)
                        .filter(|e| strata_model::logs::line_matches(&sel.line_filters, &e.line))
                        .cloned()
                        .collect(),
                })
                .collect())
        }
    }

    const S: i64 = 1_000_000_000;

    fn data() -> Mem {
        let mk = |app: &str, lines: &[(i64, &str)]| LogStream {
            labels: Labels::from_pairs([("app", app)]),
            entries: lines
                .iter()
                .map(|(t, l)| LogEntry {
                    ts: t * S,
                    line: l.to_string(),
                    metadata: Labels::default(),
                })
                .collect(),
        };
        Mem(vec![
            mk(
                "api",
                &[
                    (1, "GET /a took 10ms"),
                    (2, "GET /b took 20ms"),
                    (3, "POST /a took 30ms"),
                    (4, "GET /a took 40ms"),
                    (61, "GET /a took 50ms"),
                ],
            ),
            mk("web", &[(2, "error x"), (3, "ok")]),
        ])
    }

    fn params(start: i64, end: i64, step: i64) -> QueryParams {
        QueryParams {
            start_ns: start * S,
            end_ns: end * S,
            step_ns: step * S,
            limit: 100,
            direction: Direction::Backward,
            instant: start == end,
            max_series: 500,
        }
    }

    /// The instant vector `q` gives over `src` at 60 s.
    async fn instant_vector(src: &Mem, q: &str) -> Vec<(Labels, f64)> {
        let expr = parse(q).unwrap();
        let QueryResult::Vector(_, v) = evaluate(src, &expr, &params(60, 60, 0)).await.unwrap().0
        else {
            panic!("{q}: not a vector")
        };
        v
    }

    async fn run(q: &str, p: QueryParams) -> QueryResult {
        evaluate(&data(), &parse(q).unwrap(), &p).await.unwrap().0
    }

    #[tokio::test]
    async fn log_query_limit_and_direction() {
        let QueryResult::Streams(s) = run(
            r#"{app=~".+"} |= "GET""#,
            QueryParams {
                limit: 2,
                ..params(0, 100, 0)
            },
        )
        .await
        else {
            panic!()
        };
        assert_eq!(s.len(), 1);
        let ts: Vec<i64> = s[0].entries.iter().map(|e| e.ts / S).collect();
        assert_eq!(ts, vec![61, 4]);
        let QueryResult::Streams(s) = run(
            r#"{app=~".+"}"#,
            QueryParams {
                limit: 3,
                direction: Direction::Forward,
                ..params(0, 100, 0)
            },
        )
        .await
        else {
            panic!()
        };
        let mut all: Vec<(i64, &str)> = s
            .iter()
            .flat_map(|st| {
                st.entries
                    .iter()
                    .map(move |e| (e.ts / S, st.labels.get("app").unwrap()))
            })
            .collect();
        all.sort();
        assert_eq!(all, vec![(1, "api"), (2, "api"), (2, "web")]);
    }

    #[tokio::test]
    async fn quantile_over_time_sorts_nan_first_as_prometheus() {
        let src = Mem(vec![LogStream {
            labels: Labels::from_pairs([("app", "q")]),
            entries: ["v=3", "v=NaN", "v=1"]
                .iter()
                .enumerate()
                .map(|(i, l)| LogEntry {
                    ts: (i as i64 + 1) * S,
                    line: l.to_string(),
                    metadata: Labels::default(),
                })
                .collect(),
        }]);
        let at = |q: f64| {
            let q = format!(r#"quantile_over_time({q}, {{app="q"}} | logfmt | unwrap v [1m])"#);
            let src = &src;
            async move { instant_vector(src, &q).await[0].1 }
        };
        // Loki (Go's sort.Float64s) and Prometheus put NaN below every number.
        assert!(at(0.0).await.is_nan());
        assert_eq!(at(1.0).await, 3.0);
        assert_eq!(at(0.75).await, 2.0);
    }

    #[tokio::test]
    async fn aggregations_reduce_as_prometheus() {
        let stream = |s: &str, line: &str| LogStream {
            labels: Labels::from_pairs([("app", "k"), ("s", s)]),
            entries: vec![LogEntry {
                ts: S,
                line: line.to_string(),
                metadata: Labels::default(),
            }],
        };
        // In label order a plain sum gives 1e16 + 1 - 1e16 = 0.
        let src = Mem(vec![
            stream("a", "v=1e16"),
            stream("b", "v=1"),
            stream("c", "v=-1e16"),
            stream("d", "v=NaN"),
        ]);
        let unwrapped = r#"{app="k", s!="d"} | logfmt | unwrap v [1m]"#;
        let v = instant_vector(&src, &format!("sum(sum_over_time({unwrapped}))")).await;
        assert_eq!(v[0].1, 1.0, "compensated sum");
        // min and max skip NaN unless every value is NaN.
        let v = instant_vector(
            &src,
            r#"min(min_over_time({app="k"} | logfmt | unwrap v [1m]))"#,
        )
        .await;
        assert_eq!(v[0].1, -1e16);
        let v = instant_vector(
            &src,
            r#"max_over_time({app="k", s="d"} | logfmt | unwrap v [1m])"#,
        )
        .await;
        assert!(v[0].1.is_nan(), "{v:?}");
        // topk ranks NaN after every number.
        let v = instant_vector(
            &src,
            r#"topk(4, max_over_time({app="k"} | logfmt | unwrap v [1m]))"#,
        )
        .await;
        let ranked: Vec<f64> = v.iter().map(|x| x.1).collect();
        assert_eq!(ranked[..3], [1e16, 1.0, -1e16]);
        assert!(ranked[3].is_nan());
    }

    #[tokio::test]
    async fn range_and_vector_aggregations() {
        // Window (0, 60] holds 4 api lines and 2 web lines.
        let QueryResult::Vector(_, v) = run(
            r#"sum by (app) (count_over_time({app=~".+"}[1m]))"#,
            params(60, 60, 0),
        )
        .await
        else {
            panic!()
        };
        let mut v = v;
        v.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(v[0].1, 4.0);
        assert_eq!(v[1].1, 2.0);
        // Quantile of extracted ms per path: /a has 10, 30, 40 -> p50 30.
        let QueryResult::Vector(_, v) = run(
            r#"quantile_over_time(0.5, {app="api"} | regexp "(?P<method>\\w+) (?P<path>\\S+) took (?P<ms>\\d+)ms" | unwrap ms [1m]) by (path)"#,
            params(60, 60, 0),
        )
        .await
        else {
            panic!()
        };
        let a = v.iter().find(|(l, _)| l.get("path") == Some("/a")).unwrap();
        assert_eq!(a.1, 30.0);
        assert_eq!(a.0.len(), 1);
        // Range query: rate per step, left-open windows.
        let QueryResult::Matrix(m) = run(r#"rate({app="api"}[2s])"#, params(2, 4, 1)).await else {
            panic!()
        };
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].points, vec![(2 * S, 1.0), (3 * S, 1.0), (4 * S, 1.0)]);
        // Binary operations and comparison filters.
        let QueryResult::Vector(_, v) = run(
            r#"count_over_time({app="api"}[1m]) / count_over_time({app="api"} |= "GET" [1m]) > 1"#,
            params(60, 60, 0),
        )
        .await
        else {
            panic!()
        };
        assert_eq!(v.len(), 1);
        assert!((v[0].1 - 4.0 / 3.0).abs() < 1e-12);
        let QueryResult::Vector(_, v) =
            run(r#"absent_over_time({app="nope"}[1m])"#, params(60, 60, 0)).await
        else {
            panic!()
        };
        assert_eq!(v, vec![(Labels::from_pairs([("app", "nope")]), 1.0)]);
        let QueryResult::Vector(_, v) = run(
            r#"topk(1, bytes_over_time({app=~".+"}[1m]))"#,
            params(60, 60, 0),
        )
        .await
        else {
            panic!()
        };
        assert_eq!(v[0].0.get("app"), Some("api"));
        assert_eq!(v[0].1, (16 + 16 + 17 + 16) as f64);
    }

    /// Each range/vector aggregation and operator against a hand-computed
    /// value. In (0s, 60s] the api stream took 10, 20, 30, 40 ms (t = 1..4 s)
    /// in lines of 16, 16, 17, 16 bytes; web has two lines.
    #[tokio::test]
    async fn aggregations_and_operators_match_hand_computed_values() {
        const RX: &str = r#"| regexp "(?P<method>\\w+) (?P<path>\\S+) took (?P<ms>\\d+)ms""#;
        let q = |s: &str| s.replace("RX", RX);
        type Want<'a> = Vec<(Vec<(&'a str, &'a str)>, f64)>;
        let cases: Vec<(String, Want)> = vec![
            (q(r#"sum_over_time({app="api"} RX | unwrap ms [1m]) without (method, path)"#), vec![(vec![("app", "api")], 100.0)]),
            (q(r#"avg_over_time({app="api"} RX | unwrap ms [1m]) by (path)"#), vec![(vec![("path", "/a")], 80.0 / 3.0), (vec![("path", "/b")], 20.0)]),
            (q(r#"min_over_time({app="api"} RX | unwrap ms [1m]) by (app)"#), vec![(vec![("app", "api")], 10.0)]),
            (q(r#"max_over_time({app="api"} RX | unwrap ms [1m]) by (app)"#), vec![(vec![("app", "api")], 40.0)]),
            (q(r#"stdvar_over_time({app="api"} RX | unwrap ms [1m]) by (app)"#), vec![(vec![("app", "api")], 125.0)]),
            (q(r#"stddev_over_time({app="api"} RX | unwrap ms [1m]) by (app)"#), vec![(vec![("app", "api")], 125f64.sqrt())]),
            (q(r#"first_over_time({app="api"} RX | unwrap ms [1m]) by (app)"#), vec![(vec![("app", "api")], 10.0)]),
            (q(r#"last_over_time({app="api"} RX | unwrap ms [1m]) by (app)"#), vec![(vec![("app", "api")], 40.0)]),
            // Counter 10..40 over 3 s, extrapolated 1 s back (to zero) and 0.5 s forward: 30 * 4.5/3 / 60.
            (q(r#"rate_counter({app="api"} RX | unwrap ms [1m]) by (app)"#), vec![(vec![("app", "api")], 0.75)]),
            (q(r#"rate({app="api"} RX | unwrap ms [1m]) by (app)"#), vec![(vec![("app", "api")], 100.0 / 60.0)]),
            (r#"bytes_rate({app="api"}[1m])"#.into(), vec![(vec![("app", "api")], 65.0 / 60.0)]),
            (r#"count_over_time({app="api"}[1m] offset 58s)"#.into(), vec![(vec![("app", "api")], 2.0)]),
            (r#"bottomk(1, count_over_time({app=~".+"}[1m]))"#.into(), vec![(vec![("app", "web")], 2.0)]),
            (r#"sum without (app) (count_over_time({app=~".+"}[1m]))"#.into(), vec![(vec![], 6.0)]),
            (r#"max by (app) (count_over_time({app=~".+"}[1m])) - min(count_over_time({app=~".+"}[1m]))"#.into(), vec![]),
            (r#"count_over_time({app=~".+"} |= "POST" or "error" [1m])"#.into(), vec![(vec![("app", "api")], 1.0), (vec![("app", "web")], 1.0)]),
            (r#"count_over_time({app="api"} | regexp "took (?P<d>\\d+ms)" | d > 25ms [1m])"#.into(), vec![(vec![("app", "api"), ("d", "30ms")], 1.0), (vec![("app", "api"), ("d", "40ms")], 1.0)]),
            (r#"sum_over_time({app="api"} | regexp "took (?P<d>\\d+ms)" | unwrap duration(d) [1m]) by (app)"#.into(), vec![(vec![("app", "api")], 0.1)]),
            (r#"sum_over_time({app="api"} | regexp "took (?P<b>\\d+)ms" | label_format b="{{.b}}KB" | unwrap bytes(b) [1m]) by (app)"#.into(), vec![(vec![("app", "api")], 100_000.0)]),
            (q(r#"sum by (app, path) (count_over_time({app="api"} RX [1m])) / on (app) group_left sum by (app) (count_over_time({app="api"}[1m]))"#), vec![(vec![("app", "api"), ("path", "/a")], 0.75), (vec![("app", "api"), ("path", "/b")], 0.25)]),
            (q(r#"sum by (app) (count_over_time({app="api"}[1m])) / on (app) group_right sum by (app, path) (count_over_time({app="api"} RX [1m]))"#), vec![(vec![("app", "api"), ("path", "/a")], 4.0 / 3.0), (vec![("app", "api"), ("path", "/b")], 4.0)]),
            (q(r#"sum by (app, path) (count_over_time({app="api"} RX [1m])) * ignoring (path) group_left (app) sum by (app) (count_over_time({app="api"}[1m]))"#), vec![(vec![("app", "api"), ("path", "/a")], 12.0), (vec![("app", "api"), ("path", "/b")], 4.0)]),
            (r#"count_over_time({app="api"}[1m]) > bool 3"#.into(), vec![(vec![("app", "api")], 1.0)]),
            (r#"count_over_time({app="api"}[1m]) > 5"#.into(), vec![]),
            (r#"count_over_time({app=~".+"}[1m]) unless count_over_time({app="web"}[1m])"#.into(), vec![(vec![("app", "api")], 4.0)]),
            (r#"count_over_time({app="web"}[1m]) or count_over_time({app="api"}[1m])"#.into(), vec![(vec![("app", "api")], 4.0), (vec![("app", "web")], 2.0)]),
            (r#"absent_over_time({app="api"}[1m])"#.into(), vec![]),
            (r#"vector(1) + 1"#.into(), vec![(vec![], 2.0)]),
        ];
        for (query, want) in cases {
            let got = match evaluate(&data(), &parse(&query).unwrap(), &params(60, 60, 0)).await {
                Ok((QueryResult::Vector(_, v), _)) => v,
                other => panic!("{query}: {other:?}"),
            };
            let mut got: Vec<(Labels, f64)> = got;
            got.sort_by(|a, b| a.0.cmp(&b.0));
            let want: Vec<(Labels, f64)> = want
                .into_iter()
                .map(|(l, v)| (Labels::from_pairs(l), v))
                .collect();
            assert_eq!(got.len(), want.len(), "{query}: {got:?}");
            for ((gl, gv), (wl, wv)) in got.iter().zip(&want) {
                assert_eq!(gl, wl, "{query}");
                assert!((gv - wv).abs() < 1e-9, "{query}: got {gv}, want {wv}");
            }
        }
        // Ambiguous matches fail with Prometheus's errors (shared with PromQL).
        for (query, want) in [
            (
                q(
                    r#"sum by (app, path) (count_over_time({app="api"} RX [1m])) + ignoring (path) sum by (app) (count_over_time({app="api"}[1m]))"#,
                ),
                "many-to-one matching must be explicit",
            ),
            (
                q(
                    r#"sum by (app) (count_over_time({app="api"}[1m])) + ignoring (path) sum by (app, path) (count_over_time({app="api"} RX [1m]))"#,
                ),
                "found duplicate series for the match group",
            ),
        ] {
            match evaluate(&data(), &parse(&query).unwrap(), &params(60, 60, 0)).await {
                Err(EvalError::BadQuery(msg)) => assert!(msg.contains(want), "{query}: {msg}"),
                other => panic!("{query}: {other:?}"),
            }
        }
        // Sorting keeps its order in the result; scalars follow PromQL precedence.
        let QueryResult::Vector(_, v) = run(
            r#"sort_desc(sum by (app) (count_over_time({app=~".+"}[1m])))"#,
            params(60, 60, 0),
        )
        .await
        else {
            panic!()
        };
        assert_eq!(v.iter().map(|x| x.1).collect::<Vec<_>>(), vec![4.0, 2.0]);
        let QueryResult::Vector(_, v) = run(
            r#"sort(sum by (app) (count_over_time({app=~".+"}[1m])))"#,
            params(60, 60, 0),
        )
        .await
        else {
            panic!()
        };
        assert_eq!(v.iter().map(|x| x.1).collect::<Vec<_>>(), vec![2.0, 4.0]);
        assert_eq!(
            run("1 + 2 * 3", params(60, 60, 0)).await,
            QueryResult::Scalar(60 * S, 7.0)
        );
        assert_eq!(
            run("2 ^ 3 ^ 2", params(60, 60, 0)).await,
            QueryResult::Scalar(60 * S, 512.0)
        );
    }

    #[tokio::test]
    async fn pipeline_errors_fail_metric_queries() {
        let e = evaluate(
            &data(),
            &parse(r#"count_over_time({app="api"} | json [1m])"#).unwrap(),
            &params(60, 60, 0),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("JSONParserErr"), "{e}");
        // Also under a vector aggregation that drops the label, as in Loki:
        // the range aggregation fails.
        let e = evaluate(
            &data(),
            &parse(r#"sum(count_over_time({app="api"} | json [1m]))"#).unwrap(),
            &params(60, 60, 0),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("pipeline error"), "{e}");
        // Filtering the errors out is the way to skip them.
        evaluate(
            &data(),
            &parse(r#"sum(count_over_time({app="api"} | json | __error__="" [1m]))"#).unwrap(),
            &params(60, 60, 0),
        )
        .await
        .expect("errors filtered");
    }
}
