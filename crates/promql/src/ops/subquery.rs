//! Subqueries: the inner expression evaluated at its own steps, aligned to
//! absolute multiples of its resolution, bounded before evaluation.

use promql_parser::parser::SubqueryExpr;
use strata_model::{Sample, SeriesSamples};

use crate::EngineError;
use crate::eval::{Ctx, Val, finalize_names};
use crate::exec::Prepared;
use crate::ops::select::{RangeInput, SeriesInput, at_ms, bounds, offset_ms, window};

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
