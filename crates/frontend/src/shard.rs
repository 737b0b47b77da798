//! Query sharding: an aggregation whose inner expression works series by
//! series (`sum by (job) (rate(x[5m]))`) is run as one query per shard of
//! the series (`__query_shard__="i_of_n"` added to its selectors, see
//! [`strata_model::shard`]) on as many queriers, and the shards' answers
//! are merged the way the aggregation combines partial results: sums and
//! counts add, min and max take the extreme, `group` is 1, `avg` is the
//! merged sum over the merged count, `topk`/`bottomk` pick again among the
//! shards' picks. Everything above the sharded aggregations (a
//! `histogram_quantile`, a division of two sums, ...) is evaluated here,
//! by the PromQL engine, over the merged results, which it reads as
//! embedded series named `__strata_sharded_<n>__`.
//!
//! Only what stays exact is sharded: the inner expression must not mix
//! series (no aggregation, no binary operation between two vectors, none of
//! the functions that join or create series), nothing under a subquery is
//! sharded, and a query with `@` is not sharded at all. Every query text
//! built here is parsed back and compared with the tree it was printed
//! from; a query whose text would not survive that is run unsharded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use promql_parser::parser::token::{T_COUNT, T_SUM, TokenType};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier, VectorSelector};
use serde_json::Value as Json;
use strata_model::shard::{MAX_SHARDED_QUERY_BYTES, Piece, QueryShard};
use strata_model::{Labels, Matcher, Sample, SeriesSamples};
use strata_promql::{EngineError, MatrixSeries, Queryable};

/// Name prefix of the embedded series that stand for sharded aggregations.
const EMBEDDED: &str = "__strata_sharded_";

/// Functions that look at or make several series at once, make series from
/// none, or read the query's own steps (shard queries of an instant query
/// run as one-step range queries): the expression under a sharded
/// aggregation must not call them.
const CROSS_SERIES_FUNCTIONS: [&str; 14] = [
    "absent",
    "absent_over_time",
    "scalar",
    "vector",
    "histogram_quantile",
    "histogram_quantiles",
    "histogram_fraction",
    "label_replace",
    "label_join",
    "info",
    "step",
    "range",
    "start",
    "end",
];

/// How shards' answers of one aggregation combine.
#[derive(Debug, Clone, PartialEq)]
enum Combine {
    Sum,
    Min,
    Max,
    Group,
    /// Sum over count: the shard queries come in pairs.
    Avg,
    /// `topk` / `bottomk` with `k` and the aggregation's grouping.
    Top {
        k: usize,
        bottom: bool,
        grouping: Option<LabelModifier>,
    },
}

/// One query a querier runs: an aggregation over one shard.
#[derive(Debug, Clone)]
pub struct ShardQuery {
    /// The sharded aggregation it belongs to.
    pub leg: usize,
    pub piece: Piece,
    pub query: String,
}

/// A query cut into shard queries and the expression over their merged
/// answers.
#[derive(Debug)]
pub struct ShardPlan {
    /// The query with each sharded aggregation replaced by its embedded
    /// series.
    outer: String,
    combine: Vec<Combine>,
    queries: Vec<ShardQuery>,
}

/// Why a plan's answers could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("a querier's answer to a shard query is malformed: {0}")]
    Answer(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl ShardPlan {
    /// The plan of `query` over `shards` shards with at most `max_queries`
    /// shard queries (fewer shards when it has several aggregations), or
    /// `None` when nothing in it may be sharded.
    pub fn new(query: &str, shards: u32, max_queries: u32) -> Option<Self> {
        if shards < 2
            || query.contains('@')
            || query.contains(EMBEDDED)
            || query.len() > MAX_SHARDED_QUERY_BYTES
        {
            return None;
        }
        let mut expr = strata_promql::parse(query).ok()?;
        let mut found: Vec<AggregateExpr> = Vec::new();
        extract(&mut expr, &mut found);
        // The frontend evaluates the rest with the merged answers only: a
        // selector outside the sharded aggregations would read nothing.
        if found.is_empty() || has_selector(&expr_without_embedded(&expr)) {
            return None;
        }
        let per_shard: u32 = found
            .iter()
            .map(|a| if op_name(a) == "avg" { 2 } else { 1 })
            .sum();
        let shards = shards.min(max_queries / per_shard.max(1));
        if shards < 2 {
            return None;
        }
        let outer = expr.to_string();
        if !prints_faithfully(&expr, &outer) {
            return None;
        }
        let mut combine = Vec::with_capacity(found.len());
        let mut queries = Vec::new();
        for (leg, agg) in found.iter().enumerate() {
            let (how, pieces): (Combine, &[Piece]) = match op_name(agg).as_str() {
                "sum" | "count" => (Combine::Sum, &[Piece::Whole]),
                "min" => (Combine::Min, &[Piece::Whole]),
                "max" => (Combine::Max, &[Piece::Whole]),
                "group" => (Combine::Group, &[Piece::Whole]),
                "avg" => (Combine::Avg, &[Piece::AvgSum, Piece::AvgCount]),
                op @ ("topk" | "bottomk") => (
                    Combine::Top {
                        k: literal_k(agg)?,
                        bottom: op == "bottomk",
                        grouping: agg.modifier.clone(),
                    },
                    &[Piece::Whole],
                ),
                _ => return None,
            };
            combine.push(how);
            for index in 0..shards {
                let shard = QueryShard::new(index, shards)?;
                for &piece in pieces {
                    let mut one = agg.clone();
                    match piece {
                        Piece::Whole => {}
                        Piece::AvgSum => one.op = TokenType::new(T_SUM),
                        Piece::AvgCount => one.op = TokenType::new(T_COUNT),
                    }
                    add_shard_matcher(&mut one.expr, &shard);
                    let tree = Expr::Aggregate(one);
                    let text = tree.to_string();
                    if !prints_faithfully(&tree, &text) {
                        return None;
                    }
                    queries.push(ShardQuery {
                        leg,
                        piece,
                        query: text,
                    });
                }
            }
        }
        Some(Self {
            outer,
            combine,
            queries,
        })
    }

    /// The queries to run, every shard of every sharded aggregation.
    pub fn queries(&self) -> &[ShardQuery] {
        &self.queries
    }

    /// The expression evaluated over the merged answers.
    pub fn outer(&self) -> &str {
        &self.outer
    }

    /// Merges the answers (`answers[i]` answers `queries()[i]`) and
    /// evaluates the outer expression over them, at `start..=end` every
    /// `step` (ms), or at `start` only when `instant`.
    pub async fn evaluate(
        &self,
        engine: &strata_promql::Engine,
        answers: Vec<Vec<MatrixSeries>>,
        (start, end, step): (i64, i64, i64),
        instant: bool,
    ) -> Result<strata_promql::QueryOutput, ShardError> {
        let mut legs: Vec<Vec<Vec<MatrixSeries>>> = vec![Vec::new(); self.combine.len()];
        let mut avg_counts: Vec<Vec<Vec<MatrixSeries>>> = vec![Vec::new(); self.combine.len()];
        for (q, answer) in self.queries.iter().zip(answers) {
            match q.piece {
                Piece::AvgCount => avg_counts[q.leg].push(answer),
                _ => legs[q.leg].push(answer),
            }
        }
        let embedded: Vec<Vec<SeriesSamples>> = self
            .combine
            .iter()
            .zip(legs)
            .zip(avg_counts)
            .map(|((how, shards), counts)| {
                let merged = merge(how, shards, counts);
                with_stale_markers(merged, step, end)
            })
            .collect();
        let view: Arc<dyn Queryable> = Arc::new(Embedded(embedded));
        let out = if instant {
            engine.instant(view, &self.outer, start).await?
        } else {
            engine.range(view, &self.outer, start, end, step).await?
        };
        Ok(out)
    }
}

/// Whether `text` parses back to `tree` (matchers compared as sets: the
/// printer sorts them).
fn prints_faithfully(tree: &Expr, text: &str) -> bool {
    let Ok(mut parsed) = strata_promql::parse(text) else {
        return false;
    };
    let mut tree = tree.clone();
    for_each_selector(&mut tree, &mut sort_matchers);
    for_each_selector(&mut parsed, &mut sort_matchers);
    parsed == tree
}

fn sort_matchers(vs: &mut VectorSelector) {
    let key = |m: &Matcher| m.to_string();
    vs.matchers.matchers.sort_by_key(key);
    for alt in &mut vs.matchers.or_matchers {
        alt.sort_by_key(key);
    }
}

fn op_name(a: &AggregateExpr) -> String {
    a.op.to_string().to_ascii_lowercase()
}

/// `k` of a `topk`/`bottomk` written as a number (a computed `k` is not
/// sharded).
fn literal_k(a: &AggregateExpr) -> Option<usize> {
    let mut p = a.param.as_deref()?;
    while let Expr::Paren(inner) = p {
        p = &inner.expr;
    }
    match p {
        Expr::NumberLiteral(n) if n.val >= 1.0 && n.val <= 1e6 => Some(n.val as usize),
        _ => None,
    }
}

/// Replaces each outermost shardable aggregation in `expr` with its
/// embedded selector, collecting the aggregations.
fn extract(expr: &mut Expr, found: &mut Vec<AggregateExpr>) {
    if let Expr::Aggregate(a) = expr
        && shardable(a)
    {
        // Parsed, so that the tree equals what its printed text parses to.
        let Ok(embedded) = promql_parser::parser::parse(&format!("{EMBEDDED}{}__", found.len()))
        else {
            return;
        };
        if let Expr::Aggregate(a) = std::mem::replace(expr, embedded) {
            found.push(a);
        }
        return;
    }
    match expr {
        Expr::Aggregate(a) => {
            extract(&mut a.expr, found);
            if let Some(p) = &mut a.param {
                extract(p, found);
            }
        }
        Expr::Unary(u) => extract(&mut u.expr, found),
        Expr::Binary(b) => {
            extract(&mut b.lhs, found);
            extract(&mut b.rhs, found);
        }
        Expr::Paren(p) => extract(&mut p.expr, found),
        Expr::Call(c) => {
            for arg in &mut c.args.args {
                extract(arg, found);
            }
        }
        // A subquery evaluates its inside at its own steps: not sharded.
        Expr::Subquery(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

/// Whether an aggregation may be sharded: an operator whose partial
/// results combine exactly, over an expression that works series by series.
fn shardable(a: &AggregateExpr) -> bool {
    let op = op_name(a);
    let op_ok = match op.as_str() {
        "sum" | "count" | "min" | "max" | "group" | "avg" => true,
        "topk" | "bottomk" => literal_k(a).is_some(),
        _ => false,
    };
    op_ok && per_series(&a.expr) && has_selector(&a.expr)
}

/// Whether each output series of `e` depends on one input series only.
fn per_series(e: &Expr) -> bool {
    match e {
        Expr::Aggregate(_) | Expr::Extension(_) => false,
        Expr::Unary(u) => per_series(&u.expr),
        Expr::Paren(p) => per_series(&p.expr),
        Expr::Binary(b) => {
            let vectors = [&b.lhs, &b.rhs]
                .iter()
                .filter(|s| s.value_type() == ValueType::Vector)
                .count();
            vectors <= 1 && per_series(&b.lhs) && per_series(&b.rhs)
        }
        Expr::Call(c) => {
            !CROSS_SERIES_FUNCTIONS.contains(&c.func.name)
                && c.args.args.iter().all(|a| per_series(a))
        }
        Expr::Subquery(s) => per_series(&s.expr),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_) => true,
    }
}

/// `e` with its embedded selectors replaced by a number, so that
/// [`has_selector`] finds only selectors that read storage.
fn expr_without_embedded(e: &Expr) -> Expr {
    let mut e = e.clone();
    replace_embedded(&mut e);
    e
}

fn replace_embedded(e: &mut Expr) {
    let is_embedded = |e: &Expr| {
        matches!(e, Expr::VectorSelector(vs)
            if vs.name.as_deref().is_some_and(|n| n.starts_with(EMBEDDED)))
    };
    if is_embedded(e) {
        if let Ok(one) = promql_parser::parser::parse("1") {
            *e = one;
        }
        return;
    }
    match e {
        Expr::Aggregate(a) => {
            replace_embedded(&mut a.expr);
            if let Some(p) = &mut a.param {
                replace_embedded(p);
            }
        }
        Expr::Unary(u) => replace_embedded(&mut u.expr),
        Expr::Paren(p) => replace_embedded(&mut p.expr),
        Expr::Binary(b) => {
            replace_embedded(&mut b.lhs);
            replace_embedded(&mut b.rhs);
        }
        Expr::Call(c) => {
            for arg in &mut c.args.args {
                replace_embedded(arg);
            }
        }
        Expr::Subquery(s) => replace_embedded(&mut s.expr),
        _ => {}
    }
}

fn has_selector(e: &Expr) -> bool {
    match e {
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => true,
        Expr::Aggregate(a) => has_selector(&a.expr),
        Expr::Unary(u) => has_selector(&u.expr),
        Expr::Paren(p) => has_selector(&p.expr),
        Expr::Binary(b) => has_selector(&b.lhs) || has_selector(&b.rhs),
        Expr::Call(c) => c.args.args.iter().any(|a| has_selector(a)),
        Expr::Subquery(s) => has_selector(&s.expr),
        _ => false,
    }
}

/// Adds the shard's matcher to every selector in `e`.
fn add_shard_matcher(e: &mut Expr, shard: &QueryShard) {
    for_each_selector(e, &mut |vs| {
        if vs.matchers.or_matchers.is_empty() {
            vs.matchers.matchers.push(shard.matcher());
        } else {
            for alt in &mut vs.matchers.or_matchers {
                alt.push(shard.matcher());
            }
        }
    });
}

/// Calls `f` on every selector in `e`.
fn for_each_selector(e: &mut Expr, f: &mut dyn FnMut(&mut VectorSelector)) {
    match e {
        Expr::VectorSelector(vs) => f(vs),
        Expr::MatrixSelector(ms) => f(&mut ms.vs),
        Expr::Aggregate(a) => {
            for_each_selector(&mut a.expr, f);
            if let Some(p) = &mut a.param {
                for_each_selector(p, f);
            }
        }
        Expr::Unary(u) => for_each_selector(&mut u.expr, f),
        Expr::Paren(p) => for_each_selector(&mut p.expr, f),
        Expr::Binary(b) => {
            for_each_selector(&mut b.lhs, f);
            for_each_selector(&mut b.rhs, f);
        }
        Expr::Call(c) => {
            for arg in &mut c.args.args {
                for_each_selector(arg, f);
            }
        }
        Expr::Subquery(s) => for_each_selector(&mut s.expr, f),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Points per series, by labels.
type Points = BTreeMap<Labels, BTreeMap<i64, f64>>;

/// Prometheus's `min`/`max` step: NaN gives way to any number.
fn extreme(cur: f64, v: f64, max: bool) -> f64 {
    if cur.is_nan() || (max && v > cur) || (!max && v < cur) {
        v
    } else {
        cur
    }
}

/// Combines the shards' answers of one aggregation (`counts`: the count
/// halves of an `avg`).
fn merge(
    how: &Combine,
    shards: Vec<Vec<MatrixSeries>>,
    counts: Vec<Vec<MatrixSeries>>,
) -> Vec<MatrixSeries> {
    let fold = |shards: Vec<Vec<MatrixSeries>>, f: &dyn Fn(f64, f64) -> f64| -> Points {
        let mut out: Points = BTreeMap::new();
        for s in shards.into_iter().flatten() {
            let points = out.entry(s.labels).or_default();
            for (t, v) in s.points {
                points
                    .entry(t)
                    .and_modify(|cur| *cur = f(*cur, v))
                    .or_insert(v);
            }
        }
        out
    };
    let points: Points = match how {
        Combine::Sum => fold(shards, &|a, b| a + b),
        Combine::Min => fold(shards, &|a, b| extreme(a, b, false)),
        Combine::Max => fold(shards, &|a, b| extreme(a, b, true)),
        Combine::Group => fold(shards, &|_, _| 1.0),
        Combine::Avg => {
            let sums = fold(shards, &|a, b| a + b);
            let counts = fold(counts, &|a, b| a + b);
            sums.into_iter()
                .filter_map(|(labels, sum)| {
                    let count = counts.get(&labels)?;
                    let avg: BTreeMap<i64, f64> = sum
                        .into_iter()
                        .filter_map(|(t, s)| Some((t, s / count.get(&t)?)))
                        .collect();
                    Some((labels, avg))
                })
                .collect()
        }
        Combine::Top {
            k,
            bottom,
            grouping,
        } => top(
            shards.into_iter().flatten().collect(),
            *k,
            *bottom,
            grouping,
        ),
    };
    points
        .into_iter()
        .map(|(labels, p)| MatrixSeries {
            labels,
            points: p.into_iter().collect(),
        })
        .collect()
}

/// `topk`/`bottomk` again over the shards' picks: at each step, the `k`
/// largest (smallest) of each group, NaN last.
fn top(
    series: Vec<MatrixSeries>,
    k: usize,
    bottom: bool,
    grouping: &Option<LabelModifier>,
) -> Points {
    let group_of = |l: &Labels| -> Labels {
        match grouping {
            None => Labels::default(),
            Some(LabelModifier::Include(names)) => Labels::from_pairs(
                l.iter()
                    .filter(|x| names.labels.contains(&x.name))
                    .map(|x| (x.name.as_str(), x.value.as_str())),
            ),
            Some(LabelModifier::Exclude(names)) => Labels::from_pairs(
                l.iter()
                    .filter(|x| {
                        x.name != strata_model::METRIC_NAME && !names.labels.contains(&x.name)
                    })
                    .map(|x| (x.name.as_str(), x.value.as_str())),
            ),
        }
    };
    // step -> group -> (value, series index)
    let mut at: BTreeMap<i64, HashMap<Labels, Vec<(f64, usize)>>> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        let g = group_of(&s.labels);
        for &(t, v) in &s.points {
            at.entry(t)
                .or_default()
                .entry(g.clone())
                .or_default()
                .push((v, i));
        }
    }
    let mut out: Points = BTreeMap::new();
    for (t, groups) in at {
        for (_, mut candidates) in groups {
            candidates.sort_by(|a, b| {
                let (x, y) = (a.0, b.0);
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if bottom => x.total_cmp(&y),
                    _ => y.total_cmp(&x),
                }
            });
            for (v, i) in candidates.into_iter().take(k) {
                out.entry(series[i].labels.clone())
                    .or_default()
                    .insert(t, v);
            }
        }
    }
    out
}

/// The merged series as stored series: a staleness marker one step after
/// each run of points, so that the engine's lookback never carries a value
/// to a step where the aggregation had none.
fn with_stale_markers(series: Vec<MatrixSeries>, step: i64, end: i64) -> Vec<SeriesSamples> {
    series
        .into_iter()
        .map(|s| {
            let mut samples = Vec::with_capacity(s.points.len() + 1);
            let mut points = s.points.into_iter().peekable();
            while let Some((t, v)) = points.next() {
                samples.push(Sample { t, v });
                let next = t.saturating_add(step);
                let gap = points.peek().is_none_or(|&(u, _)| u > next);
                if step > 0 && gap && next <= end {
                    samples.push(Sample {
                        t: next,
                        v: strata_model::stale_nan(),
                    });
                }
            }
            SeriesSamples {
                labels: s.labels,
                samples,
            }
        })
        .collect()
}

/// The merged answers, as the engine reads them: the series of embedded
/// selector `n` are aggregation `n`'s.
struct Embedded(Vec<Vec<SeriesSamples>>);

#[async_trait]
impl Queryable for Embedded {
    async fn select(
        &self,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<Vec<SeriesSamples>, EngineError> {
        let leg = matchers
            .iter()
            .find(|m| m.name == strata_model::METRIC_NAME)
            .and_then(|m| {
                m.value
                    .strip_prefix(EMBEDDED)?
                    .strip_suffix("__")?
                    .parse::<usize>()
                    .ok()
            })
            .and_then(|n| self.0.get(n))
            .ok_or_else(|| EngineError::Storage("a sharded query read an unknown series".into()))?;
        Ok(leg
            .iter()
            .filter_map(|s| {
                let samples: Vec<Sample> = s
                    .samples
                    .iter()
                    .filter(|x| x.t >= min_t && x.t <= max_t)
                    .copied()
                    .collect();
                (!samples.is_empty()).then(|| SeriesSamples {
                    labels: s.labels.clone(),
                    samples,
                })
            })
            .collect())
    }
}

/// A querier's answer to a shard query.
pub struct ShardAnswer {
    pub series: Vec<MatrixSeries>,
    /// `data.stats`, when the querier wrote them.
    pub stats: Option<Json>,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

/// The series of a querier's successful range-query answer, with its
/// warnings and infos.
pub fn parse_matrix(answer: &Json) -> Result<ShardAnswer, ShardError> {
    let bad = |what: &str| ShardError::Answer(what.to_string());
    let data = answer.get("data").ok_or_else(|| bad("no data"))?;
    if data.get("resultType").and_then(Json::as_str) != Some("matrix") {
        return Err(bad("not a matrix"));
    }
    let result = data
        .get("result")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("no result list"))?;
    let mut series = Vec::with_capacity(result.len());
    for s in result {
        let labels = match s.get("metric") {
            Some(Json::Object(m)) => Labels::from_pairs(
                m.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default())),
            ),
            _ => return Err(bad("a series without labels")),
        };
        let values = s.get("values").and_then(Json::as_array);
        let mut points = Vec::with_capacity(values.map_or(0, Vec::len));
        for p in values.into_iter().flatten() {
            let t = p
                .get(0)
                .and_then(Json::as_f64)
                .ok_or_else(|| bad("a point without a time"))?;
            let v = p
                .get(1)
                .and_then(Json::as_str)
                .and_then(parse_float)
                .ok_or_else(|| bad("a point without a value"))?;
            points.push(((t * 1000.0).round() as i64, v));
        }
        series.push(MatrixSeries { labels, points });
    }
    let notes = |field: &str| -> Vec<String> {
        let list = answer.get(field).and_then(Json::as_array);
        list.into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect()
    };
    Ok(ShardAnswer {
        series,
        stats: data.get("stats").cloned(),
        warnings: notes("warnings"),
        infos: notes("infos"),
    })
}

/// A sample value as Prometheus writes it.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(q: &str) -> Option<ShardPlan> {
        ShardPlan::new(q, 3, 128)
    }

    #[test]
    fn shardable_aggregations_become_embedded_series() {
        let p = plan(r#"sum by (job) (rate(http_requests_total{code=~"5.."}[5m]))"#).unwrap();
        assert_eq!(p.outer(), "__strata_sharded_0__");
        assert_eq!(p.queries().len(), 3);
        assert_eq!(
            p.queries()[1].query,
            r#"sum by (job) (rate(http_requests_total{__query_shard__="2_of_3",code=~"5.."}[5m]))"#
        );
        let p = plan(
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m]))) / on() group_left max(y) * 2",
        )
        .unwrap();
        assert_eq!(
            p.outer(),
            "histogram_quantile(0.9, __strata_sharded_0__) / on () group_left () __strata_sharded_1__ * 2"
        );
        let p = plan("avg(x)").unwrap();
        assert_eq!(p.queries().len(), 6);
        assert!(p.queries()[0].query.starts_with("sum(x{"));
        assert!(p.queries()[1].query.starts_with("count(x{"));
        // Each alternative of an `or` selector gets the shard.
        let p = plan(r#"topk(3, x{a="b" or c="d"})"#).unwrap();
        let q = &p.queries()[0].query;
        assert_eq!(q.matches(r#"__query_shard__="1_of_3""#).count(), 2, "{q}");
    }

    #[test]
    fn what_mixes_series_is_not_sharded() {
        for q in [
            "x",
            "rate(x[5m])",
            "sum(x / y)",
            "quantile(0.9, x)",
            "stddev(x)",
            "count_values(\"v\", x)",
            "sum(absent(x))",
            r#"sum(label_replace(x, "a", "$1", "b", "(.*)"))"#,
            "sum(x @ 100)",
            "topk(scalar(y), x)",
            "max_over_time(sum(x)[1h:5m])",
            "sum(vector(1))",
            "sum(histogram_quantile(0.9, x))",
        ] {
            assert!(plan(q).is_none(), "{q}");
        }
        // ... but aggregations beside or below such parts are.
        assert_eq!(
            plan("sum(sum by (a) (x))").unwrap().outer(),
            "sum(__strata_sharded_0__)"
        );
        // A selector left outside the aggregations: not sharded (the
        // frontend has only the merged answers to read).
        for q in [
            "sum(x) / on() y",
            "absent(up) or sum(up)",
            "max_over_time(sum(x)[1h:1m]) / on() sum(y)",
            "sum(__strata_sharded_0__)",
            "sum(histogram_fraction(0, 0.2, rate(x_bucket[5m])))",
        ] {
            assert!(plan(q).is_none(), "{q}");
        }
        let long = format!("sum(x{{a=\"{}\"}})", "v".repeat(9000));
        assert!(
            plan(&long).is_none(),
            "shard queries of a long query would not fit URLs"
        );
        assert!(plan("sum(x * 2 > bool 1)").is_some());
        assert!(plan("sum(max_over_time(rate(x[5m])[1h:1m]))").is_some());
        // Too few queries allowed for two shards of each part: unsharded.
        assert!(ShardPlan::new("avg(x) + avg(y)", 16, 7).is_none());
        assert_eq!(
            ShardPlan::new("avg(x) + avg(y)", 16, 8)
                .unwrap()
                .queries()
                .len(),
            8
        );
    }

    fn series(pairs: &[(&str, &str)], points: &[(i64, f64)]) -> MatrixSeries {
        MatrixSeries {
            labels: Labels::from_pairs(pairs.iter().copied()),
            points: points.to_vec(),
        }
    }

    #[test]
    fn partial_results_combine_exactly() {
        let a = vec![series(&[("job", "x")], &[(0, 1.0), (10, f64::NAN)])];
        let b = vec![series(&[("job", "x")], &[(0, 2.0), (10, 5.0), (20, 7.0)])];
        let sum = merge(&Combine::Sum, vec![a.clone(), b.clone()], vec![]);
        assert_eq!(sum[0].points[0], (0, 3.0));
        assert!(sum[0].points[1].1.is_nan());
        let min = merge(&Combine::Min, vec![a.clone(), b.clone()], vec![]);
        assert_eq!(min[0].points, vec![(0, 1.0), (10, 5.0), (20, 7.0)]);
        let max = merge(&Combine::Max, vec![a, b], vec![]);
        assert_eq!(max[0].points, vec![(0, 2.0), (10, 5.0), (20, 7.0)]);
        let avg = merge(
            &Combine::Avg,
            vec![
                vec![series(&[], &[(0, 6.0)])],
                vec![series(&[], &[(0, 4.0)])],
            ],
            vec![
                vec![series(&[], &[(0, 3.0)])],
                vec![series(&[], &[(0, 2.0)])],
            ],
        );
        assert_eq!(avg[0].points, vec![(0, 2.0)]);
        let picks = vec![
            vec![series(&[("a", "1"), ("g", "x")], &[(0, 5.0), (10, 1.0)])],
            vec![
                series(&[("a", "2"), ("g", "x")], &[(0, 3.0), (10, 4.0)]),
                series(&[("a", "3"), ("g", "y")], &[(0, f64::NAN)]),
            ],
        ];
        let by_g = Some(LabelModifier::include(vec!["g"]));
        let top1 = merge(
            &Combine::Top {
                k: 1,
                bottom: false,
                grouping: by_g.clone(),
            },
            picks.clone(),
            vec![],
        );
        assert_eq!(top1.len(), 3);
        assert_eq!(top1[0].points, vec![(0, 5.0)]);
        assert_eq!(top1[1].points, vec![(10, 4.0)]);
        let bottom1 = merge(
            &Combine::Top {
                k: 1,
                bottom: true,
                grouping: None,
            },
            picks,
            vec![],
        );
        // One group: the smallest at each step, NaN never before a number.
        let picked: Vec<_> = bottom1.iter().flat_map(|s| s.points.clone()).collect();
        assert_eq!(picked.len(), 2);
        assert!(picked.contains(&(0, 3.0)) && picked.contains(&(10, 1.0)));
    }

    #[test]
    fn gaps_end_with_a_staleness_marker() {
        let s = with_stale_markers(
            vec![series(&[], &[(0, 1.0), (10, 1.0), (40, 1.0), (50, 1.0)])],
            10,
            60,
        );
        let got: Vec<(i64, bool)> = s[0]
            .samples
            .iter()
            .map(|x| (x.t, strata_model::is_stale_nan(x.v)))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, false),
                (10, false),
                (20, true),
                (40, false),
                (50, false),
                (60, true)
            ]
        );
    }

    #[tokio::test]
    async fn the_outer_expression_reads_the_merged_series() {
        let p = plan("sum by (job) (x) * 2").unwrap();
        // Three shard answers; job b has no value at step 20.
        let answers = vec![
            vec![series(
                &[("job", "a")],
                &[(0, 1.0), (10_000, 1.0), (20_000, 1.0)],
            )],
            vec![series(&[("job", "b")], &[(0, 2.0), (10_000, 2.0)])],
            vec![series(
                &[("job", "a")],
                &[(0, 3.0), (10_000, 3.0), (20_000, 3.0)],
            )],
        ];
        let engine = strata_promql::Engine::default();
        let out = p
            .evaluate(&engine, answers.clone(), (0, 20_000, 10_000), false)
            .await
            .unwrap();
        let strata_promql::Value::Matrix(m) = out.value else {
            panic!("not a matrix")
        };
        assert_eq!(m.len(), 2);
        let a = m.iter().find(|s| s.labels.get("job") == Some("a")).unwrap();
        assert_eq!(a.points, vec![(0, 8.0), (10_000, 8.0), (20_000, 8.0)]);
        let b = m.iter().find(|s| s.labels.get("job") == Some("b")).unwrap();
        assert_eq!(b.points, vec![(0, 4.0), (10_000, 4.0)]);
        let out = p
            .evaluate(&engine, answers, (10_000, 10_000, 1), true)
            .await
            .unwrap();
        let strata_promql::Value::Vector(v) = out.value else {
            panic!("not a vector")
        };
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn answers_parse_with_special_values() {
        let j: Json = serde_json::json!({"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"job":"a"},"values":[[1.5,"+Inf"],[2,"NaN"],[3,"-0.25"]]}]},
            "warnings":["w"]});
        let a = parse_matrix(&j).unwrap();
        let s = &a.series;
        assert_eq!(s[0].points[0], (1500, f64::INFINITY));
        assert!(s[0].points[1].1.is_nan());
        assert_eq!(s[0].points[2], (3000, -0.25));
        assert_eq!(a.warnings, vec!["w".to_string()]);
        assert!(a.infos.is_empty());
        assert!(parse_matrix(&serde_json::json!({"data":{"resultType":"vector"}})).is_err());
    }
}
