//! PromQL evaluation with Prometheus 3 semantics, on DataFusion.
//!
//! Queries are parsed with `promql-parser` and planned into a tree of
//! DataFusion execution plan nodes, one per operation (`plan`), which
//! DataFusion runs, each node's items in parallel partitions within the
//! query's own memory pool (`exec`). Every node is evaluated over all
//! steps of a range at once (an instant query is a range of one step):
//! every vector-valued node produces, per output series, one optional value
//! per step. Selectors read raw samples through [`Queryable`] (the querier
//! merges head and Parquet blocks behind it), then lookback, staleness,
//! `offset` and `@` are applied per step; range functions slide a left-open
//! window over each series (`eval`, `functions`).
//!
//! Features not implemented yet are refused with [`EngineError::Unsupported`]
//! (HTTP 422) instead of being evaluated wrongly.

mod bounds;
mod eval;
mod exec;
mod functions;
mod histogram;
pub mod json;
mod literals;
mod ops;
mod plan;
mod query;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_model::{Labels, Matcher, SeriesSamples, StepWindows};

pub use bounds::{MAX_DURATION_MS, MAX_TIME_MS, MIN_TIME_MS, check_instant_subqueries, check_time};
pub use eval::{parse_duration, parse_duration_param};

/// Read access to stored series for one tenant.
#[async_trait]
pub trait Queryable: Send + Sync {
    /// Samples with `min_t <= t <= max_t` of every series matching all
    /// `matchers`, each series once, samples time-ordered.
    async fn select(
        &self,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<Vec<SeriesSamples>, EngineError>;

    /// [`Queryable::select`] for steps that read only `windows` of the
    /// range: samples outside every window may be left out (storage that
    /// can drops them before they are decoded or sent). By default the
    /// whole range is selected and the rest dropped here.
    async fn select_windows(
        &self,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
        windows: StepWindows,
    ) -> Result<Vec<SeriesSamples>, EngineError> {
        let mut got = self.select(matchers, min_t, max_t).await?;
        for s in &mut got {
            windows.retain(&mut s.samples);
        }
        Ok(got)
    }
}

/// Query errors, each mapping to a Prometheus API error type.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The query does not parse or is not valid PromQL (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// Valid PromQL this engine does not implement yet (`execution`, 422).
    #[error("not supported by Strata yet: {0}")]
    Unsupported(String),
    /// Evaluation failed on the data (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    /// The query loaded more samples than allowed (`execution`, 422).
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The query's memory pool refused an allocation (`execution`, 422).
    #[error(
        "the query exceeded the maximum allowed estimated amount of memory consumed by a single query (limit: {0} bytes)"
    )]
    TooMuchMemory(usize),
    /// The query ran longer than the timeout (`timeout`, 503).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// Reading storage failed (`internal`, 500).
    #[error("storage: {0}")]
    Storage(String),
}

impl EngineError {
    /// Prometheus API `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadData(_) => "bad_data",
            Self::Unsupported(_)
            | Self::Execution(_)
            | Self::TooManySamples
            | Self::TooMuchMemory(_) => "execution",
            Self::Timeout(_) => "timeout",
            Self::Storage(_) => "internal",
        }
    }

    /// HTTP status Prometheus uses for this error type.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadData(_) => 400,
            Self::Unsupported(_)
            | Self::Execution(_)
            | Self::TooManySamples
            | Self::TooMuchMemory(_) => 422,
            Self::Timeout(_) => 503,
            Self::Storage(_) => 500,
        }
    }
}

/// A float sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A series of a range result.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// A query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, s: String },
    Vector(Vec<VectorSample>),
    Matrix(Vec<MatrixSeries>),
}

impl Value {
    /// Prometheus API `resultType`.
    pub fn result_type(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A query's result and the annotations Prometheus returns beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    pub value: Value,
    /// `PromQL warning: ...`: the result may be wrong or incomplete.
    pub warnings: Vec<String>,
    /// `PromQL info: ...`: the query may not do what its author meant.
    pub infos: Vec<String>,
    /// What evaluating it read and held.
    pub stats: QueryStats,
}

/// What a query read from storage and held in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Series its selections returned (a series selected twice counts twice).
    pub series_fetched: usize,
    /// Samples of those series (Prometheus's `totalQueryableSamples` counts
    /// the samples each step reads instead).
    pub samples_fetched: usize,
    /// The most samples (and result points) it held at once, as counted
    /// against `-querier.max-samples`.
    pub peak_samples: usize,
}

/// Engine limits and defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for the latest sample.
    pub lookback_delta: Duration,
    /// Most samples one query may hold in memory at once (Prometheus `query.max-samples`).
    pub max_samples: usize,
    /// Longest time a query may run.
    pub timeout: Duration,
    /// Most points (steps) a range query may return per series.
    pub max_points_per_series: usize,
    /// Most steps a subquery's inner expression may be evaluated at
    /// (VictoriaMetrics's `-search.maxPointsSubqueryPerTimeseries`).
    pub max_subquery_steps: usize,
    /// Step of a subquery written without one (`x[1h:]`): Prometheus uses
    /// its global evaluation interval, 1m by default.
    pub default_subquery_step: Duration,
    /// Size of each query's DataFusion memory pool, bytes: the samples it
    /// loads and the rows its plans produce are charged to it (0: unlimited).
    pub max_memory_bytes: usize,
    /// Partitions (cores) each node of a query's plan runs on.
    pub parallelism: usize,
    /// A selector whose steps and windows span longer is read and evaluated
    /// one slice of this length at a time, holding one slice's samples (0: never).
    pub selection_slice: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            max_points_per_series: 11_000,
            max_subquery_steps: 100_000,
            default_subquery_step: Duration::from_secs(60),
            max_memory_bytes: 0,
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            selection_slice: Duration::from_secs(6 * 3600),
        }
    }
}

/// Evaluates PromQL queries.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    /// An engine with the given options.
    pub fn new(opts: EngineOptions) -> Self {
        Self { opts }
    }

    /// Options in effect.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at time `t` (ms).
    pub async fn instant(
        &self,
        q: Arc<dyn Queryable>,
        query: &str,
        t: i64,
    ) -> Result<QueryOutput, EngineError> {
        check_time("evaluation time", t)?;
        let expr = parse(query)?;
        let invalid = literals::invalid_utf8_literals(query);
        let run = query::run(&self.opts, q, (&expr, invalid), t, t, 0, true);
        tokio_timeout(self.opts.timeout, run).await
    }

    /// Evaluates `query` at every `step` from `start` to `end` (ms, inclusive).
    pub async fn range(
        &self,
        q: Arc<dyn Queryable>,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryOutput, EngineError> {
        if step <= 0 {
            return Err(EngineError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        check_time("start time", start)?;
        check_time("end time", end)?;
        if end < start {
            return Err(EngineError::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        // Both times are in range, so the difference cannot overflow.
        if (end - start) / step >= self.opts.max_points_per_series as i64 {
            return Err(EngineError::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let expr = parse(query)?;
        use promql_parser::parser::value::ValueType;
        match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            other => {
                return Err(EngineError::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    match other {
                        ValueType::Matrix => "range vector",
                        _ => "string",
                    }
                )));
            }
        }
        let invalid = literals::invalid_utf8_literals(query);
        let run = query::run(&self.opts, q, (&expr, invalid), start, end, step, false);
        tokio_timeout(self.opts.timeout, run).await
    }
}

async fn tokio_timeout<F: std::future::Future<Output = Result<QueryOutput, EngineError>>>(
    d: Duration,
    f: F,
) -> Result<QueryOutput, EngineError> {
    match tokio::time::timeout(d, f).await {
        Ok(r) => r,
        Err(_) => Err(EngineError::Timeout("query execution")),
    }
}

/// Parses a PromQL expression, mapping parser errors to `bad_data`.
/// Queries nested deeper than [`strata_model::nesting::MAX_QUERY_DEPTH`] and
/// durations or times out of range are refused before anything is allocated.
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, EngineError> {
    bounds::parse_checked(query)
}

/// The matcher alternatives of a vector selector, its metric name included.
fn selector_matchers(vs: &promql_parser::parser::VectorSelector) -> Vec<Vec<Matcher>> {
    let mut alts = strata_model::selector_alternatives(&vs.matchers);
    if let Some(name) = &vs.name {
        for a in &mut alts {
            if !a.iter().any(|m| m.name == strata_model::METRIC_NAME) {
                a.push(Matcher::new(
                    strata_model::MatchOp::Equal,
                    strata_model::METRIC_NAME,
                    name,
                ));
            }
        }
    }
    alts
}

/// The matcher alternatives of every series selector in a query (what
/// `query_exemplars` looks up), in the order they appear.
pub fn query_selectors(query: &str) -> Result<Vec<Vec<Matcher>>, EngineError> {
    use promql_parser::parser::Expr;
    fn walk(e: &Expr, out: &mut Vec<Vec<Matcher>>) {
        match e {
            Expr::VectorSelector(vs) => out.extend(selector_matchers(vs)),
            Expr::MatrixSelector(ms) => out.extend(selector_matchers(&ms.vs)),
            Expr::Aggregate(a) => {
                walk(&a.expr, out);
                if let Some(p) = &a.param {
                    walk(p, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Subquery(s) => walk(&s.expr, out),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
    // The parser bounds the nesting depth, so the walk's recursion is bounded.
    let expr = bounds::parse_checked(query)?;
    let mut out = Vec::new();
    walk(&expr, &mut out);
    Ok(out)
}

/// Parses a series selector (`match[]` parameter) into matcher alternatives.
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, EngineError> {
    match bounds::parse_checked(s) {
        Ok(promql_parser::parser::Expr::VectorSelector(vs)) => {
            let alts = selector_matchers(&vs);
            if alts.iter().any(|a| a.iter().all(|m| m.is_match(""))) {
                return Err(EngineError::BadData(
                    "match[] must contain at least one non-empty matcher".into(),
                ));
            }
            Ok(alts)
        }
        Ok(_) => Err(EngineError::BadData(format!(
            "invalid parameter \"match[]\": {s:?} is not a series selector"
        ))),
        Err(e) => Err(EngineError::BadData(e.to_string().replace(
            "invalid parameter \"query\"",
            "invalid parameter \"match[]\"",
        ))),
    }
}
