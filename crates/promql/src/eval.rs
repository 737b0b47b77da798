//! The state a PromQL query's plan nodes share: the query context (steps,
//! limits, memory pool, the data source, annotations), operand values
//! (every vector-valued node yields, for each output series, one optional
//! value per evaluation step) and the query-level checks on them. What each
//! kind of node computes is in `ops` and `functions`; the run of a query is
//! in `query`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};

use promql_parser::parser::Expr;
use strata_model::{Labels, SeriesSamples};

use crate::exec::{
    MapFn, MapSteps, Operand, Operands, Prepared, QueryExec, Shape, StepValues, StoredSteps,
};
use crate::{EngineError, EngineOptions, Queryable};

/// Warnings and infos collected while evaluating one query, each once.
#[derive(Default)]
pub(crate) struct Annotations {
    pub(crate) warnings: BTreeSet<String>,
    pub(crate) infos: BTreeSet<String>,
}

/// An instant-vector series over all steps.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub labels: Labels,
    pub vals: Vec<Option<f64>>,
    /// The metric name is removed when the query result is produced
    /// (Prometheus 3 delayed name removal): until then it still tells
    /// series apart and can be grouped or matched on.
    pub drop_name: bool,
}

impl Series {
    /// A series that keeps its metric name.
    pub fn new(labels: Labels, vals: Vec<Option<f64>>) -> Self {
        Self {
            labels,
            vals,
            drop_name: false,
        }
    }

    /// A series whose metric name goes away in the result.
    pub fn dropping_name(labels: Labels, vals: Vec<Option<f64>>) -> Self {
        Self {
            labels,
            vals,
            drop_name: true,
        }
    }
}

/// The value of an operand or a result.
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
    String(String),
    /// Raw samples of a range selector (only as an instant query's result).
    Matrix(Vec<SeriesSamples>),
}

impl From<Val> for Prepared {
    /// A node's result computed in full while preparing: its rows are
    /// emitted from the stored values.
    fn from(val: Val) -> Self {
        match val {
            Val::Scalar(v) => Prepared::new(
                Arc::new(StoredSteps {
                    values: vec![v.into_iter().map(Some).collect()],
                }),
                Shape::Scalar,
            ),
            Val::Vector(series) => {
                let (series, values) = split_series(series);
                Prepared::new(Arc::new(StoredSteps { values }), Shape::series(series))
            }
            Val::String(s) => {
                Prepared::new(Arc::new(StoredSteps { values: vec![] }), Shape::String(s))
            }
            Val::Matrix(m) => {
                Prepared::new(Arc::new(StoredSteps { values: vec![] }), Shape::Matrix(m))
            }
        }
    }
}

impl From<Operand> for Val {
    /// An operand's rows with their labels again: the series with any value.
    fn from(op: Operand) -> Self {
        let Operand {
            values,
            shape,
            nsteps,
        } = op;
        match shape {
            Shape::Scalar => Val::Scalar(match values.into_iter().next().flatten() {
                Some(v) => v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect(),
                None => vec![f64::NAN; nsteps],
            }),
            Shape::Vector { series, order } => {
                let mut slots: Vec<Option<Series>> = series
                    .into_iter()
                    .zip(values)
                    .map(|((labels, drop_name), vals)| {
                        vals.map(|vals| Series {
                            labels,
                            vals,
                            drop_name,
                        })
                    })
                    .collect();
                Val::Vector(match order {
                    Some(order) => order
                        .into_iter()
                        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
                        .collect(),
                    None => slots.into_iter().flatten().collect(),
                })
            }
            Shape::String(s) => Val::String(s),
            Shape::Matrix(m) => Val::Matrix(m),
        }
    }
}

/// What one query shares across its plan nodes.
pub(crate) struct QueryState {
    pub opts: EngineOptions,
    pub q: Arc<dyn Queryable>,
    /// The query's own start and end, what `@ start()` and `@ end()` mean
    /// at any subquery depth.
    pub query_start: i64,
    pub query_end: i64,
    /// The query's step; 0 for an instant query.
    pub query_step: i64,
    /// Samples held by the whole query, subqueries included.
    samples: AtomicUsize,
    /// The most samples held at once.
    peak_samples: AtomicUsize,
    /// Series and samples the query's selections read from storage.
    fetched_series: AtomicUsize,
    fetched_samples: AtomicUsize,
    pub(crate) notes: Mutex<Annotations>,
    /// The query's DataFusion context, which runs its plan.
    pub exec: QueryExec,
    /// What the loaded samples hold of that pool.
    loaded: Mutex<MemoryReservation>,
    /// String literals of the query that are not UTF-8 in PromQL's decoding.
    pub invalid_utf8: HashSet<String>,
}

impl QueryState {
    /// Samples the query holds now, as counted against `max_samples`.
    #[cfg(test)]
    pub(crate) fn samples_held(&self) -> usize {
        self.samples.load(Ordering::Relaxed)
    }

    /// Counts what a selection read from storage.
    pub(crate) fn count_fetched(&self, series: usize, samples: usize) {
        self.fetched_series.fetch_add(series, Ordering::Relaxed);
        self.fetched_samples.fetch_add(samples, Ordering::Relaxed);
    }

    /// What the query read and held, for its statistics.
    pub(crate) fn stats(&self) -> crate::QueryStats {
        crate::QueryStats {
            series_fetched: self.fetched_series.load(Ordering::Relaxed),
            samples_fetched: self.fetched_samples.load(Ordering::Relaxed),
            peak_samples: self.peak_samples.load(Ordering::Relaxed),
        }
    }

    /// Releases what a selection was charged: `(samples, bytes)` from [`select`].
    pub(crate) fn release(&self, (samples, bytes): (usize, usize)) {
        self.samples.fetch_sub(samples, Ordering::Relaxed);
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shrink(bytes);
    }
}

/// Where a plan node evaluates: its steps (the query's, or a subquery's)
/// within the query.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub start: i64,
    pub step: i64,
    pub nsteps: usize,
    pub(crate) query: Arc<QueryState>,
}

impl Deref for Ctx {
    type Target = QueryState;

    fn deref(&self) -> &QueryState {
        &self.query
    }
}

impl Ctx {
    /// The context of a query over `(start, end, step)` (step 0: instant),
    /// with a DataFusion context of its own.
    pub fn for_query(
        opts: &EngineOptions,
        q: Arc<dyn Queryable>,
        (start, end, step): (i64, i64, i64),
        invalid_utf8: HashSet<String>,
    ) -> Result<Ctx, EngineError> {
        let nsteps = if step == 0 {
            1
        } else {
            ((end - start) / step) as usize + 1
        };
        let exec = QueryExec::new(opts.max_memory_bytes, opts.parallelism)?;
        let loaded =
            Mutex::new(MemoryConsumer::new("PromQL selected samples").register(exec.memory_pool()));
        Ok(Ctx {
            start,
            step: step.max(1),
            nsteps,
            query: Arc::new(QueryState {
                opts: opts.clone(),
                q,
                query_start: start,
                query_end: end,
                query_step: step,
                samples: AtomicUsize::new(0),
                peak_samples: AtomicUsize::new(0),
                fetched_series: AtomicUsize::new(0),
                fetched_samples: AtomicUsize::new(0),
                notes: Mutex::new(Annotations::default()),
                exec,
                loaded,
                invalid_utf8,
            }),
        })
    }

    /// A context evaluating at `start, start+step, ... <= end` within the same query.
    pub fn sub(&self, start: i64, end: i64, step: i64) -> Ctx {
        let nsteps = if end < start {
            0
        } else {
            ((end - start) / step) as usize + 1
        };
        Ctx {
            start,
            step,
            nsteps,
            query: self.query.clone(),
        }
    }

    /// Adds a `PromQL warning` annotation.
    pub fn warn(&self, msg: impl std::fmt::Display) {
        if let Ok(mut n) = self.notes.lock() {
            n.warnings.insert(format!("PromQL warning: {msg}"));
        }
    }

    /// Adds a `PromQL info` annotation.
    pub fn info(&self, msg: impl std::fmt::Display) {
        if let Ok(mut n) = self.notes.lock() {
            n.infos.insert(format!("PromQL info: {msg}"));
        }
    }

    /// Warns about a quantile parameter outside [0, 1] (the result is ±Inf or NaN).
    pub fn check_quantile(&self, q: &[f64]) {
        if let Some(bad) = q.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            self.warn(format_args!(
                "quantile value should be between 0 and 1, got {}",
                strata_model::format_float(*bad)
            ));
        }
    }

    /// Timestamp of step `i`.
    pub fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    /// Accounts for `n` more samples in memory; errors past the limit.
    pub fn charge(&self, n: usize) -> Result<(), EngineError> {
        let total = self.samples.fetch_add(n, Ordering::Relaxed) + n;
        self.peak_samples.fetch_max(total, Ordering::Relaxed);
        if total > self.opts.max_samples {
            return Err(EngineError::TooManySamples);
        }
        Ok(())
    }

    /// Charges `bytes` of loaded data to the query's memory pool.
    pub(crate) fn charge_memory(&self, bytes: usize) -> Result<(), EngineError> {
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_grow(bytes)
            .map_err(|e| self.exec.error(e))
    }

    /// `f` over every value of `series`, as the node's items; keeps the
    /// series left with a value, `drop_name` marking their names for removal.
    pub fn map(&self, series: Vec<Series>, drop_name: bool, f: MapFn) -> Prepared {
        let (series, values) = split_series(series);
        let series = series
            .into_iter()
            .map(|(labels, dropped)| (labels, dropped || drop_name))
            .collect();
        Prepared::new(Arc::new(MapSteps { values, f }), Shape::series(series))
    }
}

/// The values of a node's operands by position, as PromQL values.
pub(crate) struct Inputs(Operands);

impl Inputs {
    /// The operands of a node.
    pub fn new(operands: Operands) -> Self {
        Self(operands)
    }

    /// Operand `i` (the expression `e`).
    pub fn val(&mut self, i: usize, e: &Expr) -> Result<Val, EngineError> {
        self.0
            .take(i)
            .map(Val::from)
            .ok_or_else(|| EngineError::Execution(format!("operand {e} was not evaluated")))
    }

    /// Operand `i`, which must be a scalar (function and aggregation parameters).
    pub fn scalar(&mut self, i: usize, e: &Expr) -> Result<Vec<f64>, EngineError> {
        match self.val(i, e)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(EngineError::BadData(format!(
                "expected a scalar parameter, got {e}"
            ))),
        }
    }

    /// Operand `i`, which must be an instant vector.
    pub fn vector(&mut self, i: usize, e: &Expr) -> Result<Vec<Series>, EngineError> {
        match self.val(i, e)? {
            Val::Vector(v) => Ok(v),
            _ => Err(EngineError::BadData(format!(
                "expected an instant vector, got {e}"
            ))),
        }
    }

    /// Operand `i`, if it was evaluated (a subquery with no steps is not).
    pub fn try_val(&mut self, i: usize) -> Option<Val> {
        self.0.take(i).map(Val::from)
    }
}

/// Label set and name-removal mark of each series, and its per-step values.
type SeriesParts = (Vec<(Labels, bool)>, Vec<StepValues>);

/// Splits series into their label sets (with name-removal marks) and values.
pub(crate) fn split_series(series: Vec<Series>) -> SeriesParts {
    series
        .into_iter()
        .map(|s| ((s.labels, s.drop_name), s.vals))
        .unzip()
}

/// `e` without the parentheses around it.
pub(crate) fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Parses a duration parameter (`5m`, or a float number of seconds) into ms.
/// Longer than [`crate::MAX_DURATION_MS`] is refused.
pub fn parse_duration_param(s: &str) -> Result<i64, EngineError> {
    let invalid = || EngineError::BadData(format!("cannot parse {s:?} to a valid duration"));
    let ms = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() => (secs * 1000.0).round(),
        Ok(_) => return Err(invalid()),
        Err(_) => parse_duration(s).map_err(|_| invalid())?.as_millis() as f64,
    };
    if ms.abs() > crate::MAX_DURATION_MS as f64 {
        return Err(EngineError::BadData(format!(
            "duration {s:?} is longer than the supported 10,000 years"
        )));
    }
    Ok(ms as i64)
}

/// A Prometheus duration (`5m`, `1h30m`, or float seconds), at most 10,000
/// years. promql-parser's own function panics on a negative or huge float
/// (Duration::from_secs_f64), so floats are checked here first.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(format!("{s:?} is not a non-negative duration"));
        }
        if secs * 1000.0 > crate::MAX_DURATION_MS as f64 {
            return Err(format!(
                "duration {s:?} is longer than the supported 10,000 years"
            ));
        }
    }
    let d = promql_parser::util::duration::parse_duration(s)?;
    crate::bounds::duration_ms("duration", d).map_err(|e| e.to_string())?;
    Ok(d)
}

/// Applies delayed metric-name removal, then merges series that ended up
/// with equal label sets.
pub(crate) fn finalize_names(series: Vec<Series>) -> Result<Vec<Series>, EngineError> {
    dedup_labelsets(
        series
            .into_iter()
            .map(|mut s| {
                if s.drop_name {
                    s.labels = s.labels.without_metric_name();
                    s.drop_name = false;
                }
                s
            })
            .collect(),
    )
}

/// Merges series with equal label sets; two values at the same step are an
/// error, as in Prometheus.
pub(crate) fn dedup_labelsets(series: Vec<Series>) -> Result<Vec<Series>, EngineError> {
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    let mut pos: HashMap<Labels, usize> = HashMap::with_capacity(series.len());
    for s in series {
        match pos.get(&s.labels) {
            None => {
                pos.insert(s.labels.clone(), out.len());
                out.push(s);
            }
            Some(&i) => {
                let o = &mut out[i];
                for (a, b) in o.vals.iter_mut().zip(s.vals) {
                    if b.is_some() {
                        if a.is_some() {
                            return Err(EngineError::Execution(
                                "vector cannot contain metrics with the same labelset".into(),
                            ));
                        }
                        *a = b;
                    }
                }
            }
        }
    }
    Ok(out)
}

// ---------- aggregation ----------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_never_panic() {
        assert_eq!(
            parse_duration("5m"),
            Ok(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration("1.5"),
            Ok(std::time::Duration::from_millis(1500))
        );
        // promql-parser panics on these (found by fuzzing the ruler).
        for bad in ["-1", "-0.5", "1e20", "1e400", "NaN", "inf", "20000y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration_param("-1e400").is_err());
    }

    #[test]
    fn dedup_merges_disjoint_steps_and_rejects_overlap() {
        let l = Labels::from_pairs([("a", "1")]);
        let merged = dedup_labelsets(vec![
            Series::new(l.clone(), vec![Some(1.0), None]),
            Series::new(l.clone(), vec![None, Some(2.0)]),
        ])
        .unwrap();
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].vals, vec![Some(1.0), Some(2.0)]);
        assert!(
            dedup_labelsets(vec![
                Series::new(l.clone(), vec![Some(1.0)]),
                Series::new(l, vec![Some(2.0)]),
            ])
            .is_err()
        );
    }
}
