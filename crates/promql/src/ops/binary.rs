//! Operators: unary minus, arithmetic and comparison between scalars and
//! vectors, vector matching (`on`/`ignoring`, `group_left`/`group_right`)
//! and the set operators `and`, `or`, `unless`.

use std::sync::Arc;

use promql_parser::parser::LabelModifier;
use promql_parser::parser::token::TokenType;
use promql_parser::parser::{BinaryExpr, VectorMatchCardinality};
use strata_model::Labels;
use strata_model::matching::{
    Cardinality, MatchGroup, MatchedOp, SetFilter, SetOp, VectorMatching, presence,
};
use strata_model::stats::BinaryFn;

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
pub(crate) fn scalar_fn(op: &str) -> Result<BinaryFn, EngineError> {
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
            if let Some(set) = SetOp::from_symbol(&op) {
                return Ok(set_op(ctx, set, b, l, r));
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

/// The operator's `on`/`ignoring` and `group_x` modifiers in the form the
/// shared vector matching takes. Many-to-many (the set operators) matches
/// like one-to-one; only its signatures are used.
pub(crate) fn matching(b: &BinaryExpr) -> VectorMatching {
    let on = b
        .modifier
        .as_ref()
        .and_then(|m| m.matching.as_ref())
        .map(|m| match m {
            LabelModifier::Include(ls) => (true, ls.labels.clone()),
            LabelModifier::Exclude(ls) => (false, ls.labels.clone()),
        });
    let card = match b.modifier.as_ref().map(|m| &m.card) {
        Some(VectorMatchCardinality::ManyToOne(ls)) => Cardinality::ManyToOne(ls.labels.clone()),
        Some(VectorMatchCardinality::OneToMany(ls)) => Cardinality::OneToMany(ls.labels.clone()),
        _ => Cardinality::OneToOne,
    };
    VectorMatching { on, card }
}

/// `and`, `or`, `unless`: the series of one side kept at the steps where
/// the other side has (or lacks) a series of the same signature.
pub(crate) fn set_op(
    ctx: &Ctx,
    op: SetOp,
    b: &BinaryExpr,
    l: Vec<Series>,
    r: Vec<Series>,
) -> Prepared {
    fn side(s: &[Series]) -> Vec<(&Labels, &StepValues)> {
        s.iter().map(|s| (&s.labels, &s.vals)).collect()
    }
    let filter = SetFilter::new(op, &matching(b), &side(&l), &side(&r), ctx.nsteps);
    let series: Vec<Series> = match op {
        SetOp::And | SetOp::Unless => l,
        SetOp::Or => l.into_iter().chain(r).collect(),
    };
    let (series, values) = split_series(series);
    let source = MaskSteps { values, filter };
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
    if b.modifier
        .as_ref()
        .is_some_and(|m| matches!(m.card, VectorMatchCardinality::ManyToMany))
    {
        return Err(EngineError::BadData(
            "many-to-many matching is only for set operators".into(),
        ));
    }
    let m = matching(b);
    let op = MatchedOp::new(scalar_fn(op)?, comparison, return_bool, &m);
    // "many" side first; for one-to-one, the lhs.
    let (many, one) = if op.one_to_many { (r, l) } else { (l, r) };
    fn labels(s: &[Series]) -> Vec<&Labels> {
        s.iter().map(|s| &s.labels).collect()
    }
    let pairing = m.pair(&labels(&many), &labels(&one));
    let drop_name = !comparison || return_bool;
    let outputs: Vec<(Labels, bool)> = pairing
        .outputs
        .into_iter()
        .map(|(labels, first_many)| (labels, drop_name || many[first_many].drop_name))
        .collect();
    let many: Vec<StepValues> = many.into_iter().map(|s| s.vals).collect();
    let source = BinarySteps {
        many_present: presence(&many, ctx.nsteps),
        many,
        one: one.into_iter().map(|s| s.vals).collect(),
        groups: pairing.groups,
        outputs: outputs.len(),
        op,
    };
    Ok(Prepared::new(Arc::new(source), Shape::series(outputs)))
}

// What this operation's plan nodes run item by item, step by step (see `exec::StepSource`).

/// Series filtered step by step by presence masks (`and`, `or`, `unless`).
pub(crate) struct MaskSteps {
    pub(crate) values: Vec<StepValues>,
    pub(crate) filter: SetFilter,
}

impl StepSource for MaskSteps {
    fn items(&self) -> usize {
        self.values.len()
    }

    fn eval(&self, i: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        for (step, x) in self.values[i].iter().enumerate() {
            if let Some(x) = *x
                && self.filter.keeps(i, step)
            {
                emit(i, step, x);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("set operator: series={}", self.values.len())
    }
}

/// Vector matching, one match group per item.
pub(crate) struct BinarySteps {
    /// Per step, whether the "many" side has any series.
    pub(crate) many_present: Vec<bool>,
    pub(crate) many: Vec<StepValues>,
    pub(crate) one: Vec<StepValues>,
    pub(crate) groups: Vec<MatchGroup>,
    pub(crate) outputs: usize,
    pub(crate) op: MatchedOp,
}

impl StepSource for BinarySteps {
    fn items(&self) -> usize {
        self.groups.len()
    }

    fn outputs(&self) -> usize {
        self.outputs
    }

    fn eval(&self, g: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        self.groups[g]
            .combine(&self.op, &self.many, &self.one, &self.many_present, emit)
            .map_err(|e| e.to_string())
    }

    fn describe(&self) -> String {
        format!(
            "vector matching: groups={}, outputs={}",
            self.groups.len(),
            self.outputs
        )
    }
}
