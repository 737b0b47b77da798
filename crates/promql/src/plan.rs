//! The planner: a PromQL expression as a tree of DataFusion plan nodes.
//!
//! Each operation of the expression becomes one [`PromExec`] node whose
//! children are the operands it evaluates: a function's value arguments
//! and the inner expression of a subquery argument, an aggregation's input
//! and parameter, both sides of a binary operator. Selectors are leaves:
//! an instant selector, or a range function over a range selector, reads
//! its series itself (its window needs the raw samples). String arguments
//! are no operands. What each node computes is in `eval` and `functions`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::physical_plan::displayable;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, SubqueryExpr,
    VectorSelector,
};
use promql_parser::util::duration::display_duration;

use crate::EngineError;
use crate::eval::{self, Ctx, Inputs, unparen};
use crate::exec::{Operands, Prepare, Prepared, PromExec};
use crate::functions;
use crate::ops::aggregate::{self, AGG_INPUT, AGG_PARAM};
use crate::ops::subquery::{self, subquery_steps};
use crate::ops::{binary, select};

/// The plan of `expr` evaluated at the steps of `ctx`.
pub(crate) fn plan(ctx: &Ctx, expr: &Expr) -> Result<Arc<PromExec>, EngineError> {
    let (op, operands) = match expr {
        Expr::Paren(p) => return plan(ctx, &p.expr),
        Expr::NumberLiteral(n) => (Op::Number(n.val), vec![]),
        Expr::StringLiteral(s) => (Op::String(s.val.clone()), vec![]),
        Expr::Unary(u) => (Op::Negate(*u.expr.clone()), vec![Some(plan(ctx, &u.expr)?)]),
        Expr::VectorSelector(vs) => (Op::Select(vs.clone()), vec![]),
        Expr::MatrixSelector(ms) => {
            if ctx.nsteps != 1 {
                return Err(EngineError::BadData(
                    "range vector selectors are only allowed as function arguments in range queries".into(),
                ));
            }
            (Op::RangeSelect(ms.clone()), vec![])
        }
        Expr::Subquery(sq) => {
            if ctx.nsteps != 1 {
                return Err(EngineError::BadData(
                    "subqueries are only allowed as function arguments in range queries".into(),
                ));
            }
            (Op::Subquery(sq.clone()), vec![subquery_inner(ctx, sq)?])
        }
        Expr::Call(call) => {
            let operands = call
                .args
                .args
                .iter()
                .map(|arg| call_operand(ctx, call, arg))
                .collect::<Result<Vec<_>, _>>()?;
            (Op::Call(call.clone()), operands)
        }
        Expr::Aggregate(agg) => {
            let mut operands = vec![None, None];
            if let Some(param) = &agg.param
                && aggregate::evaluates_param(agg)
            {
                operands[AGG_PARAM] = Some(plan(ctx, param)?);
            }
            operands[AGG_INPUT] = Some(plan(ctx, &agg.expr)?);
            (Op::Aggregate(agg.clone()), operands)
        }
        Expr::Binary(b) => (
            Op::Binary(b.clone()),
            vec![Some(plan(ctx, &b.lhs)?), Some(plan(ctx, &b.rhs)?)],
        ),
        Expr::Extension(_) => {
            return Err(EngineError::Unsupported("extension expressions".into()));
        }
    };
    let node = ExprNode {
        ctx: ctx.clone(),
        op,
    };
    Ok(Arc::new(PromExec::new(
        Arc::new(node),
        operands,
        ctx.exec.partitions(),
        ctx.exec.memory_limit(),
    )))
}

/// The plan tree, one node per line, indented by depth.
pub(crate) fn display(root: &Arc<PromExec>) -> String {
    displayable(root.as_ref()).indent(false).to_string()
}

/// The child plan of a function's argument, if the argument is one
/// (see the module docs).
fn call_operand(ctx: &Ctx, call: &Call, arg: &Expr) -> Result<Option<Arc<PromExec>>, EngineError> {
    let e = unparen(arg);
    // `timestamp(x)` reads the sample times of its selector itself.
    if call.func.name == "timestamp" && matches!(e, Expr::VectorSelector(_)) {
        return Ok(None);
    }
    match e {
        Expr::StringLiteral(_) | Expr::MatrixSelector(_) => Ok(None),
        Expr::Subquery(sq) => subquery_inner(ctx, sq),
        _ => plan(ctx, arg).map(Some),
    }
}

/// The plan of a subquery's inner expression at its own steps; none when
/// the subquery's windows hold no step.
fn subquery_inner(ctx: &Ctx, sq: &SubqueryExpr) -> Result<Option<Arc<PromExec>>, EngineError> {
    let (inner, _, _) = subquery_steps(ctx, sq)?;
    if inner.nsteps == 0 {
        return Ok(None);
    }
    plan(&inner, &sq.expr).map(Some)
}

/// One operation of the expression, with the parts of the syntax tree it needs.
enum Op {
    Number(f64),
    String(String),
    Negate(Expr),
    Select(VectorSelector),
    /// A range selector as an instant query's result.
    RangeSelect(MatrixSelector),
    /// A subquery as an instant query's result.
    Subquery(SubqueryExpr),
    Call(Call),
    Aggregate(AggregateExpr),
    Binary(BinaryExpr),
}

/// A plan node's operation and where it evaluates.
struct ExprNode {
    ctx: Ctx,
    op: Op,
}

#[async_trait]
impl Prepare for ExprNode {
    async fn prepare(&self, operands: Operands) -> Result<Prepared, EngineError> {
        let ctx = &self.ctx;
        let mut inputs = Inputs::new(operands);
        match &self.op {
            Op::Number(n) => Ok(eval::Val::Scalar(vec![*n; ctx.nsteps]).into()),
            Op::String(s) => Ok(eval::Val::String(s.clone()).into()),
            Op::Negate(e) => binary::negate(inputs.val(0, e)?),
            Op::Select(vs) => select::instant_selector(ctx, vs, false).await,
            Op::RangeSelect(ms) => select::range_matrix(ctx, ms).await,
            Op::Subquery(sq) => subquery::subquery_matrix(ctx, sq, inputs.try_val(0)),
            Op::Call(call) => functions::call(ctx, call, &mut inputs).await,
            Op::Aggregate(agg) => aggregate::aggregate(ctx, agg, &mut inputs),
            Op::Binary(b) => binary::binary(ctx, b, &mut inputs),
        }
    }

    fn steps(&self) -> usize {
        self.ctx.nsteps
    }

    fn name(&self) -> &'static str {
        match &self.op {
            Op::Number(_) => "Scalar",
            Op::String(_) => "String",
            Op::Negate(_) => "Negate",
            Op::Select(_) => "Select",
            Op::RangeSelect(_) => "RangeSelect",
            Op::Subquery(_) => "Subquery",
            Op::Call(call) if call.args.args.iter().any(|a| range_arg(a).is_some()) => {
                "RangeFunction"
            }
            Op::Call(_) => "Function",
            Op::Aggregate(_) => "Aggregate",
            Op::Binary(_) => "Binary",
        }
    }

    fn describe(&self) -> String {
        let what = match &self.op {
            Op::Number(n) => strata_model::format_float(*n),
            Op::String(s) => format!("{s:?}"),
            Op::Negate(_) => "-".to_string(),
            Op::Select(vs) => vs.to_string(),
            Op::RangeSelect(ms) => ms.to_string(),
            Op::Subquery(sq) => format!("{sq}"),
            Op::Call(call) => match call.args.args.iter().find_map(|a| range_arg(a)) {
                // A range selector is read by the node itself: show it.
                Some(Expr::MatrixSelector(_)) => Expr::Call(call.clone()).to_string(),
                // The subquery's inner expression is the child.
                Some(Expr::Subquery(sq)) => format!(
                    "{}(subquery [{}:{}])",
                    call.func.name,
                    display_duration(&sq.range),
                    sq.step.as_ref().map(display_duration).unwrap_or_default()
                ),
                _ => format!("{}()", call.func.name),
            },
            Op::Aggregate(agg) => format!("{}{}", agg.op, grouping(&agg.modifier)),
            Op::Binary(b) => binary_display(b),
        };
        format!("{what}, steps={}", self.ctx.nsteps)
    }
}

/// The range selector or subquery a function argument is, if it is one.
fn range_arg(arg: &Expr) -> Option<&Expr> {
    let e = unparen(arg);
    matches!(e, Expr::MatrixSelector(_) | Expr::Subquery(_)).then_some(e)
}

fn grouping(modifier: &Option<LabelModifier>) -> String {
    match modifier {
        None => String::new(),
        Some(LabelModifier::Include(ls)) => format!(" by ({})", ls.labels.join(", ")),
        Some(LabelModifier::Exclude(ls)) => format!(" without ({})", ls.labels.join(", ")),
    }
}

fn binary_display(b: &BinaryExpr) -> String {
    let mut s = b.op.to_string();
    if let Some(m) = &b.modifier {
        if m.return_bool {
            s.push_str(" bool");
        }
        match &m.matching {
            Some(LabelModifier::Include(ls)) => {
                s.push_str(&format!(" on ({})", ls.labels.join(", ")))
            }
            Some(LabelModifier::Exclude(ls)) => {
                s.push_str(&format!(" ignoring ({})", ls.labels.join(", ")))
            }
            None => {}
        }
        match &m.card {
            promql_parser::parser::VectorMatchCardinality::ManyToOne(ls) => {
                s.push_str(&format!(" group_left ({})", ls.labels.join(", ")))
            }
            promql_parser::parser::VectorMatchCardinality::OneToMany(ls) => {
                s.push_str(&format!(" group_right ({})", ls.labels.join(", ")))
            }
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use strata_model::{Matcher, SeriesSamples};

    use super::*;
    use crate::{EngineOptions, Queryable};

    fn plan_of(query: &str, (start, end, step): (i64, i64, i64)) -> Result<String, EngineError> {
        let opts = EngineOptions {
            parallelism: 2,
            ..EngineOptions::default()
        };
        let ctx = Ctx::for_query(
            &opts,
            Arc::new(Fixed(Vec::new())),
            (start, end, step),
            HashSet::new(),
        )?;
        plan(&ctx, &crate::parse(query)?).map(|root| display(&root))
    }

    #[test]
    fn one_node_per_operation_with_operands_as_children() {
        let plan = plan_of(
            "sum by (job) (rate(http_requests_total[5m])) / on (job) group_left count by (job) (up) > bool 0.5",
            (0, 600_000, 60_000),
        )
        .expect("plans");
        let expected = "\
Binary: > bool, steps=11
  Binary: / on (job) group_left (), steps=11
    Aggregate: sum by (job), steps=11
      RangeFunction: rate(http_requests_total[5m]), steps=11
    Aggregate: count by (job), steps=11
      Select: up, steps=11
  Scalar: 0.5, steps=11
";
        assert_eq!(plan, expected);
    }

    #[test]
    fn subqueries_plan_their_inner_expression_at_their_own_steps() {
        // Instant query at 10m: the windows (0, 10m] hold the inner steps 1m..10m.
        let plan = plan_of(
            "max_over_time(deriv(x[2m])[10m:1m]) + label_replace(y, \"a\", \"$1\", \"b\", \"(.*)\")",
            (600_000, 600_000, 0),
        )
        .expect("plans");
        let expected = "\
Binary: +, steps=1
  RangeFunction: max_over_time(subquery [10m:1m]), steps=1
    RangeFunction: deriv(x[2m]), steps=10
  Function: label_replace(), steps=1
    Select: y, steps=1
";
        assert_eq!(plan, expected);
    }

    /// Answers every selection with the same series.
    struct Fixed(Vec<SeriesSamples>);

    #[async_trait]
    impl Queryable for Fixed {
        async fn select(
            &self,
            _matchers: &[Matcher],
            _min_t: i64,
            _max_t: i64,
        ) -> Result<Vec<SeriesSamples>, EngineError> {
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn loaded_samples_are_released_once_their_node_is_read() {
        let data: Vec<SeriesSamples> = (0..3)
            .map(|i| SeriesSamples {
                labels: strata_model::Labels::from_pairs([
                    ("__name__", "x"),
                    ("i", &i.to_string()),
                ]),
                samples: (0..100)
                    .map(|k| strata_model::Sample {
                        t: k * 1000,
                        v: k as f64,
                    })
                    .collect(),
            })
            .collect();
        let opts = EngineOptions::default();
        let ctx = Ctx::for_query(
            &opts,
            Arc::new(Fixed(data)),
            (99_000, 99_000, 0),
            HashSet::new(),
        )
        .expect("context");
        let root = plan(&ctx, &crate::parse("sum(x)").expect("parses")).expect("plans");
        let out = root.run(ctx.exec.task()).await.expect("runs");
        assert_eq!(out.values[0], Some(vec![Some(3.0 * 99.0)]));
        // The 300 loaded samples are released; the selector's 3 output
        // values stay counted.
        assert_eq!(ctx.samples_held(), 3);
    }

    #[test]
    fn range_vectors_outside_functions_are_refused_in_range_queries() {
        let err = plan_of("x[5m]", (0, 600_000, 60_000)).expect_err("a range query");
        assert_eq!(err.http_status(), 400);
        assert!(
            plan_of("x[5m]", (0, 0, 0))
                .expect("instant")
                .starts_with("RangeSelect")
        );
    }
}
