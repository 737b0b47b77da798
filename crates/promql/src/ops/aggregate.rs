//! Aggregations: `sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`,
//! `stdvar`, `quantile`, `topk`, `bottomk`, `limitk`, `limit_ratio`,
//! `count_values`, with `by` / `without` grouping.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::LabelModifier;
use promql_parser::parser::{AggregateExpr, Expr};
use strata_model::Labels;

use crate::EngineError;
use crate::eval::{Ctx, Inputs, Series, Val, split_series, unparen};
use crate::exec::{Prepared, Shape, StepSource, StepValues};

pub(crate) fn grouping_labels(labels: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        None => Labels::default(),
        Some(LabelModifier::Include(ls)) => labels.filter_names(&ls.labels, true),
        Some(LabelModifier::Exclude(ls)) => {
            labels.filter_names(&ls.labels, false).without_metric_name()
        }
    }
}

pub(crate) use strata_model::stats::{Reduction, quantile};

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
pub(crate) fn group_fn(op: &str, param: Vec<f64>) -> GroupFn {
    match Reduction::named(op) {
        Some(r) => Arc::new(move |v: &mut Vec<f64>, _| r.reduce(v)),
        None => Arc::new(move |v: &mut Vec<f64>, step| {
            quantile(param.get(step).copied().unwrap_or(f64::NAN), v)
        }),
    }
}

/// `count_values("label", v)`: per group and step, how many series have
/// each value, the value (formatted as Prometheus does) in `label`.
pub(crate) fn count_values(
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

// What this operation's plan nodes run item by item, step by step (see `exec::StepSource`).

/// An aggregation of the present values of a group's members at one step
/// (the buffer holds them, in member order, and may be reordered).
pub(crate) type GroupFn = Arc<dyn Fn(&mut Vec<f64>, usize) -> f64 + Send + Sync>;

/// Per-step values of the input series and the members of each group.
pub(crate) struct GroupSteps {
    pub(crate) values: Vec<StepValues>,
    pub(crate) groups: Vec<Vec<usize>>,
    pub(crate) nsteps: usize,
    pub(crate) f: GroupFn,
}

impl StepSource for GroupSteps {
    fn items(&self) -> usize {
        self.groups.len()
    }

    fn eval(&self, g: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        let members = &self.groups[g];
        let mut buf = Vec::with_capacity(members.len());
        for step in 0..self.nsteps {
            buf.clear();
            buf.extend(members.iter().filter_map(|&i| self.values[i][step]));
            if !buf.is_empty() {
                emit(g, step, (self.f)(&mut buf, step));
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "groups={}, series={}, steps={}",
            self.groups.len(),
            self.values.len(),
            self.nsteps
        )
    }
}

/// The `k` best members of each group at each step (`topk`: largest
/// first, `bottomk`: smallest; NaN ranks last in both); outputs are the
/// input series.
pub(crate) struct RankSteps {
    pub(crate) values: Vec<StepValues>,
    pub(crate) groups: Vec<Vec<usize>>,
    pub(crate) ks: Vec<f64>,
    pub(crate) largest: bool,
}

impl RankSteps {
    /// Members of group `g` selected at `step`, best first.
    pub(crate) fn select(&self, g: usize, step: usize) -> Vec<(usize, f64)> {
        let members = &self.groups[g];
        let k = self.ks.get(step).copied().unwrap_or(0.0);
        if k < 1.0 {
            return Vec::new();
        }
        let k = if k > members.len() as f64 {
            members.len()
        } else {
            k as usize
        };
        let mut present: Vec<(usize, f64)> = members
            .iter()
            .filter_map(|&i| self.values[i][step].map(|v| (i, v)))
            .collect();
        present.sort_by(|a, b| strata_model::stats::rank_order(self.largest, a.1, b.1));
        present.truncate(k);
        present
    }
}

impl StepSource for RankSteps {
    fn items(&self) -> usize {
        self.groups.len()
    }

    fn outputs(&self) -> usize {
        self.values.len()
    }

    fn eval(&self, g: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        let nsteps = self.values.first().map_or(0, Vec::len);
        for step in 0..nsteps {
            for (i, v) in self.select(g, step) {
                emit(i, step, v);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "{}k: groups={}, series={}",
            if self.largest { "top" } else { "bottom" },
            self.groups.len(),
            self.values.len()
        )
    }
}
