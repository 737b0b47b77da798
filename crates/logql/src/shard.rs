//! Query sharding of LogQL metric queries: a vector aggregation over a range
//! aggregation (`sum by (level) (count_over_time({app="x"} |= "error" [1m]))`)
//! is run as one query per shard of the streams (`__query_shard__="i_of_n"`
//! added to the stream selector, see [`strata_model::shard`]) on as many
//! queriers, and the shards' answers are merged here step by step with the
//! evaluator's own aggregation code: sums and counts add, `min`/`max` take
//! the extreme, `topk`/`bottomk` pick again among the shards' picks, `avg`
//! is the merged sum over the merged count. A `topk`, `bottomk`, `sort` or
//! `sort_desc` around the sharded aggregation is applied after the merge.
//!
//! Only what stays exact is sharded. A series of the range aggregation must
//! come from one stream, so the shards' series never overlap: the pipeline
//! may filter, parse (parsed labels never replace a stream's labels; they
//! get an `_extracted` suffix) and format lines, but not rename, drop or
//! keep labels or unpack them; the range aggregation has no grouping of its
//! own; and `absent_over_time` (which makes a series from none) is never
//! sharded. Every shard query is parsed back and compared with the tree it
//! was printed from; a query whose text would not survive that is run
//! unsharded.

use std::collections::{BTreeMap, HashMap};

use strata_model::Labels;
pub use strata_model::shard::Piece;
use strata_model::shard::{MAX_SHARDED_QUERY_BYTES, QueryShard};

use crate::ast::{Expr, Grouping, MetricExpr, RangeOp, Stage, VectorOp};
use crate::eval::{EvalError, Series, series_limit, to_matrix, vector_agg};

/// One query a querier runs: the sharded aggregation over one shard.
#[derive(Debug, Clone)]
pub struct ShardQuery {
    pub piece: Piece,
    pub query: String,
}

/// A vector aggregation as the merge applies it.
#[derive(Debug, Clone)]
struct Aggregation {
    op: VectorOp,
    param: Option<f64>,
    grouping: Option<Grouping>,
}

impl Aggregation {
    fn apply(&self, v: Vec<(Labels, f64)>) -> Result<Vec<(Labels, f64)>, EvalError> {
        vector_agg(self.op, self.param, self.grouping.as_ref(), v)
    }
}

/// A LogQL metric query cut into shard queries, and how their answers merge.
#[derive(Debug)]
pub struct ShardPlan {
    sharded: Aggregation,
    /// A ranking aggregation over the merged answer.
    outer: Option<Aggregation>,
    queries: Vec<ShardQuery>,
}

impl ShardPlan {
    /// The plan of `query` over `shards` shards with at most `max_queries`
    /// shard queries, or `None` when it may not be sharded.
    pub fn new(query: &str, shards: u32, max_queries: u32) -> Option<Self> {
        if shards < 2 || query.len() > MAX_SHARDED_QUERY_BYTES {
            return None;
        }
        let Ok(Expr::Metric(expr)) = crate::parse(query) else {
            return None;
        };
        let (outer, core) = match &expr {
            MetricExpr::Vector {
                op: op @ (VectorOp::Topk | VectorOp::Bottomk | VectorOp::Sort | VectorOp::SortDesc),
                param,
                grouping,
                expr: inner,
            } if matches!(**inner, MetricExpr::Vector { .. }) => (
                Some(Aggregation {
                    op: *op,
                    param: *param,
                    grouping: grouping.clone(),
                }),
                &**inner,
            ),
            _ => (None, &expr),
        };
        let MetricExpr::Vector {
            op,
            param,
            grouping,
            expr: inner,
        } = core
        else {
            return None;
        };
        let mergeable = matches!(
            op,
            VectorOp::Sum
                | VectorOp::Count
                | VectorOp::Min
                | VectorOp::Max
                | VectorOp::Avg
                | VectorOp::Topk
                | VectorOp::Bottomk
        );
        let MetricExpr::Range {
            op: range_op,
            grouping: None,
            range,
            ..
        } = &**inner
        else {
            return None;
        };
        if !mergeable
            || *range_op == RangeOp::AbsentOverTime
            || !range.log.pipeline.iter().all(keeps_streams_apart)
        {
            return None;
        }
        let pieces: &[Piece] = if *op == VectorOp::Avg {
            &[Piece::AvgSum, Piece::AvgCount]
        } else {
            &[Piece::Whole]
        };
        let shards = shards.min(max_queries / pieces.len() as u32);
        if shards < 2 {
            return None;
        }
        let mut queries = Vec::with_capacity(shards as usize * pieces.len());
        for index in 0..shards {
            let shard = QueryShard::new(index, shards)?;
            for &piece in pieces {
                let mut one = core.clone();
                if let MetricExpr::Vector { op, expr, .. } = &mut one {
                    match piece {
                        Piece::Whole => {}
                        Piece::AvgSum => *op = VectorOp::Sum,
                        Piece::AvgCount => *op = VectorOp::Count,
                    }
                    if let MetricExpr::Range { range, .. } = &mut **expr {
                        range.log.matchers.push(shard.matcher());
                    }
                }
                let query = crate::format::one_line(&one);
                if !prints_faithfully(&one, &query) {
                    return None;
                }
                queries.push(ShardQuery { piece, query });
            }
        }
        Some(Self {
            sharded: Aggregation {
                op: *op,
                param: *param,
                grouping: grouping.clone(),
            },
            outer,
            queries,
        })
    }

    /// The queries to run, every shard.
    pub fn queries(&self) -> &[ShardQuery] {
        &self.queries
    }

    /// Merges the answers (`answers[i]` answers `queries()[i]`) into the
    /// query's answer, refused past `max_series` series (0: unlimited) as
    /// a querier refuses one query's.
    pub fn merge(
        &self,
        answers: Vec<Vec<Series>>,
        max_series: usize,
    ) -> Result<Vec<Series>, EvalError> {
        let mut values: BTreeMap<i64, Vec<(Labels, f64)>> = BTreeMap::new();
        let mut counts: BTreeMap<i64, Vec<(Labels, f64)>> = BTreeMap::new();
        for (q, answer) in self.queries.iter().zip(answers) {
            let into = match q.piece {
                Piece::AvgCount => &mut counts,
                _ => &mut values,
            };
            for s in answer {
                for (t, v) in s.points {
                    into.entry(t).or_default().push((s.labels.clone(), v));
                }
            }
        }
        let regroup = |op| Aggregation {
            op,
            param: self.sharded.param,
            grouping: self.sharded.grouping.clone(),
        };
        let mut steps = Vec::with_capacity(values.len());
        let mut per_step = Vec::with_capacity(values.len());
        for (t, at_step) in values {
            let mut merged = match self.sharded.op {
                // A shard's count is a count of its own series: they add.
                VectorOp::Sum | VectorOp::Count => regroup(VectorOp::Sum).apply(at_step)?,
                VectorOp::Avg => {
                    let sums = regroup(VectorOp::Sum).apply(at_step)?;
                    let n: HashMap<Labels, f64> = regroup(VectorOp::Sum)
                        .apply(counts.remove(&t).unwrap_or_default())?
                        .into_iter()
                        .collect();
                    sums.into_iter()
                        .filter_map(|(l, sum)| n.get(&l).map(|&count| (l, sum / count)))
                        .collect()
                }
                _ => self.sharded.apply(at_step)?,
            };
            if let Some(outer) = &self.outer {
                merged = outer.apply(merged)?;
            }
            steps.push(t);
            per_step.push(merged);
        }
        let matrix = to_matrix(&steps, per_step);
        if max_series > 0 && matrix.len() > max_series {
            return Err(series_limit(max_series));
        }
        Ok(matrix)
    }
}

/// Whether a stage leaves every stream label of an entry in place, so the
/// entries of two streams never end up in one series.
fn keeps_streams_apart(stage: &Stage) -> bool {
    matches!(
        stage,
        Stage::LineFilter(_)
            | Stage::Json(_)
            | Stage::Logfmt { .. }
            | Stage::Regexp(_)
            | Stage::Pattern(_)
            | Stage::LabelFilter(_)
            | Stage::LineFormat(_)
            | Stage::Decolorize
    )
}

/// Whether `text` parses back to `tree`. The tree holds compiled regular
/// expressions and templates, which compare by their debug form (their
/// source text).
fn prints_faithfully(tree: &MetricExpr, text: &str) -> bool {
    match crate::parse(text) {
        Ok(Expr::Metric(parsed)) => format!("{parsed:?}") == format!("{tree:?}"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(q: &str) -> Option<ShardPlan> {
        ShardPlan::new(q, 4, 128)
    }

    #[test]
    fn shards_mergeable_aggregations_of_stream_keeping_pipelines() {
        let p = plan(r#"sum by (level) (count_over_time({app="x"} |= "error" | logfmt | status >= 500 [1m]))"#)
            .expect("shardable");
        assert_eq!(p.queries().len(), 4);
        assert_eq!(
            p.queries()[1].query,
            r#"sum by (level)(count_over_time({app="x", __query_shard__="2_of_4"} |= "error" | logfmt | status>=500[1m]))"#
        );
        let avg = plan(r#"avg(rate({app="x"}[5m]))"#).expect("shardable");
        assert_eq!(avg.queries().len(), 8);
        assert!(avg.queries()[0].query.starts_with("sum("));
        assert!(avg.queries()[1].query.starts_with("count("));
        let outer =
            plan(r#"topk(3, sum by (path) (rate({app="x"} | json [1m])))"#).expect("shardable");
        assert!(outer.queries()[0].query.starts_with("sum by (path)("));
        // A bound on the shard queries lowers the shards.
        assert_eq!(
            ShardPlan::new(r#"avg(rate({app="x"}[5m]))"#, 16, 8).map(|p| p.queries().len()),
            Some(8)
        );
    }

    #[test]
    fn leaves_unsharded_what_would_not_stay_exact() {
        for q in [
            r#"count_over_time({app="x"}[1m])"#,
            r#"{app="x"} |= "error""#,
            r#"sum(count_over_time({app="x"} | label_format app=pod [1m]))"#,
            r#"sum(count_over_time({app="x"} | drop pod [1m]))"#,
            r#"sum(count_over_time({app="x"} | keep app [1m]))"#,
            r#"sum(count_over_time({app="x"} | unpack [1m]))"#,
            r#"sum(absent_over_time({app="x"}[1m]))"#,
            r#"sum(sum_over_time({app="x"} | logfmt | unwrap bytes [1m]) by (pod))"#,
            r#"stddev(rate({app="x"}[1m]))"#,
            r#"sum(rate({app="x"}[1m])) / 2"#,
            r#"sum(rate({app="x"}[1m])) + sum(rate({app="y"}[1m]))"#,
            "sum(vector(1))",
            "not logql",
        ] {
            assert!(plan(q).is_none(), "{q}");
        }
        assert!(ShardPlan::new(r#"sum(rate({app="x"}[1m]))"#, 1, 128).is_none());
        let long = format!(
            r#"sum(rate({{app="{}"}}[1m]))"#,
            "x".repeat(MAX_SHARDED_QUERY_BYTES)
        );
        assert!(plan(&long).is_none());
    }

    fn series(labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs(labels.iter().copied()),
            points: points.to_vec(),
        }
    }

    #[test]
    fn merges_shards_as_the_aggregation_combines_them() {
        let sum = plan(r#"sum by (level) (count_over_time({app="x"}[1m]))"#).expect("plan");
        let answers = vec![
            vec![series(&[("level", "info")], &[(0, 2.0), (60, 3.0)])],
            vec![
                series(&[("level", "info")], &[(60, 4.0)]),
                series(&[("level", "error")], &[(0, 1.0)]),
            ],
            vec![],
            vec![],
        ];
        let merged = sum.merge(answers.clone(), 0).expect("merge");
        assert_eq!(
            merged,
            vec![
                series(&[("level", "error")], &[(0, 1.0)]),
                series(&[("level", "info")], &[(0, 2.0), (60, 7.0)]),
            ]
        );
        // More series than allowed: refused as a querier refuses.
        assert!(matches!(sum.merge(answers, 1), Err(EvalError::Limit(_))));

        let max = plan(r#"max(count_over_time({app="x"}[1m]))"#).expect("plan");
        let merged = max
            .merge(
                vec![
                    vec![series(&[], &[(0, 2.0)])],
                    vec![series(&[], &[(0, 5.0)])],
                    vec![series(&[], &[(0, 1.0)])],
                    vec![],
                ],
                0,
            )
            .expect("merge");
        assert_eq!(merged, vec![series(&[], &[(0, 5.0)])]);

        let avg = plan(r#"avg(count_over_time({app="x"}[1m]))"#).expect("plan");
        // Sum and count of each shard, in the plan's order.
        let mut answers = Vec::new();
        for (sum, count) in [(6.0, 2.0), (4.0, 2.0), (0.0, 0.0), (2.0, 1.0)] {
            let one = |v: f64| {
                if v == 0.0 {
                    vec![]
                } else {
                    vec![series(&[], &[(0, v)])]
                }
            };
            answers.push(one(sum));
            answers.push(one(count));
        }
        assert_eq!(
            avg.merge(answers, 0).expect("merge"),
            vec![series(&[], &[(0, 12.0 / 5.0)])]
        );

        let top = plan(r#"topk(2, sum by (pod) (count_over_time({app="x"}[1m])))"#).expect("plan");
        let merged = top
            .merge(
                vec![
                    vec![
                        series(&[("pod", "a")], &[(0, 5.0)]),
                        series(&[("pod", "b")], &[(0, 1.0)]),
                    ],
                    vec![series(&[("pod", "c")], &[(0, 3.0)])],
                    vec![series(&[("pod", "d")], &[(0, 4.0)])],
                    vec![],
                ],
                0,
            )
            .expect("merge");
        assert_eq!(
            merged,
            vec![
                series(&[("pod", "a")], &[(0, 5.0)]),
                series(&[("pod", "d")], &[(0, 4.0)])
            ]
        );
    }
}
