//! The Go-template subset LogQL's `line_format` and `label_format` use:
//! text with `{{ ... }}` actions (and `{{-`/`-}}` trimming); an action is a
//! pipeline of a field (`.label`), a literal or a function call, piped
//! through functions (`{{ .path | trimPrefix "/api" | ToUpper }}`, the piped
//! value being the last argument, as in Go). Functions: `__line__`,
//! `__timestamp__`, `ToUpper`/`upper`, `ToLower`/`lower`, `title`, `trim`,
//! `trimSpace`, `trimPrefix`, `trimSuffix`, `replace`, `regexReplaceAll`,
//! `default`, `printf`, `len`, `contains`, `hasPrefix`, `hasSuffix`,
//! `alignLeft`, `alignRight`, `unixEpoch`. Templates are checked at parse
//! time, so a query never fails halfway over a template's syntax.
//!
//! A rendering never grows past [`MAX_OUTPUT_BYTES`]: sizes that come from
//! the query (`alignLeft 1000000000000`, a `replace` or `regexReplaceAll`
//! that multiplies the text, chained) are checked before the text is built,
//! and such an entry gets Loki's `TemplateFormatErr` instead.

use regex::Regex;

/// Largest text one template rendering (and each step of it) may produce.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// A rendering that would pass [`MAX_OUTPUT_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    /// The function that would have produced it.
    pub func: String,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "template function {} would produce more than {} bytes",
            self.func, MAX_OUTPUT_BYTES
        )
    }
}

/// Refuses `size` bytes of output from `func`.
fn within_budget(func: &str, size: usize) -> Result<(), TooLarge> {
    if size > MAX_OUTPUT_BYTES {
        Err(TooLarge {
            func: func.to_string(),
        })
    } else {
        Ok(())
    }
}

/// What a template reads.
pub struct Context<'a> {
    pub label: &'a dyn Fn(&str) -> Option<String>,
    pub line: &'a str,
    /// Entry time, nanoseconds.
    pub ts: i64,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Action(Vec<Call>),
}

/// A command of a pipeline: a term, or a function with arguments.
#[derive(Debug, Clone)]
enum Call {
    Term(Term),
    Func(String, Vec<Term>),
}

#[derive(Debug, Clone)]
enum Term {
    Field(String),
    Str(String),
    Num(f64),
    /// A zero-argument function used as a value (`__line__`).
    Func(String),
    /// A regex argument compiled once.
    Regex(Regex, String),
}

const FUNCS: &[(&str, usize)] = &[
    ("__line__", 0),
    ("__timestamp__", 0),
    ("ToUpper", 1),
    ("upper", 1),
    ("ToLower", 1),
    ("lower", 1),
    ("title", 1),
    ("trim", 1),
    ("trimSpace", 1),
    ("trimPrefix", 2),
    ("trimSuffix", 2),
    ("replace", 3),
    ("regexReplaceAll", 3),
    ("default", 2),
    ("len", 1),
    ("contains", 2),
    ("hasPrefix", 2),
    ("hasSuffix", 2),
    ("alignLeft", 2),
    ("alignRight", 2),
    ("unixEpoch", 1),
];

impl Template {
    /// Parses a template; errors name the unsupported construct.
    pub fn parse(src: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        let mut trim_next_text = false;
        while let Some(open) = rest.find("{{") {
            let mut text = &rest[..open];
            if trim_next_text {
                text = text.trim_start();
            }
            let after = &rest[open + 2..];
            let (trim_left, after) = match after.strip_prefix('-') {
                Some(a) if a.starts_with(char::is_whitespace) => (true, a),
                _ => (false, after),
            };
            if trim_left {
                text = text.trim_end();
            }
            if !text.is_empty() {
                parts.push(Part::Text(text.to_string()));
            }
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed action in template {src:?}"))?;
            let mut body = &after[..close];
            trim_next_text = false;
            if let Some(b) = body.strip_suffix('-')
                && b.ends_with(char::is_whitespace)
            {
                body = b;
                trim_next_text = true;
            }
            parts.push(Part::Action(parse_pipeline(body.trim())?));
            rest = &after[close + 2..];
        }
        let text = if trim_next_text {
            rest.trim_start()
        } else {
            rest
        };
        if !text.is_empty() {
            parts.push(Part::Text(text.to_string()));
        }
        Ok(Self { parts })
    }

    /// Renders the template, refusing output past [`MAX_OUTPUT_BYTES`].
    pub fn render(&self, ctx: &Context<'_>) -> Result<String, TooLarge> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => {
                    within_budget("output", out.len() + t.len())?;
                    out.push_str(t);
                }
                Part::Action(calls) => {
                    let mut piped: Option<String> = None;
                    for c in calls {
                        piped = Some(call(c, piped.take(), ctx)?);
                    }
                    let v = piped.unwrap_or_default();
                    within_budget("output", out.len() + v.len())?;
                    out.push_str(&v);
                }
            }
        }
        Ok(out)
    }
}

fn tokenize(body: &str) -> Result<Vec<String>, String> {
    let mut toks = Vec::new();
    let mut chars = body.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            toks.push("|".into());
            chars.next();
        } else if c == '"' || c == '`' {
            let quote = c;
            chars.next();
            let mut s = String::from(quote);
            let mut closed = false;
            while let Some((_, d)) = chars.next() {
                if d == '\\' && quote == '"' {
                    if let Some((_, e)) = chars.next() {
                        s.push('\\');
                        s.push(e);
                    }
                    continue;
                }
                if d == quote {
                    closed = true;
                    break;
                }
                s.push(d);
            }
            if !closed {
                return Err(format!("unterminated string in template action {body:?}"));
            }
            toks.push(s);
        } else {
            let start = i;
            let mut end = body.len();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_whitespace() || d == '|' {
                    end = j;
                    break;
                }
                chars.next();
            }
            toks.push(body[start..end].to_string());
        }
    }
    Ok(toks)
}

fn parse_term(tok: &str) -> Result<Term, String> {
    if let Some(s) = tok.strip_prefix('"') {
        return unescape(s).map(Term::Str);
    }
    if let Some(s) = tok.strip_prefix('`') {
        return Ok(Term::Str(s.to_string()));
    }
    if let Some(f) = tok.strip_prefix('.') {
        if f.is_empty() || !f.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("unsupported field {tok:?} in template"));
        }
        return Ok(Term::Field(f.to_string()));
    }
    if let Ok(n) = tok.parse::<f64>() {
        return Ok(Term::Num(n));
    }
    match FUNCS.iter().find(|(n, _)| *n == tok) {
        Some((n, 0)) => Ok(Term::Func(n.to_string())),
        Some(_) => Err(format!("function {tok} needs arguments")),
        None => Err(format!("unsupported template function or value {tok:?}")),
    }
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => return Err("dangling escape in template string".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn parse_pipeline(body: &str) -> Result<Vec<Call>, String> {
    let toks = tokenize(body)?;
    if toks.is_empty() {
        return Err("empty template action".into());
    }
    if toks[0] == "if" || toks[0] == "range" || toks[0] == "with" || toks[0] == "end" {
        return Err(format!(
            "template control structure {:?} is not supported",
            toks[0]
        ));
    }
    let mut calls = Vec::new();
    for (pos, cmd) in toks.split(|t| t == "|").enumerate() {
        let Some((head, args)) = cmd.split_first() else {
            return Err(format!("empty command in template action {body:?}"));
        };
        let arity = FUNCS.iter().find(|(n, _)| n == head).map(|(_, a)| *a);
        match arity {
            Some(a) if a > 0 => {
                let given = args.len() + usize::from(pos > 0);
                if given != a {
                    return Err(format!("function {head} takes {a} arguments, got {given}"));
                }
                let mut terms = args
                    .iter()
                    .map(|t| parse_term(t))
                    .collect::<Result<Vec<_>, _>>()?;
                if head == "regexReplaceAll"
                    && let Some(Term::Str(re)) = terms.first()
                {
                    let compiled =
                        Regex::new(re).map_err(|e| format!("bad regex in template: {e}"))?;
                    terms[0] = Term::Regex(compiled, re.clone());
                }
                calls.push(Call::Func(head.clone(), terms));
            }
            _ if head == "printf" => {
                let terms = args
                    .iter()
                    .map(|t| parse_term(t))
                    .collect::<Result<Vec<_>, _>>()?;
                calls.push(Call::Func(head.clone(), terms));
            }
            _ => {
                if !args.is_empty() || pos > 0 {
                    return Err(format!("unsupported template command {:?}", cmd.join(" ")));
                }
                calls.push(Call::Term(parse_term(head)?));
            }
        }
    }
    Ok(calls)
}

fn term_value(t: &Term, ctx: &Context<'_>) -> String {
    match t {
        Term::Field(f) => (ctx.label)(f).unwrap_or_default(),
        Term::Str(s) => s.clone(),
        Term::Num(n) => strata_model::format_float(*n),
        Term::Func(f) if f == "__line__" => ctx.line.to_string(),
        Term::Func(_) => ctx.ts.div_euclid(1_000_000).to_string(),
        Term::Regex(_, src) => src.clone(),
    }
}

fn call(c: &Call, piped: Option<String>, ctx: &Context<'_>) -> Result<String, TooLarge> {
    let (name, terms) = match c {
        Call::Term(t) => return Ok(term_value(t, ctx)),
        Call::Func(n, t) => (n.as_str(), t),
    };
    let mut args: Vec<String> = terms.iter().map(|t| term_value(t, ctx)).collect();
    if let Some(p) = piped {
        args.push(p);
    }
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let b = |v: bool| if v { "true" } else { "false" }.to_string();
    // Only these functions make more text than they are given: case
    // mapping (up to three times the bytes), padding, replacing, printf.
    match name {
        "ToUpper" | "upper" | "ToLower" | "lower" | "title" => within_budget(name, a(0).len() * 3)?,
        "printf" => within_budget(name, args.iter().map(String::len).sum())?,
        _ => {}
    }
    Ok(match name {
        "ToUpper" | "upper" => a(0).to_uppercase(),
        "ToLower" | "lower" => a(0).to_lowercase(),
        "title" => a(0)
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
        "trim" | "trimSpace" => a(0).trim().to_string(),
        "trimPrefix" => a(1).strip_prefix(a(0)).unwrap_or(a(1)).to_string(),
        "trimSuffix" => a(1).strip_suffix(a(0)).unwrap_or(a(1)).to_string(),
        "replace" => {
            let (from, to, text) = (a(0), a(1), a(2));
            if !from.is_empty() && to.len() > from.len() {
                let n = text.matches(from).count();
                within_budget(name, text.len() + n * (to.len() - from.len()))?;
            } else if from.is_empty() {
                // Go inserts `to` before every character and at the end.
                within_budget(name, text.len() + (text.chars().count() + 1) * to.len())?;
            }
            text.replace(from, to)
        }
        "regexReplaceAll" => match terms.first() {
            Some(Term::Regex(re, _)) => regex_replace_all(re, a(2), a(1))?,
            _ => a(1).to_string(),
        },
        "default" => {
            if a(1).is_empty() {
                a(0).to_string()
            } else {
                a(1).to_string()
            }
        }
        "len" => a(0).chars().count().to_string(),
        "contains" => b(a(1).contains(a(0))),
        "hasPrefix" => b(a(1).starts_with(a(0))),
        "hasSuffix" => b(a(1).ends_with(a(0))),
        "alignLeft" | "alignRight" => {
            let n: usize = a(0).parse().unwrap_or(0);
            within_budget(name, n)?;
            let s: String = a(1).chars().take(n).collect();
            let pad = " ".repeat(n.saturating_sub(s.chars().count()));
            if name == "alignLeft" {
                s + &pad
            } else {
                pad + &s
            }
        }
        "unixEpoch" => a(0)
            .parse::<f64>()
            .map(|f| format!("{}", f as i64))
            .unwrap_or_default(),
        "printf" => printf(a(0), &args[1.min(args.len())..]),
        _ => String::new(),
    })
}

/// `re.replace_all(text, replacement)`, each expansion checked against the
/// budget before it is written (`$0$0$0...` multiplies the text).
fn regex_replace_all(re: &Regex, replacement: &str, text: &str) -> Result<String, TooLarge> {
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

/// `printf` with `%s`, `%v`, `%d` and `%%`.
fn printf(fmt: &str, args: &[String]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars();
    let mut next = args.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some('s' | 'v' | 'd' | 'q') => {
                out.push_str(next.next().map(String::as_str).unwrap_or(""))
            }
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, labels: &[(&str, &str)], line: &str) -> String {
        let f = |n: &str| {
            labels
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        Template::parse(t)
            .unwrap()
            .render(&Context {
                label: &f,
                line,
                ts: 1_700_000_000_123_000_000,
            })
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn sizes_from_the_query_are_bounded_before_allocating() {
        let l = [("app", "api")];
        let too_large = |t: &str| {
            let out = render(t, &l, "aaaa");
            assert!(
                out.starts_with("error: template function"),
                "{t}: {out:.80}"
            );
        };
        too_large("{{ alignLeft 1000000000000 .app }}");
        too_large("{{ alignRight 1048577 .app }}");
        let doubling = r#" | replace "a" "aaaaaaaaaaaaaaaa""#.repeat(8);
        too_large(&format!("{{{{ __line__{doubling} }}}}"));
        too_large(&format!(
            r#"{{{{ regexReplaceAll "a" __line__ "{}" }}}}"#,
            "$0".repeat(300_000)
        ));
        too_large(&"{{ alignLeft 600000 .app }}".repeat(2));
        // Within the budget everything still works.
        assert_eq!(render("{{ alignLeft 5 .app }}|", &l, ""), "api  |");
        assert_eq!(
            render(
                r#"{{ regexReplaceAll "(a)" __line__ "<$1>" | replace "a" "bb" }}"#,
                &l,
                "xa"
            ),
            "x<bb>"
        );
    }

    #[test]
    fn fields_functions_and_pipes() {
        let l = [("method", "get"), ("path", "/api/users"), ("ms", "12")];
        assert_eq!(render("{{.method}} {{.path}}", &l, ""), "get /api/users");
        assert_eq!(
            render(
                r#"{{ .method | ToUpper }} {{ .path | trimPrefix "/api" }}"#,
                &l,
                ""
            ),
            "GET /users"
        );
        assert_eq!(render(r#"{{ .nope | default "-" }}"#, &l, ""), "-");
        assert_eq!(render("{{ __line__ | upper }}!", &l, "hi"), "HI!");
        assert_eq!(render("{{ __timestamp__ }}", &l, ""), "1700000000123");
        assert_eq!(
            render(r#"took {{ printf "%sms" .ms }}"#, &l, ""),
            "took 12ms"
        );
        assert_eq!(
            render(
                r#"{{ regexReplaceAll "[0-9]+" .path "N" }}"#,
                &[("path", "/u/42")],
                ""
            ),
            "/u/N"
        );
        assert_eq!(render("a  {{- .ms -}}  b", &l, ""), "a12b");
        assert!(Template::parse("{{ if .x }}y{{ end }}").is_err());
        assert!(Template::parse("{{ nosuch .x }}").is_err());
        assert!(Template::parse("{{ .x ").is_err());
    }
}
