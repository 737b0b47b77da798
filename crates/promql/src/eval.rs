//! PromQL semantics of each plan node: what a node computes from its
//! operands' values (every vector-valued node yields, for each output
//! series, one optional value per evaluation step), and the query's run:
//! plan, execute on DataFusion, convert the root's output to an API value.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};

use promql_parser::parser::LabelModifier;
use promql_parser::parser::token::TokenType;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Expr, MatrixSelector, Offset, SubqueryExpr,
    VectorMatchCardinality, VectorSelector,
};
use strata_model::{
    Labels, METRIC_NAME, MatchOp, Matcher, Sample, SeriesSamples, is_stale_nan,
    selector_alternatives,
};

use crate::exec::{
    BinaryOp, BinarySteps, GroupFn, GroupSteps, KeepRule, MapFn, MapSteps, MaskSteps, MatchGroup,
    Operand, Operands, Prepared, QueryExec, RankSteps, ScalarFn, SeriesSteps, Shape, StepKernel,
    StepValues, StoredSteps,
};
use crate::{
    EngineError, EngineOptions, MatrixSeries, QueryOutput, Queryable, Value, VectorSample, plan,
};

/// Warnings and infos collected while evaluating one query, each once.
#[derive(Default)]
pub(crate) struct Annotations {
    warnings: BTreeSet<String>,
    infos: BTreeSet<String>,
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
    notes: Mutex<Annotations>,
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

    /// Releases what a selection was charged: `(samples, bytes)` from [`select`].
    fn release(&self, (samples, bytes): (usize, usize)) {
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
    query: Arc<QueryState>,
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
        if total > self.opts.max_samples {
            return Err(EngineError::TooManySamples);
        }
        Ok(())
    }

    /// Charges `bytes` of loaded data to the query's memory pool.
    fn charge_memory(&self, bytes: usize) -> Result<(), EngineError> {
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
fn split_series(series: Vec<Series>) -> SeriesParts {
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

/// Plans `expr` for every step, runs the plan on DataFusion and converts
/// its output to an API value.
pub(crate) async fn run(
    opts: &EngineOptions,
    q: Arc<dyn Queryable>,
    (expr, invalid_utf8): (&Expr, HashSet<String>),
    start: i64,
    end: i64,
    step: i64,
    instant: bool,
) -> Result<QueryOutput, EngineError> {
    let ctx = Ctx::for_query(opts, q, (start, end, step), invalid_utf8)?;
    let root = plan::plan(&ctx, expr)?;
    tracing::debug!(plan = %plan::display(&root), "PromQL plan");
    let val = match Val::from(root.run(ctx.exec.task()).await?) {
        Val::Vector(series) => Val::Vector(finalize_names(series)?),
        other => other,
    };
    let value = match val {
        Val::Scalar(v) if instant => Value::Scalar { t: start, v: v[0] },
        Val::Scalar(v) => Value::Matrix(vec![MatrixSeries {
            labels: Labels::default(),
            points: v.iter().enumerate().map(|(i, x)| (ctx.ts(i), *x)).collect(),
        }]),
        Val::String(s) => Value::String { t: start, s },
        Val::Vector(series) if instant => Value::Vector(
            series
                .into_iter()
                .filter_map(|s| {
                    s.vals[0].map(|v| VectorSample {
                        labels: s.labels,
                        t: start,
                        v,
                    })
                })
                .collect(),
        ),
        Val::Vector(series) => {
            let mut out: Vec<MatrixSeries> = series
                .into_iter()
                .map(|s| MatrixSeries {
                    points: s
                        .vals
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| (ctx.ts(i), v)))
                        .collect(),
                    labels: s.labels,
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(out)
        }
        Val::Matrix(m) => {
            let mut out: Vec<MatrixSeries> = m
                .into_iter()
                .map(|s| MatrixSeries {
                    labels: s.labels,
                    points: s.samples.iter().map(|x| (x.t, x.v)).collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(out)
        }
    };
    let notes = std::mem::take(&mut *ctx.notes.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(QueryOutput {
        value,
        warnings: notes.warnings.into_iter().collect(),
        infos: notes.infos.into_iter().collect(),
    })
}

/// `-x`: negated values, names marked for removal.
pub(crate) fn negate(v: Val) -> Result<Prepared, EngineError> {
    match v {
        Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect()).into()),
        Val::Vector(series) => Ok(Val::Vector(
            series
                .into_iter()
                .map(|s| {
                    Series::dropping_name(
                        s.labels,
                        s.vals.into_iter().map(|v| v.map(|x| -x)).collect(),
                    )
                })
                .collect(),
        )
        .into()),
        _ => Err(EngineError::BadData(
            "unary minus needs a scalar or vector".into(),
        )),
    }
}

/// A range selector as an instant query's result: its samples in the window.
pub(crate) async fn range_matrix(ctx: &Ctx, ms: &MatrixSelector) -> Result<Prepared, EngineError> {
    let (series, times) = fetch_range(ctx, ms).await?;
    let t = times[0];
    let range = ms.range.as_millis() as i64;
    Ok(Val::Matrix(
        series
            .into_iter()
            .map(|s| {
                let w = window(&s.samples, t, range);
                SeriesSamples {
                    labels: s.labels,
                    samples: w.to_vec(),
                }
            })
            .collect(),
    )
    .into())
}

/// A subquery as an instant query's result: its samples in the window.
pub(crate) fn subquery_matrix(
    ctx: &Ctx,
    sq: &SubqueryExpr,
    inner: Option<Val>,
) -> Result<Prepared, EngineError> {
    let ra = subquery_range(ctx, sq, inner)?;
    let t = ra.times[0];
    let SeriesInput::Samples(series) = ra.input else {
        return Err(EngineError::Execution("a subquery without samples".into()));
    };
    Ok(Val::Matrix(
        series
            .into_iter()
            .map(|s| SeriesSamples {
                samples: window(&s.samples, t, ra.range).to_vec(),
                labels: s.labels,
            })
            .collect(),
    )
    .into())
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

fn at_ms(ctx: &Ctx, at: &Option<AtModifier>) -> Option<i64> {
    match at {
        Some(AtModifier::Start) => Some(ctx.query_start),
        Some(AtModifier::End) => Some(ctx.query_end),
        Some(AtModifier::At(t)) => Some(crate::bounds::system_time_ms(*t)),
        None => None,
    }
}

/// The evaluation time of a selector at each step (after `@` and `offset`).
pub(crate) fn selector_times(ctx: &Ctx, vs: &VectorSelector) -> Vec<i64> {
    let off = offset_ms(&vs.offset);
    let at = at_ms(ctx, &vs.at);
    (0..ctx.nsteps)
        .map(|i| at.unwrap_or_else(|| ctx.ts(i)) - off)
        .collect()
}

/// Matcher alternatives of a selector, with the metric name as a matcher.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    let mut alts = selector_alternatives(&vs.matchers);
    if let Some(name) = &vs.name {
        for a in &mut alts {
            if !a.iter().any(|m| m.name == METRIC_NAME) {
                a.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
            }
        }
    }
    alts
}

/// Reads samples of the selector's series in `[min_t, max_t]`, charging
/// them to the query; also what was charged (`(samples, bytes)`).
async fn select(
    ctx: &Ctx,
    vs: &VectorSelector,
    min_t: i64,
    max_t: i64,
) -> Result<(Vec<SeriesSamples>, (usize, usize)), EngineError> {
    let alts = selector_matchers(vs);
    let mut out: Vec<SeriesSamples> = Vec::new();
    for (i, matchers) in alts.iter().enumerate() {
        let got = ctx.q.select(matchers, min_t, max_t).await?;
        if i == 0 {
            out = got;
        } else {
            for s in got {
                if !out.iter().any(|o| o.labels == s.labels) {
                    out.push(s);
                }
            }
        }
    }
    // In label order, as Prometheus's storage returns series: what decides
    // ties in `topk`/`bottomk` and the order of instant results.
    out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    let (samples, bytes) = loaded_size(&out);
    ctx.charge(samples)?;
    ctx.charge_memory(bytes)?;
    Ok((out, (samples, bytes)))
}

/// What loading a selection was charged, released when dropped.
struct Charge {
    query: Arc<QueryState>,
    loaded: (usize, usize),
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.query.release(self.loaded);
    }
}

/// Samples and bytes (charged to the memory pool) that selected series hold.
fn loaded_size(series: &[SeriesSamples]) -> (usize, usize) {
    series.iter().fold((0, 0), |(samples, bytes), s| {
        let labels: usize = s
            .labels
            .iter()
            .map(|l| l.name.len() + l.value.len() + 48)
            .sum();
        (
            samples + s.samples.len(),
            bytes + s.samples.len() * std::mem::size_of::<Sample>() + labels,
        )
    })
}

/// [`select`], without stale markers when `drop_stale` (range selectors).
async fn select_samples(
    ctx: &Ctx,
    vs: &VectorSelector,
    (min_t, max_t): (i64, i64),
    drop_stale: bool,
) -> Result<(Vec<SeriesSamples>, (usize, usize)), EngineError> {
    let (mut data, charged) = select(ctx, vs, min_t, max_t).await?;
    if drop_stale {
        for s in &mut data {
            s.samples.retain(|x| !is_stale_nan(x.v));
        }
    }
    Ok((data, charged))
}

/// Where a node's series come from.
pub(crate) enum SeriesInput<'e> {
    /// A selector, read by the node (in time slices when its steps span
    /// long); `range`: a range selector, whose stale markers are dropped.
    Selector { vs: &'e VectorSelector, range: bool },
    /// Samples already in memory (a subquery's).
    Samples(Vec<SeriesSamples>),
}

/// Sees each batch of selected series with the times they are evaluated
/// at (for annotations).
pub(crate) type Inspect<'a> = &'a (dyn Fn(&[SeriesSamples], &[i64]) + Sync);

/// `kernel` at `times` over every series of `input`, names marked for
/// removal when `drop_name`.
///
/// A selector whose steps and window span longer than the engine's
/// selection slice is read one slice of steps at a time: each slice's
/// samples are selected, evaluated (as a plan of their own, on every
/// partition) and released (from `max_samples` and the memory pool) before
/// the next slice is read, so a long range holds one slice's samples rather
/// than all of them. A selection in one piece is released once the node's
/// output has been read and its samples dropped.
pub(crate) async fn evaluate_series(
    ctx: &Ctx,
    input: SeriesInput<'_>,
    times: Vec<i64>,
    kernel: StepKernel,
    drop_name: bool,
    inspect: Inspect<'_>,
) -> Result<Prepared, EngineError> {
    let reach = kernel.reach();
    let (vs, drop_stale) = match input {
        SeriesInput::Samples(data) => {
            inspect(&data, &times);
            ctx.charge(data.len() * times.len())?;
            return Ok(SeriesSteps::prepared(
                data,
                drop_name,
                (times, kernel),
                None,
            ));
        }
        SeriesInput::Selector { vs, range } => (vs, range),
    };
    let slices = time_slices(&times, reach, ctx.opts.selection_slice.as_millis() as i64);
    if slices.len() == 1 {
        let (lo, hi) = bounds(&times);
        let (data, loaded) = select_samples(ctx, vs, (lo - reach + 1, hi), drop_stale).await?;
        inspect(&data, &times);
        ctx.charge(data.len() * times.len())?;
        // Released once the node's output has been read and its samples dropped.
        let charge = Charge {
            query: ctx.query.clone(),
            loaded,
        };
        return Ok(SeriesSteps::prepared(
            data,
            drop_name,
            (times, kernel),
            Some(Box::new(charge)),
        ));
    }
    let nsteps = times.len();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut series: Vec<(Labels, StepValues)> = Vec::new();
    for (a, b) in slices {
        let part = &times[a..b];
        let (lo, hi) = bounds(part);
        let (data, loaded) = select_samples(ctx, vs, (lo - reach + 1, hi), drop_stale).await?;
        inspect(&data, part);
        let (labels, samples): (Vec<Labels>, Vec<Vec<Sample>>) =
            data.into_iter().map(|s| (s.labels, s.samples)).unzip();
        let source = SeriesSteps {
            samples,
            times: part.to_vec(),
            kernel: kernel.clone(),
            first_step: a,
            // Released when the slice's plan is done with the samples.
            _charge: Some(Box::new(Charge {
                query: ctx.query.clone(),
                loaded,
            })),
        };
        let values = ctx.exec.run_source(Arc::new(source), b - a).await?;
        for (labels, v) in labels.into_iter().zip(values) {
            let Some(v) = v else { continue };
            let i = match index.get(&labels) {
                Some(&i) => i,
                None => {
                    ctx.charge(nsteps)?;
                    index.insert(labels.clone(), series.len());
                    series.push((labels, vec![None; nsteps]));
                    series.len() - 1
                }
            };
            series[i].1[a..b].copy_from_slice(&v);
        }
    }
    // Label order, as a selection in one piece has.
    series.sort_unstable_by(|x, y| x.0.cmp(&y.0));
    let (labels, values): (Vec<(Labels, bool)>, Vec<StepValues>) = series
        .into_iter()
        .map(|(labels, v)| ((labels, drop_name), v))
        .unzip();
    Ok(Prepared::new(
        Arc::new(StoredSteps { values }),
        Shape::series(labels),
    ))
}

/// Consecutive step ranges `[a, b)` of `times` (evenly spaced) whose
/// samples, `reach` back from each step, span at most `slice` ms; one range
/// when everything fits (or `slice` is 0). A slice covers at least `reach`
/// worth of steps, so overlapping windows read samples at most twice.
fn time_slices(times: &[i64], reach: i64, slice: i64) -> Vec<(usize, usize)> {
    let n = times.len();
    let (lo, hi) = bounds(times);
    if slice <= 0 || n <= 1 || hi - lo + reach <= slice {
        return vec![(0, n)];
    }
    let step = ((hi - lo) / (n as i64 - 1)).max(1);
    let window_steps = (reach + step - 1) / step;
    let per = ((slice - reach) / step + 1).max(window_steps).max(1) as usize;
    (0..n).step_by(per).map(|a| (a, (a + per).min(n))).collect()
}

/// An instant selector: per series, the value of the latest sample within
/// the lookback delta at each step, or (`timestamp`) its time in seconds,
/// the name then marked for removal.
pub(crate) async fn instant_selector(
    ctx: &Ctx,
    vs: &VectorSelector,
    timestamp: bool,
) -> Result<Prepared, EngineError> {
    let times = selector_times(ctx, vs);
    let kernel = StepKernel::Lookback {
        lookback: ctx.opts.lookback_delta.as_millis() as i64,
        timestamp,
    };
    let input = SeriesInput::Selector { vs, range: false };
    evaluate_series(ctx, input, times, kernel, timestamp, &|_, _| {}).await
}

fn bounds(times: &[i64]) -> (i64, i64) {
    times
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)))
}

/// Raw samples of a range selector (stale markers removed) and the
/// evaluation time of each step.
pub(crate) async fn fetch_range(
    ctx: &Ctx,
    ms: &MatrixSelector,
) -> Result<(Vec<SeriesSamples>, Vec<i64>), EngineError> {
    let times = selector_times(ctx, &ms.vs);
    let range = ms.range.as_millis() as i64;
    let (lo, hi) = bounds(&times);
    let (data, _) = select_samples(ctx, &ms.vs, (lo - range + 1, hi), true).await?;
    Ok((data, times))
}

/// The input of a range function: its series, the window end at each
/// step, and the window length. Comes from a range selector or a subquery.
pub(crate) struct RangeInput<'e> {
    pub input: SeriesInput<'e>,
    pub times: Vec<i64>,
    pub range: i64,
    /// The selector, when the input is a plain range selector (for `absent_over_time`).
    pub selector: Option<&'e VectorSelector>,
}

/// A range-valued argument `e` (operand `i`): a range selector, read
/// here, or a subquery, whose inner expression the node's child evaluated
/// (parentheses allowed around either).
pub(crate) async fn range_input<'e>(
    ctx: &Ctx,
    (i, e): (usize, &'e Expr),
    inputs: &mut Inputs,
    f: &str,
) -> Result<RangeInput<'e>, EngineError> {
    match unparen(e) {
        Expr::MatrixSelector(ms) => Ok(RangeInput {
            input: SeriesInput::Selector {
                vs: &ms.vs,
                range: true,
            },
            times: selector_times(ctx, &ms.vs),
            range: ms.range.as_millis() as i64,
            selector: Some(&ms.vs),
        }),
        Expr::Subquery(sq) => subquery_range(ctx, sq, inputs.try_val(i)),
        other => Err(EngineError::BadData(format!(
            "expected a range vector as argument of {f}(), got {other}"
        ))),
    }
}

/// Where a subquery's inner expression evaluates, as Prometheus does it: at
/// absolute multiples of the subquery step, from the first one after the
/// earliest window start to the latest window end. Also the window end at
/// each of the outer steps, and the window length.
pub(crate) fn subquery_steps(
    ctx: &Ctx,
    sq: &SubqueryExpr,
) -> Result<(Ctx, Vec<i64>, i64), EngineError> {
    let step = sq
        .step
        .map(|d| d.as_millis() as i64)
        .unwrap_or(ctx.opts.default_subquery_step.as_millis() as i64);
    if step <= 0 {
        return Err(EngineError::BadData(
            "subquery step must be positive".into(),
        ));
    }
    let range = sq.range.as_millis() as i64;
    let off = offset_ms(&sq.offset);
    let at = at_ms(ctx, &sq.at);
    let times: Vec<i64> = (0..ctx.nsteps)
        .map(|i| at.unwrap_or_else(|| ctx.ts(i)) - off)
        .collect();
    let (lo, hi) = bounds(&times);
    let first = lo - range;
    let mut start = step * first.div_euclid(step);
    if start <= first {
        start += step;
    }
    // Times and durations were range-checked, so this cannot overflow; the
    // count is refused before any step is allocated.
    let steps = if hi < start {
        0
    } else {
        (hi - start) / step + 1
    };
    let limit = ctx.opts.max_subquery_steps;
    if steps > limit as i64 {
        return Err(EngineError::Execution(format!(
            "subquery {sq} would evaluate its inner expression at {steps} steps, more than the limit of {limit} (-querier.max-subquery-steps): use a larger subquery step or a shorter range"
        )));
    }
    Ok((ctx.sub(start, hi, step), times, range))
}

/// A subquery's samples: each inner step's value becomes a sample at that
/// time. `inner` is the inner expression's value (none when it has no steps).
pub(crate) fn subquery_range(
    ctx: &Ctx,
    sq: &SubqueryExpr,
    inner_val: Option<Val>,
) -> Result<RangeInput<'static>, EngineError> {
    let (inner, times, range) = subquery_steps(ctx, sq)?;
    let series = match inner_val {
        None => Vec::new(),
        Some(Val::Vector(v)) => finalize_names(v)?
            .into_iter()
            .map(|s| SeriesSamples {
                samples: s
                    .vals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| Sample { t: inner.ts(i), v }))
                    .collect(),
                labels: s.labels,
            })
            .filter(|s| !s.samples.is_empty())
            .collect(),
        Some(_) => {
            return Err(EngineError::BadData(format!(
                "subquery is only allowed on instant vector, got {}",
                sq.expr
            )));
        }
    };
    Ok(RangeInput {
        input: SeriesInput::Samples(series),
        times,
        range,
        selector: None,
    })
}

/// Samples in the left-open window `(t - range, t]`.
pub(crate) fn window(samples: &[Sample], t: i64, range: i64) -> &[Sample] {
    let lo = samples.partition_point(|x| x.t <= t - range);
    let hi = samples.partition_point(|x| x.t <= t);
    &samples[lo..hi.max(lo)]
}

/// Applies delayed metric-name removal, then merges series that ended up
/// with equal label sets.
fn finalize_names(series: Vec<Series>) -> Result<Vec<Series>, EngineError> {
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

fn grouping_labels(labels: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        None => Labels::default(),
        Some(LabelModifier::Include(ls)) => labels.filter_names(&ls.labels, true),
        Some(LabelModifier::Exclude(ls)) => {
            labels.filter_names(&ls.labels, false).without_metric_name()
        }
    }
}

pub(crate) use strata_model::stats::{kahan_inc, quantile};

/// Operand positions of an aggregation: its parameter, its input.
pub(crate) const AGG_PARAM: usize = 0;
pub(crate) const AGG_INPUT: usize = 1;

/// Whether an aggregation's parameter is a value to evaluate (not a label name).
pub(crate) fn evaluates_param(agg: &AggregateExpr) -> bool {
    matches!(agg.op.to_string().as_str(), "topk" | "bottomk" | "quantile")
}

/// An aggregation over its evaluated input (and parameter).
pub(crate) fn aggregate(
    ctx: &Ctx,
    agg: &AggregateExpr,
    inputs: &mut Inputs,
) -> Result<Prepared, EngineError> {
    let op = agg.op.to_string();
    let param = match (&agg.param, op.as_str()) {
        (Some(p), "topk" | "bottomk" | "quantile") => Some(inputs.scalar(AGG_PARAM, p)?),
        (Some(p), "count_values") => {
            let Expr::StringLiteral(label) = unparen(p) else {
                return Err(EngineError::BadData(format!(
                    "count_values needs a string parameter, got {p}"
                )));
            };
            return count_values(ctx, agg, &label.val, inputs);
        }
        (Some(_), other) => {
            return Err(EngineError::Unsupported(format!(
                "aggregation {other} with a parameter"
            )));
        }
        (None, _) => None,
    };
    if op == "quantile"
        && let Some(q) = &param
    {
        ctx.check_quantile(q);
    }
    let input = inputs.vector(AGG_INPUT, &agg.expr)?;
    let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<Labels, usize> = HashMap::new();
    for (i, s) in input.iter().enumerate() {
        let key = grouping_labels(&s.labels, &agg.modifier);
        let g = *group_of.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let n = ctx.nsteps;
    match op.as_str() {
        "topk" | "bottomk" => {
            let ks = param.unwrap_or_default();
            if ks.iter().any(|k| k.is_nan()) {
                return Err(EngineError::Execution("Parameter value is NaN".into()));
            }
            let members: Vec<Vec<usize>> = groups.into_iter().map(|(_, m)| m).collect();
            let (series, values) = split_series(input);
            let rank = RankSteps {
                values,
                groups: members,
                ks,
                largest: op == "topk",
            };
            // Instant results list the selection best first, as Prometheus does.
            let order = (n == 1).then(|| {
                (0..rank.groups.len())
                    .flat_map(|g| rank.select(g, 0).into_iter().map(|(i, _)| i))
                    .collect()
            });
            Ok(Prepared::new(
                Arc::new(rank),
                Shape::Vector { series, order },
            ))
        }
        "sum" | "avg" | "min" | "max" | "count" | "group" | "stddev" | "stdvar" | "quantile" => {
            // The group's name is dropped later if any member's would be.
            let (series, groups): (Vec<(Labels, bool)>, Vec<Vec<usize>>) = groups
                .into_iter()
                .map(|(key, members)| {
                    let drop_name = members.iter().any(|&i| input[i].drop_name);
                    ((key, drop_name), members)
                })
                .unzip();
            let values: Vec<StepValues> = input.into_iter().map(|s| s.vals).collect();
            let f = group_fn(&op, param.unwrap_or_default());
            let source = GroupSteps {
                values,
                groups,
                nsteps: n,
                f,
            };
            Ok(Prepared::new(Arc::new(source), Shape::series(series)))
        }
        other => Err(EngineError::Unsupported(format!("aggregation {other}"))),
    }
}

/// The aggregation `op` of a group's present values at one step; `param`
/// is `quantile`'s parameter per step.
fn group_fn(op: &str, param: Vec<f64>) -> GroupFn {
    match op {
        "sum" => Arc::new(|v: &mut Vec<f64>, _| kahan_sum(v)),
        "avg" => Arc::new(|v: &mut Vec<f64>, _| mean(v)),
        "count" => Arc::new(|v: &mut Vec<f64>, _| v.len() as f64),
        "group" => Arc::new(|_: &mut Vec<f64>, _| 1.0),
        "min" => Arc::new(|v: &mut Vec<f64>, _| {
            v.iter()
                .copied()
                .fold(f64::NAN, |m, x| if x < m || m.is_nan() { x } else { m })
        }),
        "max" => Arc::new(|v: &mut Vec<f64>, _| {
            v.iter()
                .copied()
                .fold(f64::NAN, |m, x| if x > m || m.is_nan() { x } else { m })
        }),
        "stdvar" => Arc::new(|v: &mut Vec<f64>, _| variance(v)),
        "stddev" => Arc::new(|v: &mut Vec<f64>, _| variance(v).sqrt()),
        _ => Arc::new(move |v: &mut Vec<f64>, step| {
            quantile(param.get(step).copied().unwrap_or(f64::NAN), v)
        }),
    }
}

/// `count_values("label", v)`: per group and step, how many series have
/// each value, the value (formatted as Prometheus does) in `label`.
fn count_values(
    ctx: &Ctx,
    agg: &AggregateExpr,
    label: &str,
    inputs: &mut Inputs,
) -> Result<Prepared, EngineError> {
    if label.is_empty() {
        return Err(EngineError::BadData(format!(
            "invalid label name {label:?}"
        )));
    }
    let input = inputs.vector(AGG_INPUT, &agg.expr)?;
    let mut out: Vec<Series> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in &input {
        let base = grouping_labels(&s.labels, &agg.modifier);
        for (step, v) in s.vals.iter().enumerate() {
            let Some(v) = v else { continue };
            let mut key = base.clone();
            key.set(label, &strata_model::format_float(*v));
            let i = *index.entry(key.clone()).or_insert_with(|| {
                out.push(Series::new(key, vec![None; ctx.nsteps]));
                out.len() - 1
            });
            let slot = &mut out[i].vals[step];
            *slot = Some(slot.unwrap_or(0.0) + 1.0);
        }
    }
    Ok(Val::Vector(out).into())
}

pub(crate) fn kahan_sum(v: &[f64]) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for &x in v {
        (s, c) = kahan_inc(x, s, c);
    }
    if s.is_infinite() { s } else { s + c }
}

/// Arithmetic mean; falls back to summing `x / n` when the plain sum
/// overflows although every input is finite.
pub(crate) fn mean(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let sum = kahan_sum(v);
    if sum.is_infinite() && v.iter().all(|x| x.is_finite()) {
        let scaled: Vec<f64> = v.iter().map(|x| x / n).collect();
        return kahan_sum(&scaled);
    }
    sum / n
}

/// Population variance by Welford's method.
pub(crate) fn variance(v: &[f64]) -> f64 {
    let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for &x in v {
        n += 1.0;
        let d = x - mean;
        mean += d / n;
        m2 += d * (x - mean);
    }
    m2 / n
}

// ---------- binary operators ----------

fn is_comparison(op: TokenType) -> bool {
    op.is_comparison_operator()
}

/// The arithmetic or comparison operator `op` as a function, resolved once
/// per operation rather than per value.
fn scalar_fn(op: &str) -> Result<ScalarFn, EngineError> {
    Ok(match op {
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
        other => return Err(EngineError::Unsupported(format!("binary operator {other}"))),
    })
}

/// A binary operator over its evaluated operands (left: 0, right: 1).
pub(crate) fn binary(
    ctx: &Ctx,
    b: &BinaryExpr,
    inputs: &mut Inputs,
) -> Result<Prepared, EngineError> {
    let op = b.op.to_string();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = inputs.val(0, &b.lhs)?;
    let rhs = inputs.val(1, &b.rhs)?;
    let comparison = is_comparison(b.op);
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let f = scalar_fn(&op)?;
            let mut out = Vec::with_capacity(l.len());
            for (x, y) in l.into_iter().zip(r) {
                let (v, keep) = f(x, y);
                out.push(if comparison {
                    if keep { 1.0 } else { 0.0 }
                } else {
                    v
                });
            }
            Ok(Val::Scalar(out).into())
        }
        (Val::Vector(v), Val::Scalar(s)) => {
            vector_scalar(ctx, &op, comparison, return_bool, v, s, false)
        }
        (Val::Scalar(s), Val::Vector(v)) => {
            vector_scalar(ctx, &op, comparison, return_bool, v, s, true)
        }
        (Val::Vector(l), Val::Vector(r)) => {
            if matches!(op.as_str(), "and" | "or" | "unless") {
                return Ok(set_op(ctx, &op, b, l, r));
            }
            vector_vector(ctx, &op, comparison, return_bool, b, l, r)
        }
        _ => Err(EngineError::BadData(format!(
            "binary operator {op} needs scalar or instant vector operands"
        ))),
    }
}

fn vector_scalar(
    ctx: &Ctx,
    op: &str,
    comparison: bool,
    return_bool: bool,
    v: Vec<Series>,
    s: Vec<f64>,
    scalar_left: bool,
) -> Result<Prepared, EngineError> {
    let op = scalar_fn(op)?;
    let f: MapFn = Arc::new(move |x, step| {
        let (l, r) = if scalar_left {
            (s[step], x)
        } else {
            (x, s[step])
        };
        let (mut val, keep) = op(l, r);
        if comparison && scalar_left {
            val = x;
        }
        match (comparison, return_bool) {
            (true, true) => Some(f64::from(u8::from(keep))),
            (true, false) => keep.then_some(val),
            _ => Some(val),
        }
    });
    let drop_name = !comparison || return_bool;
    Ok(ctx.map(v, drop_name, f))
}

/// The matching signature of a series under the operator's on/ignoring modifier.
fn signature(labels: &Labels, b: &BinaryExpr) -> Labels {
    match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
        Some(LabelModifier::Include(ls)) => labels.filter_names(&ls.labels, true),
        Some(LabelModifier::Exclude(ls)) => {
            labels.filter_names(&ls.labels, false).without_metric_name()
        }
        None => labels.without_metric_name(),
    }
}

/// `and`, `or`, `unless`: the series of one side kept at the steps where
/// the other side has (or lacks) a series of the same signature.
fn set_op(ctx: &Ctx, op: &str, b: &BinaryExpr, l: Vec<Series>, r: Vec<Series>) -> Prepared {
    let n = ctx.nsteps;
    // Per signature, the steps at which a side has any sample.
    let presence = |side: &[Series], masks: &mut Vec<Vec<bool>>| {
        let mut index: HashMap<Labels, usize> = HashMap::new();
        for s in side {
            let m = *index.entry(signature(&s.labels, b)).or_insert_with(|| {
                masks.push(vec![false; n]);
                masks.len() - 1
            });
            for (i, v) in s.vals.iter().enumerate() {
                masks[m][i] |= v.is_some();
            }
        }
        index
    };
    let mut masks: Vec<Vec<bool>> = Vec::new();
    let mut rules: Vec<KeepRule> = Vec::with_capacity(l.len() + r.len());
    let series: Vec<Series> = match op {
        "and" | "unless" => {
            let rp = presence(&r, &mut masks);
            let want = op == "and";
            rules.extend(
                l.iter()
                    .map(|s| Some((rp.get(&signature(&s.labels, b)).copied(), want))),
            );
            l
        }
        _ => {
            let lp = presence(&l, &mut masks);
            rules.extend(l.iter().map(|_| None));
            rules.extend(
                r.iter()
                    .map(|s| Some((lp.get(&signature(&s.labels, b)).copied(), false))),
            );
            l.into_iter().chain(r).collect()
        }
    };
    let (series, values) = split_series(series);
    let source = MaskSteps {
        values,
        masks,
        rules,
    };
    Prepared::new(Arc::new(source), Shape::series(series))
}

fn vector_vector(
    ctx: &Ctx,
    op: &str,
    comparison: bool,
    return_bool: bool,
    b: &BinaryExpr,
    l: Vec<Series>,
    r: Vec<Series>,
) -> Result<Prepared, EngineError> {
    let card = b
        .modifier
        .as_ref()
        .map(|m| m.card.clone())
        .unwrap_or(VectorMatchCardinality::OneToOne);
    let (include, one_to_many) = match &card {
        VectorMatchCardinality::ManyToOne(ls) => (ls.labels.clone(), false),
        VectorMatchCardinality::OneToMany(ls) => (ls.labels.clone(), true),
        VectorMatchCardinality::OneToOne => (Vec::new(), false),
        VectorMatchCardinality::ManyToMany => {
            return Err(EngineError::BadData(
                "many-to-many matching is only for set operators".into(),
            ));
        }
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let f = scalar_fn(op)?;
    // "many" side first; for one-to-one, the lhs.
    let (many, one) = if one_to_many { (r, l) } else { (l, r) };
    let drop_name = !comparison || return_bool;
    let on = b
        .modifier
        .as_ref()
        .and_then(|m| m.matching.as_ref())
        .map(|m| (m.is_include(), m.labels().labels.clone()));

    let mut one_by_sig: HashMap<Labels, Vec<usize>> = HashMap::new();
    for (i, s) in one.iter().enumerate() {
        one_by_sig
            .entry(signature(&s.labels, b))
            .or_default()
            .push(i);
    }
    // Match groups: the "many" series of each signature that has "one"
    // series, in order of their first "many" series.
    let mut groups: Vec<MatchGroup> = Vec::new();
    let mut group_of: HashMap<Labels, usize> = HashMap::new();
    for (mi, ms) in many.iter().enumerate() {
        let sig = signature(&ms.labels, b);
        let Some(candidates) = one_by_sig.get(&sig) else {
            continue;
        };
        let g = *group_of.entry(sig.clone()).or_insert_with(|| {
            groups.push(MatchGroup {
                sig,
                many: Vec::new(),
                one: candidates.clone(),
                outputs: Vec::new(),
            });
            groups.len() - 1
        });
        groups[g].many.push(mi);
    }
    // Signatures with several "one" series but no "many" series: two of
    // them present at a step where the other side has any series is still
    // Prometheus's many-to-many error.
    for s in &one {
        let sig = signature(&s.labels, b);
        if let Some(candidates) = one_by_sig.get(&sig)
            && candidates.len() > 1
            && !group_of.contains_key(&sig)
        {
            group_of.insert(sig.clone(), groups.len());
            groups.push(MatchGroup {
                sig,
                many: Vec::new(),
                one: candidates.clone(),
                outputs: Vec::new(),
            });
        }
    }
    // The output series of every pair that can match: the "many" side's
    // labels (only the `on` labels for one-to-one), plus the `group_x`
    // labels copied from the "one" side.
    let mut outputs: Vec<(Labels, bool)> = Vec::new();
    let mut output_of: HashMap<Labels, usize> = HashMap::new();
    for group in &mut groups {
        for &mi in &group.many {
            let ms = &many[mi];
            for &oi in &group.one {
                let mut labels = ms.labels.clone();
                if one_to_one {
                    if let Some((is_on, names)) = &on {
                        labels = labels.filter_names(names, *is_on);
                    }
                } else {
                    for name in &include {
                        labels.set(name, one[oi].labels.get(name).unwrap_or(""));
                    }
                }
                let drop = drop_name || ms.drop_name;
                let id = *output_of.entry(labels.clone()).or_insert_with(|| {
                    outputs.push((labels, drop));
                    outputs.len() - 1
                });
                group.outputs.push(id);
            }
        }
    }
    let op = BinaryOp {
        f,
        comparison,
        return_bool,
        one_to_many,
        one_to_one,
    };
    let many_present = (0..ctx.nsteps)
        .map(|step| many.iter().any(|s| s.vals[step].is_some()))
        .collect();
    let source = BinarySteps {
        many_present,
        many: many.into_iter().map(|s| s.vals).collect(),
        one: one.into_iter().map(|s| s.vals).collect(),
        groups,
        outputs: outputs.len(),
        nsteps: ctx.nsteps,
        op,
    };
    Ok(Prepared::new(Arc::new(source), Shape::series(outputs)))
}

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
    fn windows_are_left_open() {
        let samples: Vec<Sample> = (0..5)
            .map(|i| Sample {
                t: i * 10,
                v: i as f64,
            })
            .collect();
        let w = window(&samples, 40, 20);
        assert_eq!(w.iter().map(|s| s.t).collect::<Vec<_>>(), vec![30, 40]);
        assert!(window(&samples, 5, 5).is_empty());
    }

    #[test]
    fn long_selections_split_into_slices_of_at_least_one_window() {
        let minute = 60_000;
        let times: Vec<i64> = (0..60).map(|i| i * minute).collect();
        // Everything fits, or splitting is off: one slice.
        assert_eq!(
            time_slices(&times, 5 * minute, 2 * 3_600_000),
            vec![(0, 60)]
        );
        assert_eq!(time_slices(&times, 5 * minute, 0), vec![(0, 60)]);
        // 20m slices with a 5m window: 16 steps each (15m of steps + 5m).
        let slices = time_slices(&times, 5 * minute, 20 * minute);
        assert_eq!(slices, vec![(0, 16), (16, 32), (32, 48), (48, 60)]);
        // A window longer than the slice: slices of one window's worth.
        let slices = time_slices(&times, 30 * minute, 20 * minute);
        assert_eq!(slices, vec![(0, 30), (30, 60)]);
        // `@` pins every step to one time: one slice.
        assert_eq!(time_slices(&[7; 60], 5 * minute, minute), vec![(0, 60)]);
    }

    #[test]
    fn mean_survives_overflow_and_kahan_is_exact() {
        let big = f64::MAX / 2.0;
        assert_eq!(mean(&[big, big, big, big]), big);
        assert_eq!(mean(&[-big, -big, big, big]), 0.0);
        assert_eq!(kahan_sum(&[1e100, 1.0, -1e100]), 1.0);
        assert!((variance(&[1.0, 2.0, 3.0, 4.0]) - 1.25).abs() < 1e-12);
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
