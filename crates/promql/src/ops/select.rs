//! Selections: instant and range vector selectors (lookback, `offset`,
//! `@`), the samples they load (charged to the query's memory pool, split
//! in time slices), and the per-step windows range functions read.

use std::sync::Arc;

use promql_parser::parser::{AtModifier, Expr, MatrixSelector, Offset, VectorSelector};
use strata_model::{
    Labels, METRIC_NAME, MatchOp, Matcher, Sample, SeriesSamples, StepWindows, is_stale_nan,
    selector_alternatives,
};

use crate::EngineError;
use crate::eval::{Ctx, Inputs, QueryState, Val, unparen};
use crate::exec::{Prepared, Shape, StepSource, StepValues, StoredSteps};
use crate::ops::subquery::subquery_range;

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

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

pub(crate) fn at_ms(ctx: &Ctx, at: &Option<AtModifier>) -> Option<i64> {
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

/// Reads samples of the selector's series in `[min_t, max_t]` (only those
/// in `windows`, when given), charging them to the query; also what was
/// charged (`(samples, bytes)`).
pub(crate) async fn select(
    ctx: &Ctx,
    vs: &VectorSelector,
    (min_t, max_t): (i64, i64),
    windows: Option<StepWindows>,
) -> Result<(Vec<SeriesSamples>, (usize, usize)), EngineError> {
    let alts = selector_matchers(vs);
    let mut out: Vec<SeriesSamples> = Vec::new();
    for (i, matchers) in alts.iter().enumerate() {
        let got = match windows {
            Some(w) => ctx.q.select_windows(matchers, min_t, max_t, w).await?,
            None => ctx.q.select(matchers, min_t, max_t).await?,
        };
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
    ctx.count_fetched(out.len(), samples);
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
pub(crate) fn loaded_size(series: &[SeriesSamples]) -> (usize, usize) {
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
pub(crate) async fn select_samples(
    ctx: &Ctx,
    vs: &VectorSelector,
    range: (i64, i64),
    windows: Option<StepWindows>,
    drop_stale: bool,
) -> Result<(Vec<SeriesSamples>, (usize, usize)), EngineError> {
    let (mut data, charged) = select(ctx, vs, range, windows).await?;
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
    let slice = sparse_slice(&times, reach, ctx.opts.selection_slice.as_millis() as i64);
    let slices = time_slices(&times, reach, slice);
    if slices.len() == 1 {
        let (lo, hi) = bounds(&times);
        let windows = step_windows(&times, reach);
        let (data, loaded) =
            select_samples(ctx, vs, (lo - reach + 1, hi), windows, drop_stale).await?;
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
    let mut index: strata_model::LabelsMap<usize> = Default::default();
    let mut series: Vec<(Labels, StepValues)> = Vec::new();
    for (a, b) in slices {
        let part = &times[a..b];
        let (lo, hi) = bounds(part);
        let windows = step_windows(part, reach);
        let (data, loaded) =
            select_samples(ctx, vs, (lo - reach + 1, hi), windows, drop_stale).await?;
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

/// The windows evenly spaced `times` read `reach` back, when they leave
/// samples between them unread (steps further apart than `reach`).
fn step_windows(times: &[i64], reach: i64) -> Option<StepWindows> {
    let (&first, &last) = (times.first()?, times.last()?);
    let step = times.get(1)? - first;
    // Only an even grid is described by one step (the engine's always is).
    if step <= 0 || (last - first) / step != times.len() as i64 - 1 || (last - first) % step != 0 {
        return None;
    }
    StepWindows::new(last, step, reach)
}

/// The selection slice for steps over `times`: when each step reads only
/// `reach` of every step's span, a slice holds that fraction of its
/// samples, so it may span as much longer (up to 64 times) for the same
/// memory, reading each stored chunk fewer times.
fn sparse_slice(times: &[i64], reach: i64, slice: i64) -> i64 {
    match step_windows(times, reach) {
        Some(w) => slice.saturating_mul((w.step / w.width).clamp(1, 64)),
        None => slice,
    }
}

/// Consecutive step ranges `[a, b)` of `times` (evenly spaced) whose
/// samples, `reach` back from each step, span at most `slice` ms; one range
/// when everything fits (or `slice` is 0). A slice covers at least `reach`
/// worth of steps, so overlapping windows read samples at most twice.
pub(crate) fn time_slices(times: &[i64], reach: i64, slice: i64) -> Vec<(usize, usize)> {
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

pub(crate) fn bounds(times: &[i64]) -> (i64, i64) {
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
    let (data, _) = select_samples(ctx, &ms.vs, (lo - range + 1, hi), None, true).await?;
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

/// Samples in the left-open window `(t - range, t]`.
pub(crate) fn window(samples: &[Sample], t: i64, range: i64) -> &[Sample] {
    let lo = samples.partition_point(|x| x.t <= t - range);
    let hi = samples.partition_point(|x| x.t <= t);
    &samples[lo..hi.max(lo)]
}

// What this operation's plan nodes run item by item, step by step (see `exec::StepSource`).

/// A range function: `(window, step index, step time) -> value`.
pub(crate) type WindowFn = Arc<dyn Fn(&[Sample], usize, i64) -> Option<f64> + Send + Sync>;

/// What each step of a series evaluates to.
#[derive(Clone)]
pub(crate) enum StepKernel {
    /// The latest sample in `(t - lookback, t]` unless it is a stale
    /// marker: its value, or its timestamp in seconds (`timestamp()`).
    Lookback { lookback: i64, timestamp: bool },
    /// A function of the samples in `(t - range, t]`, when there are any.
    Window { range: i64, f: WindowFn },
}

impl StepKernel {
    /// How far before a step its samples may lie: the lookback delta or
    /// the window length.
    pub(crate) fn reach(&self) -> i64 {
        match self {
            StepKernel::Lookback { lookback, .. } => *lookback,
            StepKernel::Window { range, .. } => *range,
        }
    }

    /// Evaluates `times` (steps `first_step..` of the node), emitting
    /// `(index into times, value)`.
    fn eval(
        &self,
        samples: &[Sample],
        times: &[i64],
        first_step: usize,
        mut emit: impl FnMut(usize, f64),
    ) {
        match self {
            StepKernel::Lookback {
                lookback,
                timestamp,
            } => {
                let mut idx = 0;
                for (i, &t) in times.iter().enumerate() {
                    idx = seek_after(samples, idx, t);
                    if let Some(last) = samples[..idx].last()
                        && last.t > t - lookback
                        && !is_stale_nan(last.v)
                    {
                        emit(
                            i,
                            if *timestamp {
                                last.t as f64 / 1000.0
                            } else {
                                last.v
                            },
                        );
                    }
                }
            }
            StepKernel::Window { range, f } => {
                let (mut lo, mut hi) = (0, 0);
                for (i, &t) in times.iter().enumerate() {
                    // The left-open window (t - range, t].
                    lo = seek_after(samples, lo, t - range);
                    hi = seek_after(samples, hi.max(lo), t);
                    let w = &samples[lo..hi];
                    if !w.is_empty()
                        && let Some(v) = f(w, first_step + i, t)
                    {
                        emit(i, v);
                    }
                }
            }
        }
    }
}

/// The index of the first of `samples` (time-ordered) after `t`, searched
/// from `from` onwards: steps' times never decrease, so each step's search
/// starts where the previous one ended and gallops forward, instead of
/// searching the whole series again. A time before `from`'s sample (which
/// steps never ask for) searches from the start.
pub(crate) fn seek_after(samples: &[Sample], from: usize, t: i64) -> usize {
    if from > 0 && samples.get(from - 1).is_none_or(|s| s.t > t) {
        return samples.partition_point(|x| x.t <= t);
    }
    let mut bound = 1;
    while from + bound < samples.len() && samples[from + bound - 1].t <= t {
        bound *= 2;
    }
    let end = (from + bound).min(samples.len());
    from + samples[from..end].partition_point(|x| x.t <= t)
}

/// Raw samples of selected series and the kernel each step applies to them.
pub(crate) struct SeriesSteps {
    pub(crate) samples: Vec<Vec<Sample>>,
    pub(crate) times: Vec<i64>,
    pub(crate) kernel: StepKernel,
    /// The node step of `times[0]` (a slice of the node's steps starts later).
    pub(crate) first_step: usize,
    /// Dropped with the samples: releases what loading them was charged.
    pub(crate) _charge: Option<Box<dyn Send + Sync>>,
}

impl SeriesSteps {
    /// A node's result: `kernel` at `times` over each selected series,
    /// their names marked for removal when `drop_name`; `charge` is
    /// dropped with the samples.
    pub(crate) fn prepared(
        data: Vec<SeriesSamples>,
        drop_name: bool,
        (times, kernel): (Vec<i64>, StepKernel),
        charge: Option<Box<dyn Send + Sync>>,
    ) -> Prepared {
        let (series, samples): (Vec<(Labels, bool)>, Vec<Vec<Sample>>) = data
            .into_iter()
            .map(|s| ((s.labels, drop_name), s.samples))
            .unzip();
        let source = SeriesSteps {
            samples,
            times,
            kernel,
            first_step: 0,
            _charge: charge,
        };
        Prepared::new(Arc::new(source), Shape::series(series))
    }
}

impl StepSource for SeriesSteps {
    fn items(&self) -> usize {
        self.samples.len()
    }

    fn eval(&self, i: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        self.kernel
            .eval(&self.samples[i], &self.times, self.first_step, |step, v| {
                emit(i, step, v)
            });
        Ok(())
    }

    fn describe(&self) -> String {
        let kernel = match &self.kernel {
            StepKernel::Lookback { .. } => "lookback".to_string(),
            StepKernel::Window { range, .. } => format!("window={range}ms"),
        };
        format!(
            "series={}, steps={}, {kernel}",
            self.samples.len(),
            self.times.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
