//! The run of one PromQL query: plan the expression, execute the plan on
//! DataFusion, convert the root's output to an API value.

use std::collections::HashSet;
use std::sync::Arc;

use promql_parser::parser::Expr;
use strata_model::Labels;

use crate::eval::{Ctx, Val, finalize_names};
use crate::{
    EngineError, EngineOptions, MatrixSeries, QueryOutput, Queryable, Value, VectorSample, plan,
};

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
        stats: ctx.stats(),
    })
}
