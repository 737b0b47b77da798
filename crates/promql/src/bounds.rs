//! What a query may ask for, checked before it is parsed, planned or given
//! any memory: how deep its syntax tree is, and that every time and
//! duration in it lies where the engine's millisecond arithmetic cannot
//! overflow.
//!
//! Times are limited to the years 1 to 9999 (what RFC 3339 can write) and
//! durations (ranges, offsets, subquery steps) to 10,000 years, so any
//! time plus or minus a few durations stays far inside an `i64` of
//! milliseconds and the evaluator can use plain arithmetic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr, Offset};
use strata_model::nesting::{DepthMeter, MAX_QUERY_DEPTH, TooDeep};

use crate::EngineError;

/// 0001-01-01T00:00:00Z in ms since the epoch.
pub const MIN_TIME_MS: i64 = -62_135_596_800_000;
/// 9999-12-31T23:59:59.999Z in ms since the epoch.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// Longest range, offset or step a query may use: 10,000 years.
pub const MAX_DURATION_MS: i64 = 10_000 * 365 * 24 * 3600 * 1000;

/// Refuses a time outside [`MIN_TIME_MS`]..=[`MAX_TIME_MS`].
pub fn check_time(what: &str, t: i64) -> Result<(), EngineError> {
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&t) {
        Ok(())
    } else {
        Err(EngineError::BadData(format!(
            "{what} {t} (ms since the epoch) is outside the supported range: years 1 to 9999"
        )))
    }
}

/// A duration in ms, refused past [`MAX_DURATION_MS`].
pub fn duration_ms(what: &str, d: Duration) -> Result<i64, EngineError> {
    i64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms <= MAX_DURATION_MS)
        .ok_or_else(|| {
            EngineError::BadData(format!(
                "{what} of {}s is longer than the supported 10,000 years",
                d.as_secs()
            ))
        })
}

/// Parses `query` once it is known to be shallow enough, then checks every
/// duration and `@` time in it.
pub fn parse_checked(query: &str) -> Result<Expr, EngineError> {
    check_depth(query)?;
    let parsed = catch_unwind(AssertUnwindSafe(|| promql_parser::parser::parse(query)))
        .map_err(|_| bad_query("a number or duration in the query is out of range"))?;
    let expr = parsed.map_err(|e| bad_query(&e))?;
    check_expr(&expr)?;
    Ok(expr)
}

fn bad_query(e: &str) -> EngineError {
    EngineError::BadData(format!("invalid parameter \"query\": {e}"))
}

fn too_deep(e: TooDeep) -> EngineError {
    bad_query(&e.to_string())
}

/// Scans the query text as PromQL's lexer would (strings, comments,
/// selectors and bracketed durations skipped) and meters its depth.
/// Numbers that the parser turns into durations (`[1e30]`, `offset 1e30`)
/// are range-checked here, as the parser would panic on them.
fn check_depth(query: &str) -> Result<(), EngineError> {
    let b = query.as_bytes();
    let mut m = DepthMeter::new(MAX_QUERY_DEPTH);
    // Just after `offset` or `@`, where a plain number is a duration or time.
    let mut after_offset = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        i += 1;
        match c {
            b'#' => i = find_from(b, i, b'\n'),
            b'"' | b'\'' | b'`' => i = skip_string(b, start),
            b'{' => {
                while i < b.len() && b[i] != b'}' {
                    i = if matches!(b[i], b'"' | b'\'' | b'`') {
                        skip_string(b, i)
                    } else {
                        i + 1
                    };
                }
                i += 1;
            }
            b'[' => {
                m.operator().map_err(too_deep)?;
                let end = find_from(b, i, b']');
                for part in query[i.min(end)..end].split(':') {
                    check_numeric_duration(part.trim())?;
                }
                i = end + 1;
            }
            b'(' => m.open().map_err(too_deep)?,
            b')' => m.close().map_err(too_deep)?,
            b',' => m.separator(),
            b'@' => {
                m.operator().map_err(too_deep)?;
                after_offset = true;
                continue;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => m.operator().map_err(too_deep)?,
            b'=' | b'!' | b'<' | b'>' => {
                m.operator().map_err(too_deep)?;
                if matches!(b.get(i), Some(b'=' | b'~')) {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || (c == b'.' && b.get(i).is_some_and(u8::is_ascii_digit)) => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'.'
                        || b[i] == b'_'
                        || (matches!(b[i], b'+' | b'-') && matches!(b[i - 1], b'e' | b'E')))
                {
                    i += 1;
                }
                if after_offset {
                    check_numeric_duration(&query[start..i])?;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = query[start..i].to_ascii_lowercase();
                if matches!(word.as_str(), "and" | "or" | "unless" | "atan2" | "offset") {
                    m.operator().map_err(too_deep)?;
                }
                after_offset = word == "offset";
                continue;
            }
            _ => {}
        }
        if !c.is_ascii_whitespace() && c != b'-' {
            after_offset = false;
        }
    }
    m.finish().map_err(too_deep)?;
    Ok(())
}

/// Index of the next `byte` at or after `from`, or the end.
fn find_from(b: &[u8], from: usize, byte: u8) -> usize {
    b.get(from..)
        .and_then(|rest| rest.iter().position(|&x| x == byte))
        .map_or(b.len(), |p| from + p)
}

/// Index just past the string literal starting at `start`.
fn skip_string(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// A plain number used as a duration (seconds) must be a valid one.
fn check_numeric_duration(s: &str) -> Result<(), EngineError> {
    if let Ok(secs) = s.parse::<f64>()
        && !(secs.is_finite() && secs.abs() * 1000.0 <= MAX_DURATION_MS as f64)
    {
        return Err(bad_query(&format!(
            "{s} is out of range for a duration or an @ time: at most 10,000 years"
        )));
    }
    Ok(())
}

/// Every range, offset, subquery step and `@` time of `expr` in range.
fn check_expr(expr: &Expr) -> Result<(), EngineError> {
    match expr {
        Expr::Aggregate(a) => {
            check_expr(&a.expr)?;
            if let Some(p) = &a.param {
                check_expr(p)?;
            }
        }
        Expr::Unary(u) => check_expr(&u.expr)?,
        Expr::Binary(b) => {
            check_expr(&b.lhs)?;
            check_expr(&b.rhs)?;
        }
        Expr::Paren(p) => check_expr(&p.expr)?,
        Expr::Subquery(sq) => {
            duration_ms("subquery range", sq.range)?;
            if let Some(step) = sq.step {
                duration_ms("subquery step", step)?;
            }
            check_modifiers(&sq.offset, &sq.at)?;
            check_expr(&sq.expr)?;
        }
        Expr::VectorSelector(vs) => check_modifiers(&vs.offset, &vs.at)?,
        Expr::MatrixSelector(ms) => {
            duration_ms("range", ms.range)?;
            check_modifiers(&ms.vs.offset, &ms.vs.at)?;
        }
        Expr::Call(c) => {
            for a in &c.args.args {
                check_expr(a)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
    Ok(())
}

/// Refuses, without evaluating it, an expression whose subqueries would
/// take more than `max_steps` steps when evaluated at one instant (a rule):
/// each subquery spans its own range plus the ranges of the subqueries
/// around it, at its step (`default_step` when it names none).
pub fn check_instant_subqueries(
    query: &str,
    max_steps: usize,
    default_step: Duration,
) -> Result<(), EngineError> {
    let expr = parse_checked(query)?;
    walk_subqueries(
        &expr,
        0,
        max_steps as i64,
        duration_ms("step", default_step)?,
    )
}

fn walk_subqueries(e: &Expr, span: i64, max: i64, default_step: i64) -> Result<(), EngineError> {
    let walk = |e: &Expr| walk_subqueries(e, span, max, default_step);
    match e {
        Expr::Subquery(sq) => {
            let range = duration_ms("subquery range", sq.range)?;
            let step = match sq.step {
                Some(s) => duration_ms("subquery step", s)?,
                None => default_step,
            }
            .max(1);
            let inner = span + range;
            let steps = inner / step + 1;
            if steps > max {
                return Err(EngineError::Execution(format!(
                    "subquery {sq} would evaluate its inner expression at {steps} steps, more than the limit of {max} (-querier.max-subquery-steps): use a larger subquery step or a shorter range"
                )));
            }
            walk_subqueries(&sq.expr, inner, max, default_step)
        }
        Expr::Aggregate(a) => {
            walk(&a.expr)?;
            a.param.as_deref().map_or(Ok(()), walk)
        }
        Expr::Unary(u) => walk(&u.expr),
        Expr::Binary(b) => {
            walk(&b.lhs)?;
            walk(&b.rhs)
        }
        Expr::Paren(p) => walk(&p.expr),
        Expr::Call(c) => c.args.args.iter().try_for_each(|a| walk(a)),
        _ => Ok(()),
    }
}

fn check_modifiers(offset: &Option<Offset>, at: &Option<AtModifier>) -> Result<(), EngineError> {
    if let Some(Offset::Pos(d) | Offset::Neg(d)) = offset {
        duration_ms("offset", *d)?;
    }
    if let Some(AtModifier::At(t)) = at {
        check_time("@ time", system_time_ms(*t))?;
    }
    Ok(())
}

/// `t` in ms since the epoch, saturating far outside any valid range.
pub(crate) fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> String {
        match parse_checked(q) {
            Ok(e) => panic!("{q:.60} parsed: {e:.60}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn deep_queries_are_refused_before_parsing() {
        let parens = format!("{}up{}", "(".repeat(50_000), ")".repeat(50_000));
        assert!(err(&parens).contains("nested too deeply"));
        assert!(err(&format!("{}up", "-".repeat(100_000))).contains("nested too deeply"));
        let chain = vec!["x"; 250_000].join(" + ");
        assert!(err(&chain).contains("nested too deeply"));
        let calls = format!("{}up{}", "abs(".repeat(300), ")".repeat(300));
        assert!(err(&calls).contains("nested too deeply"));
        let subqueries = format!("up{}", "[5m:1m]".repeat(300));
        assert!(err(&subqueries).contains("nested too deeply"));
        let or = vec!["x"; 300].join(" OR ");
        assert!(err(&or).contains("nested too deeply"));
    }

    #[test]
    fn ordinary_queries_pass() {
        for q in [
            "sum by (job) (rate(http_requests_total{job=~\"a|b\", path!=\"/(((\"}[5m])) / on(job) group_left count(up)",
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m] offset -1h @ 1e9)))",
            "max_over_time(rate(x[5m])[1d:1m]) > bool 1e-3 # comment ((((((",
            "label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\") and on() vector(1)",
            "job:up:sum_rate5m * -1 ^ 2",
        ] {
            parse_checked(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        // 200 chained terms and 200 nested calls are still fine.
        parse_checked(&vec!["x"; 200].join(" + ")).expect("200 terms");
        parse_checked(&format!("{}up{}", "abs(".repeat(120), ")".repeat(120))).expect("calls");
    }

    #[test]
    fn out_of_range_durations_and_times_are_refused() {
        assert!(err("up[1e30]").contains("out of range"));
        assert!(err("up offset 1e30").contains("out of range"));
        assert!(err("up[5m:1e30]").contains("out of range"));
        assert!(err("up[4294967295y]").contains("10,000 years"));
        assert!(err("up offset 20000y").contains("10,000 years"));
        assert!(err("up @ 3e11").contains("outside the supported range"));
        assert!(err("up @ 1e300").contains("out of range"));
        assert!(err("rate(up[5m] @ -1e11)").contains("outside the supported range"));
        assert!(err("up[5m:20000y]").contains("10,000 years"));
        parse_checked("up[9000y] @ 0 offset 9999y").expect("in range");
    }

    #[test]
    fn subquery_steps_of_a_rule_are_checked_statically() {
        let m = Duration::from_secs(60);
        check_instant_subqueries("max_over_time(rate(x[5m])[1d:1m])", 100_000, m)
            .expect("1,441 steps");
        let e =
            check_instant_subqueries("max_over_time(vector(1)[100y:1ms])", 100_000, m).unwrap_err();
        assert!(e.to_string().contains("-querier.max-subquery-steps"), "{e}");
        // The inner subquery spans both ranges: 2 days at 1s.
        assert!(
            check_instant_subqueries("max_over_time(max_over_time(x[1d:1s])[1d:1s])", 100_000, m)
                .is_err()
        );
        // Without a step, the default step applies.
        assert!(check_instant_subqueries("max_over_time(x[10y:])", 100_000, m).is_err());
    }
}
