//! The template functions, each written once; a [`Dialect`](crate::Dialect)
//! chooses which it offers. Names and argument orders are Go's, Prometheus's
//! and Loki's (sprig's): the piped value is the last argument.

use regex::Regex;

use crate::{MAX_OUTPUT_BYTES, RenderError, Value, within_budget};

/// A template function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    Printf,
    ToUpper,
    ToLower,
    Title,
    TrimSpace,
    TrimPrefix,
    TrimSuffix,
    Replace,
    RegexReplaceAll,
    Default,
    Len,
    Contains,
    HasPrefix,
    HasSuffix,
    AlignLeft,
    AlignRight,
    UnixEpoch,
}

impl Func {
    /// The function Prometheus or Loki calls `name`, with its argument
    /// count (`None`: any, as `printf`).
    pub fn by_go_name(name: &str) -> Option<(Func, Option<usize>)> {
        use Func::*;
        Some(match name {
            "humanize" => (Humanize, Some(1)),
            "humanize1024" => (Humanize1024, Some(1)),
            "humanizePercentage" => (HumanizePercentage, Some(1)),
            "humanizeDuration" => (HumanizeDuration, Some(1)),
            "printf" => (Printf, None),
            "toUpper" | "ToUpper" | "upper" => (ToUpper, Some(1)),
            "toLower" | "ToLower" | "lower" => (ToLower, Some(1)),
            "title" => (Title, Some(1)),
            "trim" | "trimSpace" => (TrimSpace, Some(1)),
            "trimPrefix" => (TrimPrefix, Some(2)),
            "trimSuffix" => (TrimSuffix, Some(2)),
            "replace" => (Replace, Some(3)),
            "regexReplaceAll" => (RegexReplaceAll, Some(3)),
            "default" => (Default, Some(2)),
            "len" => (Len, Some(1)),
            "contains" => (Contains, Some(2)),
            "hasPrefix" => (HasPrefix, Some(2)),
            "hasSuffix" => (HasSuffix, Some(2)),
            "alignLeft" => (AlignLeft, Some(2)),
            "alignRight" => (AlignRight, Some(2)),
            "unixEpoch" => (UnixEpoch, Some(1)),
            _ => return None,
        })
    }

    /// The argument compiled as a regex when the template is parsed.
    pub fn regex_argument(self) -> Option<usize> {
        (self == Func::RegexReplaceAll).then_some(0)
    }

    fn name(self) -> String {
        format!("{self:?}")
    }

    /// Calls the function; `regex` is its compiled regex argument.
    pub fn call(self, args: &[Value], regex: Option<&Regex>) -> Result<Value, RenderError> {
        use Func::*;
        let text = |i: usize| args.get(i).map(Value::text).unwrap_or_default();
        let owned = |i: usize| text(i).into_owned();
        let num = |i: usize| {
            args.get(i)
                .ok_or_else(|| RenderError::Failed(format!("{} needs an argument", self.name())))?
                .num()
        };
        let bool_text = |b: bool| Value::Str(if b { "true" } else { "false" }.into());
        // Only these make more text than they are given: case mapping (up
        // to three times the bytes), padding, replacing, printf.
        if matches!(self, ToUpper | ToLower | Title) {
            within_budget(&self.name(), args.iter().map(Value::len).sum::<usize>() * 3)?;
        }
        Ok(match self {
            Humanize => Value::Str(humanize(num(0)?, 1000.0)),
            Humanize1024 => Value::Str(humanize(num(0)?, 1024.0)),
            HumanizePercentage => Value::Str(format!("{}%", go_g(num(0)? * 100.0, 4))),
            HumanizeDuration => Value::Str(humanize_duration(num(0)?)),
            Printf => match args.split_first() {
                Some((fmt, rest)) => Value::Str(printf(&fmt.text(), rest)?),
                None => return Err(RenderError::Failed("printf needs a format string".into())),
            },
            ToUpper => Value::Str(text(0).to_uppercase()),
            ToLower => Value::Str(text(0).to_lowercase()),
            Title => Value::Str(
                text(0)
                    .split(' ')
                    .map(|w| {
                        let mut cs = w.chars();
                        match cs.next() {
                            Some(f) => f.to_uppercase().chain(cs).collect(),
                            None => String::new(),
                        }
                    })
                    .collect::<Vec<String>>()
                    .join(" "),
            ),
            TrimSpace => Value::Str(text(0).trim().to_string()),
            TrimPrefix => {
                let (p, s) = (text(0), text(1));
                Value::Str(s.strip_prefix(&*p).unwrap_or(&s).to_string())
            }
            TrimSuffix => {
                let (p, s) = (text(0), text(1));
                Value::Str(s.strip_suffix(&*p).unwrap_or(&s).to_string())
            }
            Replace => {
                let (from, to, s) = (text(0), text(1), text(2));
                if !from.is_empty() && to.len() > from.len() {
                    let n = s.matches(&*from).count();
                    within_budget("replace", s.len() + n * (to.len() - from.len()))?;
                } else if from.is_empty() {
                    // Go inserts `to` before every character and at the end.
                    within_budget("replace", s.len() + (s.chars().count() + 1) * to.len())?;
                }
                Value::Str(s.replace(&*from, &to))
            }
            RegexReplaceAll => match regex {
                Some(re) => Value::Str(regex_replace_all(re, &text(2), &text(1))?),
                None => Value::Str(owned(1)),
            },
            Default => {
                let given = owned(1);
                Value::Str(if given.is_empty() { owned(0) } else { given })
            }
            Len => Value::Num(text(0).chars().count() as f64),
            Contains => bool_text(text(1).contains(&*text(0))),
            HasPrefix => bool_text(text(1).starts_with(&*text(0))),
            HasSuffix => bool_text(text(1).ends_with(&*text(0))),
            AlignLeft | AlignRight => {
                let n: usize = text(0).trim().parse().unwrap_or(0);
                within_budget(&self.name(), n)?;
                let s: String = text(1).chars().take(n).collect();
                let pad = " ".repeat(n.saturating_sub(s.chars().count()));
                Value::Str(if self == AlignLeft {
                    s + &pad
                } else {
                    pad + &s
                })
            }
            UnixEpoch => Value::Str(
                text(0)
                    .trim()
                    .parse::<f64>()
                    .map(|f| format!("{}", f as i64))
                    .unwrap_or_default(),
            ),
        })
    }
}

/// `re.replace_all(text, replacement)`, each expansion checked against the
/// budget before it is written (`$0$0$0...` multiplies the text).
fn regex_replace_all(re: &Regex, replacement: &str, text: &str) -> Result<String, RenderError> {
    let refs = replacement.matches('$').count();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in re.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        out.push_str(&text[last..m.start()]);
        // A group is at most the whole text: a bound without expanding.
        let most = replacement.len() + refs * text.len();
        if out.len() + most > MAX_OUTPUT_BYTES {
            let mut expanded = String::new();
            caps.expand(replacement, &mut expanded);
            within_budget("regexReplaceAll", out.len() + expanded.len())?;
            out.push_str(&expanded);
        } else {
            caps.expand(replacement, &mut out);
        }
        within_budget("regexReplaceAll", out.len() + text.len() - m.end())?;
        last = m.end();
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// Largest precision a `printf` verb may ask for.
const MAX_PRECISION: usize = 100;

/// Go's `printf` for `%s`, `%v`, `%q`, `%d`, `%f`, `%g` (with a precision:
/// `%.2f`) and `%%`. A precision past [`MAX_PRECISION`] or another verb is
/// an error; a missing argument or a text `%d` prints as Go does
/// (`%!d(MISSING)`, `%!d(string=x)`).
pub fn printf(fmt: &str, args: &[Value]) -> Result<String, RenderError> {
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
        let prec_text = spec
            .split_once('.')
            .map(|(_, p)| &p[..p.char_indices().last().map_or(0, |(i, _)| i)])
            .filter(|p| !p.is_empty());
        let prec: Option<usize> = prec_text.and_then(|p| p.parse().ok());
        if prec_text.is_some() && prec.is_none_or(|p| p > MAX_PRECISION) {
            return Err(RenderError::Failed(format!(
                "printf: precision of %{spec} is more than {MAX_PRECISION}"
            )));
        }
        if !matches!(verb, 's' | 'v' | 'q' | 'd' | 'f' | 'g') {
            return Err(RenderError::Failed(format!(
                "printf: unsupported verb %{verb}"
            )));
        }
        let Some(arg) = next_arg.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let number = || match arg {
            Value::Num(n) => Some(*n),
            Value::Str(s) => s.trim().parse().ok(),
        };
        let piece = match (verb, number()) {
            ('s' | 'v', _) => arg.text().into_owned(),
            ('q', _) => quote(&arg.text()),
            ('d', Some(n)) => format!("{}", n as i64),
            ('f', Some(n)) => format!("{:.*}", prec.unwrap_or(6), n),
            (_, Some(n)) => go_g(n, prec.unwrap_or(17)),
            (_, None) => format!("%!{verb}(string={})", arg.text()),
        };
        within_budget("printf", out.len() + piece.len())?;
        out.push_str(&piece);
    }
    Ok(out)
}

/// Go's `%.{prec}g`, as Prometheus's humanize functions print.
pub fn go_g(v: f64, prec: usize) -> String {
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
/// Go's `strconv.Quote` (what `%q` prints, and how LogQL prints
/// strings).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_family_as_prometheus() {
        assert_eq!(humanize(1234567.0, 1000.0), "1.235M");
        assert_eq!(humanize(0.0012, 1000.0), "1.2m");
        assert_eq!(humanize(2048.0, 1024.0), "2ki");
        assert_eq!(go_g(0.1234 * 100.0, 4), "12.34");
        assert_eq!(humanize_duration(3725.0), "1h 2m 5s");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(go_g(1.0e20, 4), "1e+20");
    }

    #[test]
    fn printf_verbs_and_bounds() {
        let n = |v: f64| Value::Num(v);
        let s = |v: &str| Value::Str(v.into());
        assert_eq!(printf("%.2f ms", &[n(12.3456)]).unwrap(), "12.35 ms");
        assert_eq!(printf("%d%%", &[s("12")]).unwrap(), "12%");
        assert_eq!(
            printf("%s/%v/%q", &[n(1.5), s("a"), s("b")]).unwrap(),
            "1.5/a/\"b\""
        );
        // %q escapes as Go does (\a, \x01), not as Rust's Debug (\u{7}).
        assert_eq!(
            printf("%q", &[s("a\u{7}\u{1}\"\\é")]).unwrap(),
            "\"a\\a\\x01\\\"\\\\é\""
        );
        assert_eq!(
            printf("%d %s", &[s("x")]).unwrap(),
            "%!d(string=x) %!s(MISSING)"
        );
        assert!(printf("%.1000000000f", &[n(1.0)]).is_err());
        assert!(printf("%.2\u{fffd}", &[n(1.0)]).is_err());
        assert!(printf("%x", &[n(1.0)]).is_err());
    }

    #[test]
    fn functions_that_grow_text_are_bounded_first() {
        let s = |v: &str| Value::Str(v.into());
        let too_large = |f: Func, args: &[Value]| {
            assert!(
                matches!(f.call(args, None), Err(RenderError::TooLarge { .. })),
                "{f:?}"
            )
        };
        too_large(Func::AlignLeft, &[s("1000000000000"), s("x")]);
        too_large(
            Func::Replace,
            &[s(""), s(&"y".repeat(1000)), s(&"x".repeat(2000))],
        );
        let re = Regex::new("a").unwrap();
        let r =
            Func::RegexReplaceAll.call(&[s("a"), s("aaaa"), s(&"$0".repeat(300_000))], Some(&re));
        assert!(matches!(r, Err(RenderError::TooLarge { .. })), "{r:?}");
        assert_eq!(
            Func::AlignRight.call(&[s("4"), s("ab")], None).unwrap(),
            s("  ab")
        );
    }
}
