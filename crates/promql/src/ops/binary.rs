//! Operators: unary minus, arithmetic and comparison between scalars and
//! vectors, vector matching (`on`/`ignoring`, `group_left`/`group_right`)
//! and the set operators `and`, `or`, `unless`.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::LabelModifier;
use promql_parser::parser::token::TokenType;
use promql_parser::parser::{BinaryExpr, VectorMatchCardinality};
use strata_model::Labels;

use crate::EngineError;
use crate::eval::{Ctx, Inputs, Series, Val, split_series};
use crate::exec::{MapFn, Prepared, Shape, StepSource, StepValues};

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

pub(crate) fn is_comparison(op: TokenType) -> bool {
    op.is_comparison_operator()
}

/// The arithmetic or comparison operator `op` as a function, resolved once
/// per operation rather than per value.
pub(crate) fn scalar_fn(op: &str) -> Result<ScalarFn, EngineError> {
    strata_model::stats::binary_fn(op)
        .ok_or_else(|| EngineError::Unsupported(format!("binary operator {op}")))
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

pub(crate) fn vector_scalar(
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
pub(crate) fn signature(labels: &Labels, b: &BinaryExpr) -> Labels {
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
pub(crate) fn set_op(
    ctx: &Ctx,
    op: &str,
    b: &BinaryExpr,
    l: Vec<Series>,
    r: Vec<Series>,
) -> Prepared {
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

pub(crate) fn vector_vector(
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

// What this operation's plan nodes run item by item, step by step (see `exec::StepSource`).

/// Which values of a series a set operator keeps: all of them (`None`),
/// or those at steps where the other side's presence for its signature
/// (`mask`, absent when the other side lacks that signature) equals `want`.
pub(crate) type KeepRule = Option<(Option<usize>, bool)>;

/// Series filtered step by step by presence masks (`and`, `or`, `unless`).
pub(crate) struct MaskSteps {
    pub(crate) values: Vec<StepValues>,
    pub(crate) masks: Vec<Vec<bool>>,
    pub(crate) rules: Vec<KeepRule>,
}

impl StepSource for MaskSteps {
    fn items(&self) -> usize {
        self.values.len()
    }

    fn eval(&self, i: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        for (step, x) in self.values[i].iter().enumerate() {
            let Some(x) = *x else { continue };
            let keep = match self.rules[i] {
                None => true,
                Some((mask, want)) => mask.is_some_and(|m| self.masks[m][step]) == want,
            };
            if keep {
                emit(i, step, x);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("set operator: series={}", self.values.len())
    }
}

/// The series of both sides of a binary operator that share one matching
/// signature, and the output series of each (many, one) pair.
pub(crate) struct MatchGroup {
    /// The signature, for error messages.
    pub sig: Labels,
    /// Indexes into the "many" side (the left side of one-to-one).
    pub many: Vec<usize>,
    /// Indexes into the "one" side.
    pub one: Vec<usize>,
    /// Output series of `(many[m], one[o])` at `m * one.len() + o`.
    pub outputs: Vec<usize>,
}

/// An arithmetic or comparison operator on two values: `(value, keep)`.
pub(crate) type ScalarFn = strata_model::stats::BinaryFn;

/// How a binary operator combines matched values.
#[derive(Clone)]
pub(crate) struct BinaryOp {
    /// `(lhs, rhs) -> (value, keep)`: `keep` is a comparison's outcome.
    pub f: ScalarFn,
    pub comparison: bool,
    pub return_bool: bool,
    /// The "many" side is the right one (`group_right`).
    pub one_to_many: bool,
    pub one_to_one: bool,
}

/// Vector matching, one match group per item.
pub(crate) struct BinarySteps {
    /// Per step, whether the "many" side has any series (Prometheus matches
    /// nothing, and reports nothing, at a step where a side is empty).
    pub(crate) many_present: Vec<bool>,
    pub(crate) many: Vec<StepValues>,
    pub(crate) one: Vec<StepValues>,
    pub(crate) groups: Vec<MatchGroup>,
    pub(crate) outputs: usize,
    pub(crate) nsteps: usize,
    pub(crate) op: BinaryOp,
}

impl StepSource for BinarySteps {
    fn items(&self) -> usize {
        self.groups.len()
    }

    fn outputs(&self) -> usize {
        self.outputs
    }

    fn eval(&self, g: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        let group = &self.groups[g];
        let op = &self.op;
        for step in 0..self.nsteps {
            if !self.many_present.get(step).copied().unwrap_or(false) {
                continue;
            }
            let many = group
                .many
                .iter()
                .enumerate()
                .filter_map(|(m, &i)| self.many[i][step].map(|v| (m, v)));
            let mut present = group
                .one
                .iter()
                .enumerate()
                .filter_map(|(o, &i)| self.one[i][step].map(|v| (o, v)));
            let Some((o, ov)) = present.next() else {
                continue;
            };
            if present.next().is_some() {
                return Err(format!(
                    "found duplicate series for the match group {} on the {} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                    group.sig,
                    if op.one_to_many { "left" } else { "right" }
                ));
            }
            // Prometheus 3 reports an implicit many-to-one match even when a
            // comparison would filter all but one pair out (operators.test).
            for (k, (m, mv)) in many.enumerate() {
                if op.one_to_one && k > 0 {
                    return Err(format!(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right); match group {}",
                        group.sig
                    ));
                }
                let (lv, rv) = if op.one_to_many { (ov, mv) } else { (mv, ov) };
                let (val, keep) = (op.f)(lv, rv);
                let val = match (op.comparison, op.return_bool, keep) {
                    (true, true, _) => f64::from(u8::from(keep)),
                    (true, false, false) => continue,
                    _ => val,
                };
                emit(group.outputs[m * group.one.len() + o], step, val);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "vector matching: groups={}, outputs={}",
            self.groups.len(),
            self.outputs
        )
    }
}
