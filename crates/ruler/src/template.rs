//! The part of Prometheus's Go-template language that alert labels and
//! annotations use: `{{ $labels.name }}` / `{{ .Labels.name }}`,
//! `{{ $value }}` / `{{ .Value }}`, `{{ $externalLabels.name }}`, and the
//! functions `humanize`, `humanize1024`, `humanizePercentage`,
//! `humanizeDuration`, `printf` (with `%f`, `%.Nf`, `%d`, `%s`, `%v`, `%g`),
//! `toUpper`, `toLower`, either called (`humanize $value`) or piped
//! (`$value | humanize`). Anything else is refused when the rule is
//! saved, so a rule never fails at evaluation time over its template.

use std::collections::BTreeMap;

/// What a template can refer to.
pub struct Context<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Num(f64),
}

impl Val {
    fn text(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(n) => strata_model::format_float(*n),
        }
    }
    fn num(&self) -> Result<f64, String> {
        match self {
            Val::Num(n) => Ok(*n),
            Val::Str(s) => s
                .parse()
                .map_err(|_| format!("can't convert {s:?} to a number")),
        }
    }
}

/// Checks that a template uses only what this module supports.
pub fn check(tmpl: &str) -> Result<(), String> {
    let labels = BTreeMap::new();
    expand(
        tmpl,
        &Context {
            labels: &labels,
            external_labels: &labels,
            value: 1.0,
        },
    )
    .map(|_| ())
}

/// Expands a template.
pub fn expand(tmpl: &str, ctx: &Context<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(tmpl.len());
    let mut rest = tmpl;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| "unclosed action: missing }}".to_string())?;
        let action = after[..close]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        out.push_str(&eval_pipeline(action, ctx)?.text());
        rest = &after[close + 2..];
    }
    if rest.contains("}}") {
        return Err("unexpected }}".into());
    }
    out.push_str(rest);
    Ok(out)
}

fn eval_pipeline(action: &str, ctx: &Context<'_>) -> Result<Val, String> {
    let mut stages = split_outside_quotes(action, '|').into_iter();
    let first = stages.next().unwrap_or_default();
    let mut v = eval_command(&first, None, ctx)?;
    for stage in stages {
        v = eval_command(&stage, Some(v), ctx)?;
    }
    Ok(v)
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == sep && !quoted {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

fn tokens(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut lit = String::from("\"");
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        lit.push(match n {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                } else if c == '"' {
                    closed = true;
                    break;
                } else {
                    lit.push(c);
                }
            }
            if !closed {
                return Err("unterminated string".into());
            }
            out.push(lit);
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

fn operand(tok: &str, ctx: &Context<'_>) -> Result<Val, String> {
    if let Some(lit) = tok.strip_prefix('"') {
        return Ok(Val::Str(lit.to_string()));
    }
    if tok == "$value" || tok == ".Value" {
        return Ok(Val::Num(ctx.value));
    }
    for (prefix, map) in [
        ("$labels.", ctx.labels),
        (".Labels.", ctx.labels),
        ("$externalLabels.", ctx.external_labels),
        (".ExternalLabels.", ctx.external_labels),
    ] {
        if let Some(name) = tok.strip_prefix(prefix) {
            return Ok(Val::Str(map.get(name).cloned().unwrap_or_default()));
        }
    }
    if let Ok(n) = tok.parse::<f64>() {
        return Ok(Val::Num(n));
    }
    Err(format!("unsupported template operand {tok:?}"))
}

fn eval_command(cmd: &str, piped: Option<Val>, ctx: &Context<'_>) -> Result<Val, String> {
    let toks = tokens(cmd)?;
    let Some(head) = toks.first() else {
        return Err("empty action".into());
    };
    let mut args: Vec<Val> = toks[1..]
        .iter()
        .map(|t| operand(t, ctx))
        .collect::<Result<_, _>>()?;
    let is_function = matches!(
        head.as_str(),
        "humanize"
            | "humanize1024"
            | "humanizePercentage"
            | "humanizeDuration"
            | "printf"
            | "toUpper"
            | "toLower"
    );
    if !is_function {
        if toks.len() > 1 || piped.is_some() {
            return Err(format!("{head:?} is not a function"));
        }
        return operand(head, ctx);
    }
    if let Some(p) = piped {
        args.push(p);
    }
    let one = |args: &[Val]| -> Result<Val, String> {
        args.first()
            .cloned()
            .ok_or_else(|| format!("{head} needs an argument"))
    };
    Ok(match head.as_str() {
        "humanize" => Val::Str(humanize(one(&args)?.num()?, 1000.0)),
        "humanize1024" => Val::Str(humanize(one(&args)?.num()?, 1024.0)),
        "humanizePercentage" => Val::Str(format!("{}%", go_g(one(&args)?.num()? * 100.0, 4))),
        "humanizeDuration" => Val::Str(humanize_duration(one(&args)?.num()?)),
        "toUpper" => Val::Str(one(&args)?.text().to_uppercase()),
        "toLower" => Val::Str(one(&args)?.text().to_lowercase()),
        _ => {
            let Some(Val::Str(fmt)) = args.first().cloned() else {
                return Err("printf needs a format string".into());
            };
            Val::Str(printf(&fmt, &args[1..])?)
        }
    })
}

/// Go's `%.{prec}g`, as Prometheus's humanize functions print.
fn go_g(v: f64, prec: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return strata_model::format_float(v);
    }
    let exp = v.abs().log10().floor() as i32;
    if exp < -4 || exp >= prec as i32 {
        let s = format!("{:.*e}", prec.saturating_sub(1), v);
        // Rust prints 1.235e4; Go prints 1.235e+04.
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = trim_zeros(m);
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    let decimals = (prec as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn humanize(v: f64, base: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let big = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"];
    let big1024 = ["", "ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"];
    let small = ["", "m", "u", "n", "p", "f", "a", "z", "y"];
    if v.abs() >= 1.0 {
        let mut x = v;
        let mut i = 0;
        while x.abs() >= base && i < big.len() - 1 {
            x /= base;
            i += 1;
        }
        let prefix = if base == 1024.0 { big1024[i] } else { big[i] };
        return format!("{}{prefix}", go_g(x, 4));
    }
    if base == 1024.0 {
        return go_g(v, 4);
    }
    let mut x = v;
    let mut i = 0;
    while x.abs() < 1.0 && i < small.len() - 1 {
        x *= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(x, 4), small[i])
}

fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return strata_model::format_float(v);
    }
    if v.abs() < 1.0 {
        if v == 0.0 {
            return "0s".into();
        }
        return humanize(v, 1000.0) + "s";
    }
    let neg = v < 0.0;
    let secs = v.abs();
    let (d, h, m) = (
        (secs / 86400.0) as u64,
        (secs / 3600.0) as u64 % 24,
        (secs / 60.0) as u64 % 60,
    );
    let s = secs % 60.0;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if d > 0 {
        out.push_str(&format!("{d}d "));
    }
    if d > 0 || h > 0 {
        out.push_str(&format!("{h}h "));
    }
    if d > 0 || h > 0 || m > 0 {
        out.push_str(&format!("{m}m "));
    }
    out.push_str(&format!("{}s", s as u64));
    out
}

/// Largest `printf` precision a template may ask for.
const MAX_PRECISION: usize = 100;

fn printf(fmt: &str, args: &[Val]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next_arg = args.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&n) = it.peek() {
            spec.push(n);
            it.next();
            if n.is_ascii_alphabetic() || n == '%' {
                break;
            }
        }
        if spec == "%" {
            out.push('%');
            continue;
        }
        let verb = spec.chars().last().unwrap_or('v');
        // The text between `.` and the verb (the spec's last character,
        // which may be any character, of any width).
        let prec_text = spec
            .split_once('.')
            .map(|(_, p)| &p[..p.char_indices().last().map_or(0, |(i, _)| i)])
            .filter(|p| !p.is_empty());
        let prec: Option<usize> = prec_text.and_then(|p| p.parse().ok());
        // The precision comes from the rule: bound it before formatting
        // (a float has no more than 17 significant digits to show anyway).
        if prec_text.is_some() && prec.is_none_or(|p| p > MAX_PRECISION) {
            return Err(format!(
                "printf: precision of %{spec} is more than {MAX_PRECISION}"
            ));
        }
        let arg = next_arg
            .next()
            .ok_or_else(|| format!("printf: missing argument for %{spec}"))?;
        match verb {
            'f' => out.push_str(&format!("{:.*}", prec.unwrap_or(6), arg.num()?)),
            'd' => out.push_str(&format!("{}", arg.num()? as i64)),
            'g' => out.push_str(&go_g(arg.num()?, prec.unwrap_or(17))),
            's' | 'v' => out.push_str(&arg.text()),
            other => return Err(format!("printf: unsupported verb %{other}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_expand(t: &str, value: f64) -> Result<String, String> {
        let mut labels = BTreeMap::new();
        labels.insert("job".to_string(), "api".to_string());
        let ext = BTreeMap::from([("cluster".to_string(), "eu1".to_string())]);
        expand(
            t,
            &Context {
                labels: &labels,
                external_labels: &ext,
                value,
            },
        )
    }

    #[test]
    fn expands_what_alert_rules_use() {
        assert_eq!(
            ctx_expand("{{ $labels.job }} is at {{ $value }}", 12.5).unwrap(),
            "api is at 12.5"
        );
        assert_eq!(
            ctx_expand("{{ .Labels.job }}/{{ .Value }}", 1.0).unwrap(),
            "api/1"
        );
        assert_eq!(
            ctx_expand("{{ $externalLabels.cluster }}", 0.0).unwrap(),
            "eu1"
        );
        assert_eq!(
            ctx_expand("{{ $value | humanize }}", 1234567.0).unwrap(),
            "1.235M"
        );
        assert_eq!(ctx_expand("{{ humanize $value }}", 0.0012).unwrap(), "1.2m");
        assert_eq!(
            ctx_expand("{{ humanize1024 $value }}", 2048.0).unwrap(),
            "2ki"
        );
        assert_eq!(
            ctx_expand("{{ $value | humanizePercentage }}", 0.1234).unwrap(),
            "12.34%"
        );
        assert_eq!(
            ctx_expand("{{ humanizeDuration $value }}", 3725.0).unwrap(),
            "1h 2m 5s"
        );
        assert_eq!(
            ctx_expand("{{ printf \"%.2f\" $value }} ms", 12.3456).unwrap(),
            "12.35 ms"
        );
        assert_eq!(ctx_expand("{{ $labels.missing }}", 0.0).unwrap(), "");
        assert_eq!(
            ctx_expand("{{ $labels.job | toUpper }}", 0.0).unwrap(),
            "API"
        );
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        assert!(check("{{ range $labels }}x{{ end }}").is_err());
        // A precision from the rule is bounded before anything is formatted.
        // A multi-byte character where the verb should be (found by fuzzing).
        assert!(check("{{ printf \"%.2\u{fffd}\" $value }}").is_err());
        let e = check("{{ printf \"%.1000000000f\" $value }}").unwrap_err();
        assert!(e.contains("precision"), "{e}");
        assert!(check("{{ printf \"%.100000000000000000000000g\" $value }}").is_err());
        assert!(check("{{ $labels.job ").is_err());
        assert!(check("{{ query \"up\" }}").is_err());
        assert!(check("plain text").is_ok());
    }
}
