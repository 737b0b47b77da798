//! PromQL functions: range functions over a sliding window of raw samples
//! (`rate`, `*_over_time`, ...) and per-sample instant functions.

use std::sync::Arc;

use promql_parser::parser::{Call, Expr};
use strata_model::{Labels, METRIC_NAME, MatchOp, Matcher, Sample, SeriesSamples, format_float};

use crate::EngineError;
use crate::eval::{Ctx, Inputs, Series, Val, dedup_labelsets, unparen};
use crate::exec::Prepared;
use crate::histogram::{BUCKET_LABEL, Bucket, bucket_fraction, bucket_quantile, group_buckets};
use crate::ops::select::StepKernel;
use crate::ops::select::{
    RangeInput, evaluate_series, instant_selector, range_input, selector_matchers, window,
};
use strata_model::stats::{kahan_inc, kahan_sum, mean, quantile, variance};

/// Evaluates a function call.
pub(crate) async fn call(
    ctx: &Ctx,
    c: &Call,
    inputs: &mut Inputs,
) -> Result<Prepared, EngineError> {
    let name = c.func.name;
    let args = &c.args.args;
    match name {
        "rate"
        | "increase"
        | "delta"
        | "irate"
        | "idelta"
        | "avg_over_time"
        | "sum_over_time"
        | "count_over_time"
        | "min_over_time"
        | "max_over_time"
        | "last_over_time"
        | "present_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "changes"
        | "resets"
        | "deriv"
        | "first_over_time"
        | "ts_of_min_over_time"
        | "ts_of_max_over_time"
        | "ts_of_first_over_time"
        | "ts_of_last_over_time" => {
            let ra = range_input(ctx, (0, arg(args, 0, name)?), inputs, name).await?;
            let range = ra.range;
            range_fn(ctx, ra, name, move |w, _, t| range_value(name, w, t, range)).await
        }
        "quantile_over_time" => {
            let q = inputs.scalar(0, arg(args, 0, name)?)?;
            ctx.check_quantile(&q);
            let ra = range_input(ctx, (1, arg(args, 1, name)?), inputs, name).await?;
            range_fn(ctx, ra, name, move |w, step, _| {
                let mut v: Vec<f64> = w.iter().map(|s| s.v).collect();
                Some(quantile(q[step], &mut v))
            })
            .await
        }
        "predict_linear" => {
            let ra = range_input(ctx, (0, arg(args, 0, name)?), inputs, name).await?;
            let d = inputs.scalar(1, arg(args, 1, name)?)?;
            // The intercept is at the evaluation time, not the selector's
            // (`@`/`offset`-shifted) time.
            let (start, step_ms) = (ctx.start, ctx.step);
            range_fn(ctx, ra, name, move |w, step, _| {
                if w.len() < 2 {
                    return None;
                }
                let (slope, intercept) = linear_regression(w, start + step as i64 * step_ms);
                Some(intercept + slope * d[step])
            })
            .await
        }
        "absent_over_time" => {
            let ra = range_input(ctx, (0, arg(args, 0, name)?), inputs, name).await?;
            let selector = ra.selector;
            // Present at a step where any series has a sample in its window.
            let present = range_fn(ctx, ra, name, |_, _, _| Some(1.0)).await?;
            let present = ctx.exec.run_prepared(present, ctx.nsteps).await?;
            let present = Val::Vector(vec![Series::new(
                Labels::default(),
                (0..ctx.nsteps)
                    .map(|i| {
                        present
                            .iter()
                            .flatten()
                            .any(|v| v[i].is_some())
                            .then_some(1.0)
                    })
                    .collect(),
            )]);
            let labelled_by = match selector {
                Some(vs) => Expr::VectorSelector(vs.clone()),
                None => Expr::NumberLiteral(promql_parser::parser::NumberLiteral { val: 0.0 }),
            };
            absent(ctx, present, &labelled_by).map(Into::into)
        }
        "absent" => {
            let v = inputs.val(0, arg(args, 0, name)?)?;
            absent(ctx, v, arg(args, 0, name)?).map(Into::into)
        }
        "abs" | "ceil" | "floor" | "exp" | "ln" | "log2" | "log10" | "sqrt" | "sgn" | "sin"
        | "cos" | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh"
        | "acosh" | "atanh" | "deg" | "rad" => {
            let v = inputs.vector(0, arg(args, 0, name)?)?;
            map_values(ctx, v, move |x, _| Some(math(name, x)))
        }
        "round" => {
            let v = inputs.vector(0, arg(args, 0, name)?)?;
            let to = match args.get(1) {
                Some(e) => inputs.scalar(1, e)?,
                None => vec![1.0; ctx.nsteps],
            };
            map_values(ctx, v, move |x, step| {
                let inv = 1.0 / to[step];
                Some((x * inv + 0.5).floor() / inv)
            })
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = inputs.vector(0, arg(args, 0, name)?)?;
            let a = inputs.scalar(1, arg(args, 1, name)?)?;
            let b = match name {
                "clamp" => inputs.scalar(2, arg(args, 2, name)?)?,
                _ => Vec::new(),
            };
            if name == "clamp" {
                // min > max yields an empty vector at that step.
                let v = v
                    .into_iter()
                    .map(|mut s| {
                        for (i, x) in s.vals.iter_mut().enumerate() {
                            if a[i] > b[i] {
                                *x = None;
                            }
                        }
                        s
                    })
                    .collect();
                return map_values(ctx, v, move |x, i| Some(x.max(a[i]).min(b[i])));
            }
            map_values(ctx, v, move |x, i| {
                Some(if name == "clamp_min" {
                    x.max(a[i])
                } else {
                    x.min(a[i])
                })
            })
        }
        // Prometheus unwraps parentheses here: `timestamp((x))` is `timestamp(x)`.
        "timestamp" => match unparen(arg(args, 0, name)?) {
            Expr::VectorSelector(vs) => instant_selector(ctx, vs, true).await,
            other => {
                let v = inputs.vector(0, other)?;
                let times: Vec<f64> = (0..ctx.nsteps).map(|i| ctx.ts(i) as f64 / 1000.0).collect();
                map_values(ctx, v, move |_, i| Some(times[i]))
            }
        },
        "time" => done(Val::Scalar(
            (0..ctx.nsteps).map(|i| ctx.ts(i) as f64 / 1000.0).collect(),
        )),
        "vector" => {
            let s = inputs.scalar(0, arg(args, 0, name)?)?;
            done(Val::Vector(vec![Series::new(
                Labels::default(),
                s.into_iter().map(Some).collect(),
            )]))
        }
        "scalar" => {
            let v = inputs.vector(0, arg(args, 0, name)?)?;
            done(Val::Scalar(
                (0..ctx.nsteps)
                    .map(|i| {
                        let mut present = v.iter().filter_map(|s| s.vals[i]);
                        match (present.next(), present.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "sort" | "sort_desc" => {
            let mut v = inputs.vector(0, arg(args, 0, name)?)?;
            warn_sort_in_range_query(ctx);
            if ctx.nsteps == 1 {
                let key = |s: &Series| s.vals[0].unwrap_or(f64::NAN);
                v.sort_by(|a, b| {
                    let (x, y) = (key(a), key(b));
                    let o = match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => return std::cmp::Ordering::Greater,
                        (false, true) => return std::cmp::Ordering::Less,
                        _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                    };
                    if name == "sort" { o } else { o.reverse() }
                });
            }
            done(Val::Vector(v))
        }
        "mad_over_time" => {
            let ra = range_input(ctx, (0, arg(args, 0, name)?), inputs, name).await?;
            range_fn(ctx, ra, name, |w, _, _| {
                let mut v = values(w);
                if v.iter().any(|x| x.is_nan()) {
                    return Some(f64::NAN);
                }
                let median = quantile(0.5, &mut v);
                let mut dev: Vec<f64> = w.iter().map(|s| (s.v - median).abs()).collect();
                Some(quantile(0.5, &mut dev))
            })
            .await
        }
        "double_exponential_smoothing" | "holt_winters" => {
            let ra = range_input(ctx, (0, arg(args, 0, name)?), inputs, name).await?;
            let sf = inputs.scalar(1, arg(args, 1, name)?)?;
            let tf = inputs.scalar(2, arg(args, 2, name)?)?;
            for (&s, &t) in sf.iter().zip(&tf) {
                if s <= 0.0 || s >= 1.0 || s.is_nan() {
                    return Err(EngineError::Execution(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {s:.6}"
                    )));
                }
                if t <= 0.0 || t >= 1.0 || t.is_nan() {
                    return Err(EngineError::Execution(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {t:.6}"
                    )));
                }
            }
            range_fn(ctx, ra, name, move |w, step, _| {
                double_exponential_smoothing(w, sf[step], tf[step])
            })
            .await
        }
        "label_replace" => {
            let v = inputs.vector(0, arg(args, 0, name)?)?;
            let dst = string_arg(args, 1, name)?;
            let replacement = string_arg(args, 2, name)?;
            let src = string_arg(args, 3, name)?;
            let pattern = string_arg(args, 4, name)?;
            let re = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| {
                EngineError::BadData(format!(
                    "invalid regular expression in label_replace(): {pattern}: {e}"
                ))
            })?;
            if !valid_label_name(ctx, dst) {
                return Err(EngineError::BadData(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let out = v
                .into_iter()
                .map(|mut s| {
                    let value = s.labels.get(src).unwrap_or("");
                    if let Some(caps) = re.captures(value) {
                        let mut res = String::new();
                        caps.expand(replacement, &mut res);
                        s.labels.set(dst, &res);
                        if dst == METRIC_NAME {
                            s.drop_name = false;
                        }
                    }
                    s
                })
                .collect();
            done(Val::Vector(dedup_labelsets(out)?))
        }
        "label_join" => {
            let v = inputs.vector(0, arg(args, 0, name)?)?;
            let dst = string_arg(args, 1, name)?;
            let sep = string_arg(args, 2, name)?;
            let srcs: Vec<&str> = (3..args.len())
                .map(|i| string_arg(args, i, name))
                .collect::<Result<_, _>>()?;
            if !valid_label_name(ctx, dst) {
                return Err(EngineError::BadData(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            let out = v
                .into_iter()
                .map(|mut s| {
                    let joined = srcs
                        .iter()
                        .map(|l| s.labels.get(l).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(sep);
                    s.labels.set(dst, &joined);
                    if dst == METRIC_NAME {
                        s.drop_name = false;
                    }
                    s
                })
                .collect();
            done(Val::Vector(dedup_labelsets(out)?))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = match args.first() {
                Some(e) => inputs.vector(0, e)?,
                None => vec![Series::new(
                    Labels::default(),
                    (0..ctx.nsteps)
                        .map(|i| Some(ctx.ts(i) as f64 / 1000.0))
                        .collect(),
                )],
            };
            map_values(ctx, v, move |x, _| Some(date_part(name, x)))
        }
        "min_of" | "max_of" => {
            let a = inputs.scalar(0, arg(args, 0, name)?)?;
            let b = inputs.scalar(1, arg(args, 1, name)?)?;
            done(Val::Scalar(
                a.iter()
                    .zip(&b)
                    .map(|(&x, &y)| {
                        if x.is_nan() || y.is_nan() {
                            f64::NAN
                        } else if name == "min_of" {
                            x.min(y)
                        } else {
                            x.max(y)
                        }
                    })
                    .collect(),
            ))
        }
        "pi" => done(Val::Scalar(vec![std::f64::consts::PI; ctx.nsteps])),
        // The query's own step, range, start and end, in seconds, at any
        // subquery depth.
        "step" | "range" | "start" | "end" => {
            let v = match name {
                "step" => ctx.query_step,
                "range" => ctx.query_end - ctx.query_start,
                "start" => ctx.query_start,
                _ => ctx.query_end,
            } as f64
                / 1000.0;
            done(Val::Scalar(vec![v; ctx.nsteps]))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = inputs.vector(0, arg(args, 0, name)?)?;
            warn_sort_in_range_query(ctx);
            let names: Vec<&str> = (1..args.len())
                .map(|i| string_arg(args, i, name))
                .collect::<Result<_, _>>()?;
            if ctx.nsteps == 1 {
                v.sort_by(|a, b| {
                    let mut o = std::cmp::Ordering::Equal;
                    for l in &names {
                        o = natural_cmp(
                            a.labels.get(l).unwrap_or(""),
                            b.labels.get(l).unwrap_or(""),
                        );
                        if o.is_ne() {
                            break;
                        }
                    }
                    let o = o.then_with(|| a.labels.cmp(&b.labels));
                    if name == "sort_by_label" {
                        o
                    } else {
                        o.reverse()
                    }
                });
            }
            done(Val::Vector(v))
        }
        "histogram_quantile" => {
            let q = inputs.scalar(0, arg(args, 0, name)?)?;
            ctx.check_quantile(&q);
            let v = inputs.vector(1, arg(args, 1, name)?)?;
            classic_histogram(ctx, v, |buckets, step, metric| {
                quantile_noting_repairs(ctx, q[step], buckets, metric)
            })
            .map(Into::into)
        }
        "histogram_quantiles" => {
            let v = inputs.vector(0, arg(args, 0, name)?)?;
            let label = string_arg(args, 1, name)?;
            let mut out = Vec::new();
            for i in 2..args.len() {
                let q = inputs.scalar(i, arg(args, i, name)?)?;
                ctx.check_quantile(&q);
                let Val::Vector(series) =
                    classic_histogram(ctx, v.clone(), |buckets, step, metric| {
                        quantile_noting_repairs(ctx, q[step], buckets, metric)
                    })?
                else {
                    continue;
                };
                for mut s in series {
                    s.labels.set(label, &format_openmetrics_float(q[0]));
                    out.push(s);
                }
            }
            done(Val::Vector(out))
        }
        "histogram_fraction" => {
            let lower = inputs.scalar(0, arg(args, 0, name)?)?;
            let upper = inputs.scalar(1, arg(args, 1, name)?)?;
            let v = inputs.vector(2, arg(args, 2, name)?)?;
            classic_histogram(ctx, v, |buckets, step, _| {
                bucket_fraction(lower[step], upper[step], buckets)
            })
            .map(Into::into)
        }
        // Native-histogram functions ignore float samples.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            inputs.vector(0, arg(args, 0, name)?)?;
            done(Val::Vector(Vec::new()))
        }
        other => Err(EngineError::Unsupported(format!("function {other}()"))),
    }
}

/// A node result computed in full.
fn done(v: Val) -> Result<Prepared, EngineError> {
    Ok(v.into())
}

/// `bucket_quantile`, adding Prometheus's info when the buckets had to be
/// made monotonic.
fn quantile_noting_repairs(ctx: &Ctx, q: f64, buckets: Vec<Bucket>, metric: &str) -> f64 {
    let (v, forced) = bucket_quantile(q, buckets);
    if forced {
        ctx.info(format_args!(
            "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {metric:?}"
        ));
    }
    v
}

fn warn_sort_in_range_query(ctx: &Ctx) {
    if ctx.query_step != 0 {
        ctx.warn(
            "sort is ineffective for range queries since results are always ordered by labels",
        );
    }
}

fn string_arg<'a>(args: &'a [Box<Expr>], i: usize, f: &str) -> Result<&'a str, EngineError> {
    match unparen(arg(args, i, f)?) {
        Expr::StringLiteral(s) => Ok(s.val.as_str()),
        other => Err(EngineError::BadData(format!(
            "expected a string as argument {} of {f}(), got {other}",
            i + 1
        ))),
    }
}

/// Label names as Prometheus 3 accepts them: any non-empty UTF-8 string.
/// Any non-empty UTF-8 name is valid (Prometheus 3); a literal whose byte
/// escapes are not UTF-8 is not.
fn valid_label_name(ctx: &Ctx, name: &str) -> bool {
    !name.is_empty() && !ctx.invalid_utf8.contains(name)
}

/// Applies a classic-histogram estimate to every histogram at every step
/// where it has at least one bucket value.
fn classic_histogram(
    ctx: &Ctx,
    input: Vec<Series>,
    estimate: impl Fn(Vec<Bucket>, usize, &str) -> f64,
) -> Result<Val, EngineError> {
    let (groups, malformed) = group_buckets(input);
    for labels in malformed {
        ctx.warn(format_args!(
            "bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
            labels.get(BUCKET_LABEL).unwrap_or(""),
            labels.metric_name()
        ));
    }
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let vals: Vec<Option<f64>> = (0..ctx.nsteps)
            .map(|step| {
                let buckets: Vec<Bucket> = g
                    .buckets
                    .iter()
                    .filter_map(|(ub, vals)| vals[step].map(|c| (*ub, c)))
                    .collect();
                (!buckets.is_empty()).then(|| estimate(buckets, step, g.labels.metric_name()))
            })
            .collect();
        if vals.iter().any(Option::is_some) {
            out.push(Series::dropping_name(g.labels, vals));
        }
    }
    Ok(Val::Vector(dedup_labelsets(finalize_dropped(out))?))
}

/// Drops metric names right away where two histograms of different names
/// would otherwise only collide at the end of the query.
fn finalize_dropped(series: Vec<Series>) -> Vec<Series> {
    series
        .into_iter()
        .map(|mut s| {
            s.labels = s.labels.without_metric_name();
            s.drop_name = false;
            s
        })
        .collect()
}

/// Holt's linear trend smoothing over the window's samples (Prometheus 3's
/// `double_exponential_smoothing`, formerly `holt_winters`).
fn double_exponential_smoothing(w: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, w[0].v);
    let mut b = w[1].v - w[0].v;
    for (i, x) in w.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * x.v + (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = next;
    }
    Some(s1)
}

/// A calendar field of a Unix time in seconds, in UTC.
fn date_part(name: &str, secs: f64) -> f64 {
    use chrono::{Datelike, Timelike};
    if !secs.is_finite() {
        return secs;
    }
    let Some(t) = chrono::DateTime::from_timestamp(secs.trunc() as i64, 0) else {
        return f64::NAN;
    };
    (match name {
        "day_of_month" => t.day(),
        "day_of_week" => t.weekday().num_days_from_sunday(),
        "day_of_year" => t.ordinal(),
        "days_in_month" => {
            let (y, m) = (t.year(), t.month());
            let next = if m == 12 {
                chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)
            } else {
                chrono::NaiveDate::from_ymd_opt(y, m + 1, 1)
            };
            next.and_then(|n| n.pred_opt()).map_or(0, |d| d.day())
        }
        "hour" => t.hour(),
        "minute" => t.minute(),
        "month" => t.month(),
        _ => return t.year() as f64,
    }) as f64
}

/// Natural order: runs of digits compare by number, the rest as text.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, dy) = (&x[..nx], &y[..ny]);
                let tx = trim_zeros(dx);
                let ty = trim_zeros(dy);
                let o = tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
                if o.is_ne() {
                    return o;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let z = d.iter().take_while(|&&c| c == b'0').count();
    &d[z.min(d.len().saturating_sub(1))..]
}

/// Formats a float as OpenMetrics writes label values: whole numbers keep
/// a `.0` (`1.0`, `0.0`).
fn format_openmetrics_float(f: f64) -> String {
    let s = format_float(f);
    if f.is_finite() && !s.contains(['.', 'e']) {
        format!("{s}.0")
    } else {
        s
    }
}

fn arg<'a>(args: &'a [Box<Expr>], i: usize, f: &str) -> Result<&'a Expr, EngineError> {
    args.get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| EngineError::BadData(format!("missing argument {} of {f}()", i + 1)))
}

/// Applies `f(window, step, eval_time)` at every step of every series of
/// a range input: the node's items are the series.
async fn range_fn(
    ctx: &Ctx,
    input: RangeInput<'_>,
    name: &str,
    f: impl Fn(&[Sample], usize, i64) -> Option<f64> + Send + Sync + 'static,
) -> Result<Prepared, EngineError> {
    let RangeInput {
        input,
        times,
        range,
        ..
    } = input;
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    let kernel = StepKernel::Window {
        range,
        f: Arc::new(f),
    };
    let counters = matches!(name, "rate" | "increase");
    let inspect = |data: &[SeriesSamples], times: &[i64]| {
        if counters {
            note_non_counters(ctx, data, times, range);
        }
    };
    evaluate_series(ctx, input, times, kernel, !keep_name, &inspect).await
}

/// Prometheus's info for `rate`/`increase` over a series whose name does
/// not look like a counter's, when it has a result (two samples in a window).
fn note_non_counters(ctx: &Ctx, data: &[SeriesSamples], times: &[i64], range: i64) {
    for s in data {
        let metric = s.labels.metric_name();
        if metric.is_empty()
            || ["_total", "_sum", "_count", "_bucket"]
                .iter()
                .any(|suffix| metric.ends_with(suffix))
        {
            continue;
        }
        if times
            .iter()
            .any(|&t| window(&s.samples, t, range).len() >= 2)
        {
            ctx.info(format_args!(
                "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}"
            ));
        }
    }
}

fn range_value(name: &str, w: &[Sample], t: i64, range: i64) -> Option<f64> {
    let n = w.len();
    match name {
        "rate" => extrapolated_rate(w, t - range, t, true, true),
        "increase" => extrapolated_rate(w, t - range, t, true, false),
        "delta" => extrapolated_rate(w, t - range, t, false, false),
        "irate" | "idelta" => {
            if n < 2 {
                return None;
            }
            let (prev, last) = (w[n - 2], w[n - 1]);
            let mut d = last.v - prev.v;
            if name == "irate" {
                if last.v < prev.v {
                    d = last.v;
                }
                let dt = (last.t - prev.t) as f64 / 1000.0;
                if dt == 0.0 {
                    return None;
                }
                d /= dt;
            }
            Some(d)
        }
        "avg_over_time" => Some(mean(&values(w))),
        "first_over_time" => Some(w[0].v),
        "ts_of_first_over_time" => Some(w[0].t as f64 / 1000.0),
        "ts_of_last_over_time" => Some(w[n - 1].t as f64 / 1000.0),
        "ts_of_min_over_time" | "ts_of_max_over_time" => {
            // The latest sample holding the extreme value; NaN only if all are NaN.
            let max = name == "ts_of_max_over_time";
            let mut best: Option<Sample> = None;
            for s in w {
                best = match best {
                    None => Some(*s),
                    Some(b) if b.v.is_nan() => Some(*s),
                    Some(b) if s.v.is_nan() => Some(b),
                    Some(b) if (max && s.v >= b.v) || (!max && s.v <= b.v) => Some(*s),
                    keep => keep,
                };
            }
            best.map(|b| b.t as f64 / 1000.0)
        }
        "sum_over_time" => Some(kahan_sum(&values(w))),
        "count_over_time" => Some(n as f64),
        "min_over_time" => Some(
            w.iter()
                .fold(f64::NAN, |m, s| if s.v < m || m.is_nan() { s.v } else { m }),
        ),
        "max_over_time" => Some(
            w.iter()
                .fold(f64::NAN, |m, s| if s.v > m || m.is_nan() { s.v } else { m }),
        ),
        "last_over_time" => Some(w[n - 1].v),
        "present_over_time" => Some(1.0),
        "stdvar_over_time" => Some(variance(&values(w))),
        "stddev_over_time" => Some(variance(&values(w)).sqrt()),
        "changes" => Some(
            w.windows(2)
                .filter(|p| !(p[0].v == p[1].v || (p[0].v.is_nan() && p[1].v.is_nan())))
                .count() as f64,
        ),
        "resets" => Some(w.windows(2).filter(|p| p[1].v < p[0].v).count() as f64),
        "deriv" => {
            if n < 2 {
                return None;
            }
            Some(linear_regression(w, w[0].t).0)
        }
        _ => None,
    }
}

fn values(w: &[Sample]) -> Vec<f64> {
    w.iter().map(|s| s.v).collect()
}

/// Prometheus's `extrapolatedRate` over the window `(range_start, range_end]`:
/// the increase between the first and last sample (counter resets added
/// back), extrapolated towards the window edges when the samples come close
/// enough to them, and never below a counter's zero point.
fn extrapolated_rate(
    w: &[Sample],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let first = w[0];
    let last = w[w.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        let mut prev = first.v;
        for s in &w[1..] {
            if s.v < prev {
                result += prev;
            }
            prev = s.v;
        }
    }
    let mut to_start = (first.t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg = sampled / (w.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Least-squares slope and intercept (at `intercept_t`), as Prometheus computes them.
fn linear_regression(w: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init = w[0].v;
    let mut const_y = true;
    for (i, s) in w.iter().enumerate() {
        if const_y && i > 0 && s.v != init {
            const_y = false;
        }
        n += 1.0;
        let x = (s.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(s.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * s.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn math(name: &str, x: f64) -> f64 {
    match name {
        "abs" => x.abs(),
        "ceil" => x.ceil(),
        "floor" => x.floor(),
        "exp" => x.exp(),
        "ln" => x.ln(),
        "log2" => x.log2(),
        "log10" => x.log10(),
        "sqrt" => x.sqrt(),
        "sgn" => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        }
        "sin" => x.sin(),
        "cos" => x.cos(),
        "tan" => x.tan(),
        "asin" => x.asin(),
        "acos" => x.acos(),
        "atan" => x.atan(),
        "sinh" => x.sinh(),
        "cosh" => x.cosh(),
        "tanh" => x.tanh(),
        "asinh" => x.asinh(),
        "acosh" => x.acosh(),
        "atanh" => x.atanh(),
        "deg" => x.to_degrees(),
        _ => x.to_radians(),
    }
}

/// `f` over every value of `v`, as the node's items, marking names for removal.
fn map_values(
    ctx: &Ctx,
    v: Vec<Series>,
    f: impl Fn(f64, usize) -> Option<f64> + Send + Sync + 'static,
) -> Result<Prepared, EngineError> {
    Ok(ctx.map(v, true, Arc::new(f)))
}

/// `absent`: 1 at steps where the input has no sample, labelled with the
/// equality matchers of a selector argument.
fn absent(ctx: &Ctx, v: Val, e: &Expr) -> Result<Val, EngineError> {
    let Val::Vector(series) = v else {
        return Err(EngineError::BadData(
            "absent() needs an instant vector".into(),
        ));
    };
    let vals: Vec<Option<f64>> = (0..ctx.nsteps)
        .map(|i| (!series.iter().any(|s| s.vals[i].is_some())).then_some(1.0))
        .collect();
    let mut labels = Labels::default();
    let vs = match e {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    if let Some(vs) = vs {
        let alts = selector_matchers(vs);
        if alts.len() == 1 {
            let eqs: Vec<&Matcher> = alts[0]
                .iter()
                .filter(|m| m.op == MatchOp::Equal && m.name != METRIC_NAME)
                .collect();
            for m in &eqs {
                // A label constrained by several matchers gets no value.
                if alts[0].iter().filter(|o| o.name == m.name).count() == 1 {
                    labels.set(&m.name, &m.value);
                }
            }
        }
    }
    Ok(Val::Vector(vec![Series::new(labels, vals)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, v)| Sample { t, v }).collect()
    }

    #[test]
    fn rate_extrapolates_to_window_edges() {
        // 10s-spaced counter covering the whole 60s window: +1/s exactly.
        let w = s(&[
            (10_000, 10.0),
            (20_000, 20.0),
            (30_000, 30.0),
            (40_000, 40.0),
            (50_000, 50.0),
            (60_000, 60.0),
        ]);
        let r = extrapolated_rate(&w, 0, 60_000, true, true).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
        // A counter reset in the middle is added back.
        let w = s(&[
            (10_000, 10.0),
            (20_000, 20.0),
            (30_000, 5.0),
            (40_000, 15.0),
        ]);
        let inc = extrapolated_rate(&w, 0, 40_000, true, false).unwrap();
        // Raw increase 5 plus the 20 lost at the reset = 25 over 30s,
        // extrapolated by the 10s to the window start (below the 11s
        // threshold; the zero point, 12s back, is further away).
        let want = 25.0 * 40.0 / 30.0;
        assert!((inc - want).abs() < 1e-9, "{inc} vs {want}");
        // Fewer than two samples: no result.
        assert!(extrapolated_rate(&s(&[(1, 1.0)]), 0, 10, true, true).is_none());
    }

    #[test]
    fn series_starting_inside_window_extrapolates_half_an_interval() {
        // Starts at 40s in a (0, 60s] window: Prometheus 3 extrapolates 5s
        // (half the 10s spacing), not to the window start.
        let w = s(&[(40_000, 100.0), (50_000, 110.0), (60_000, 120.0)]);
        let inc = extrapolated_rate(&w, 0, 60_000, true, false).unwrap();
        assert!((inc - 20.0 * 25.0 / 20.0).abs() < 1e-9, "{inc}");
    }

    #[test]
    fn irate_and_delta_kinds() {
        let w = s(&[(0, 5.0), (10_000, 8.0), (20_000, 2.0)]);
        assert_eq!(range_value("irate", &w, 20_000, 60_000), Some(0.2));
        assert_eq!(range_value("idelta", &w, 20_000, 60_000), Some(-6.0));
        assert_eq!(range_value("resets", &w, 20_000, 60_000), Some(1.0));
        assert_eq!(range_value("changes", &w, 20_000, 60_000), Some(2.0));
        assert_eq!(
            range_value("count_over_time", &w, 20_000, 60_000),
            Some(3.0)
        );
        assert_eq!(range_value("max_over_time", &w, 20_000, 60_000), Some(8.0));
        assert_eq!(
            range_value("ts_of_max_over_time", &w, 20_000, 60_000),
            Some(10.0)
        );
    }

    #[test]
    fn linear_regression_matches_a_line() {
        let w = s(&[(0, 1.0), (1000, 3.0), (2000, 5.0)]);
        let (slope, intercept) = linear_regression(&w, 0);
        assert!((slope - 2.0).abs() < 1e-12 && (intercept - 1.0).abs() < 1e-12);
    }
}
