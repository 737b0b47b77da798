//! The part of Go's `text/template` that Prometheus alert templates and
//! LogQL's `line_format` / `label_format` use, one engine for both: text
//! with `{{ ... }}` actions (`{{-` / `-}}` trim the text beside them), an
//! action being a pipeline of commands (`{{ .path | trimPrefix "/api" |
//! ToUpper }}`) whose piped value is the last argument of the next command,
//! as in Go. Commands are fields (`.name`, `.Labels.job`), variables
//! (`$value`, `$labels.job`), string (`"..."`, `` `...` ``) and number
//! literals, and function calls. Control structures (`if`, `range`, ...)
//! are refused.
//!
//! A [`Dialect`] says which functions and which fields and variables a
//! template may use, checked when it is parsed, so a template never fails
//! over its syntax while it renders; a [`Scope`] gives the values at
//! render time. The functions themselves are written once, in [`funcs`].
//!
//! A rendering never grows past [`MAX_OUTPUT_BYTES`]: sizes that come from
//! the template (`alignLeft 1000000000000`, a `replace` that multiplies the
//! text, `printf "%.1000000000f"`) are checked before the text is built.

pub mod funcs;

use regex::Regex;

/// Largest text one rendering (and each step of it) may produce.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// A value in a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
}

impl Value {
    /// The value as text (numbers as Prometheus prints them), borrowed
    /// when it already is text: functions run once per log line.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Value::Str(s) => std::borrow::Cow::Borrowed(s),
            Value::Num(n) => std::borrow::Cow::Owned(strata_model::format_float(*n)),
        }
    }

    /// The value as owned text.
    pub fn into_text(self) -> String {
        match self {
            Value::Str(s) => s,
            Value::Num(n) => strata_model::format_float(n),
        }
    }

    /// The value as a number (text is parsed).
    pub fn num(&self) -> Result<f64, RenderError> {
        match self {
            Value::Num(n) => Ok(*n),
            Value::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| RenderError::Failed(format!("can't convert {s:?} to a number"))),
        }
    }

    fn len(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            Value::Num(_) => 24,
        }
    }
}

/// Why a rendering failed.
#[derive(Debug, Clone, PartialEq)]
pub enum RenderError {
    /// The output of `func` would pass [`MAX_OUTPUT_BYTES`].
    TooLarge { func: String },
    /// A function could not work on its arguments.
    Failed(String),
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::TooLarge { func } => write!(
                f,
                "template function {func} would produce more than {MAX_OUTPUT_BYTES} bytes"
            ),
            RenderError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RenderError {}

/// Refuses `size` bytes of output from `func`.
pub(crate) fn within_budget(func: &str, size: usize) -> Result<(), RenderError> {
    if size > MAX_OUTPUT_BYTES {
        Err(RenderError::TooLarge {
            func: func.to_string(),
        })
    } else {
        Ok(())
    }
}

/// A term of a command, as written.
#[derive(Debug, Clone)]
pub enum Term {
    /// `.a.b`: the path after the first dot (`a.b`).
    Field(String),
    /// `$a.b`: the path after the dollar (`a.b`).
    Var(String),
    Str(String),
    Num(f64),
    /// A function of the scope that takes no argument (`__line__`).
    ScopeFunc(String),
    /// A regex argument, compiled once (see [`Dialect::regex_argument`]).
    Regex(Regex, String),
}

/// What one language lets its templates use.
pub trait Dialect {
    /// Functions from [`funcs`] the language offers, under the names it
    /// gives them, and how many arguments each takes (the piped value
    /// counts; `None`: any number, as `printf`).
    fn function(name: &str) -> Option<(funcs::Func, Option<usize>)>;
    /// Zero-argument functions the scope answers (`__line__`).
    fn scope_function(_name: &str) -> bool {
        false
    }
    /// Whether a field or variable may be used.
    fn check_term(term: &Term) -> Result<(), String>;
}

/// The values a template renders with.
pub trait Scope {
    /// A field's value (`.a.b` -> `a.b`).
    fn field(&self, path: &str) -> Value;
    /// A variable's value (`$a.b` -> `a.b`).
    fn var(&self, path: &str) -> Value;
    /// A zero-argument scope function's value.
    fn call(&self, _name: &str) -> Value {
        Value::Str(String::new())
    }
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Action(Vec<Command>),
}

/// A command of a pipeline: a term, or a function with its arguments.
#[derive(Debug, Clone)]
enum Command {
    Term(Term),
    Call(funcs::Func, Vec<Term>),
}

impl Template {
    /// Parses a template of dialect `D`; errors name what is unsupported.
    pub fn parse<D: Dialect>(src: &str) -> Result<Self, String> {
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
            parts.push(Part::Action(parse_pipeline::<D>(body.trim())?));
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("unexpected }} in template {src:?}"));
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
    pub fn render(&self, scope: &dyn Scope) -> Result<String, RenderError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => {
                    within_budget("output", out.len() + t.len())?;
                    out.push_str(t);
                }
                Part::Action(commands) => {
                    let mut piped: Option<Value> = None;
                    for c in commands {
                        piped = Some(run(c, piped.take(), scope)?);
                    }
                    let piece = piped.map(Value::into_text).unwrap_or_default();
                    within_budget("output", out.len() + piece.len())?;
                    out.push_str(&piece);
                }
            }
        }
        Ok(out)
    }
}

/// Splits an action into tokens: `|`, string literals (kept with their
/// opening quote), and words.
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
            chars.next();
            let mut s = String::from(c);
            let mut closed = false;
            while let Some((_, d)) = chars.next() {
                if d == '\\' && c == '"' {
                    match chars.next() {
                        Some((_, 'n')) => s.push('\n'),
                        Some((_, 't')) => s.push('\t'),
                        Some((_, e)) => s.push(e),
                        None => break,
                    }
                    continue;
                }
                if d == c {
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
            let mut end = body.len();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_whitespace() || d == '|' {
                    end = j;
                    break;
                }
                chars.next();
            }
            toks.push(body[i..end].to_string());
        }
    }
    Ok(toks)
}

fn is_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('.')
            .all(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

fn parse_term<D: Dialect>(tok: &str) -> Result<Term, String> {
    if let Some(s) = tok.strip_prefix(['"', '`']) {
        return Ok(Term::Str(s.to_string()));
    }
    let term = if let Some(f) = tok.strip_prefix('.') {
        if !is_path(f) {
            return Err(format!("unsupported field {tok:?} in template"));
        }
        Term::Field(f.to_string())
    } else if let Some(v) = tok.strip_prefix('$') {
        if !is_path(v) {
            return Err(format!("unsupported variable {tok:?} in template"));
        }
        Term::Var(v.to_string())
    } else if let Ok(n) = tok.parse::<f64>() {
        return Ok(Term::Num(n));
    } else if D::scope_function(tok) {
        return Ok(Term::ScopeFunc(tok.to_string()));
    } else if D::function(tok).is_some() {
        return Err(format!("function {tok} needs arguments"));
    } else {
        return Err(format!("unsupported template function or value {tok:?}"));
    };
    D::check_term(&term)?;
    Ok(term)
}

fn parse_pipeline<D: Dialect>(body: &str) -> Result<Vec<Command>, String> {
    let toks = tokenize(body)?;
    let Some(first) = toks.first() else {
        return Err("empty template action".into());
    };
    if matches!(
        first.as_str(),
        "if" | "else" | "range" | "with" | "end" | "define" | "template" | "block"
    ) {
        return Err(format!(
            "template control structure {first:?} is not supported"
        ));
    }
    let mut commands = Vec::new();
    for (pos, cmd) in toks.split(|t| t == "|").enumerate() {
        let Some((head, args)) = cmd.split_first() else {
            return Err(format!("empty command in template action {body:?}"));
        };
        match D::function(head) {
            Some((func, arity)) => {
                let given = args.len() + usize::from(pos > 0);
                if arity.is_some_and(|a| a != given) || given == 0 {
                    return Err(format!(
                        "function {head} takes {} arguments, got {given}",
                        arity.map_or("1 or more".to_string(), |a| a.to_string())
                    ));
                }
                let mut terms = args
                    .iter()
                    .map(|t| parse_term::<D>(t))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(i) = func.regex_argument()
                    && let Some(Term::Str(re)) = terms.get(i)
                {
                    let compiled =
                        Regex::new(re).map_err(|e| format!("bad regex in template: {e}"))?;
                    terms[i] = Term::Regex(compiled, re.clone());
                }
                commands.push(Command::Call(func, terms));
            }
            None => {
                if !args.is_empty() || pos > 0 {
                    return Err(format!("{head:?} is not a function"));
                }
                commands.push(Command::Term(parse_term::<D>(head)?));
            }
        }
    }
    Ok(commands)
}

fn term_value(t: &Term, scope: &dyn Scope) -> Value {
    match t {
        Term::Field(f) => scope.field(f),
        Term::Var(v) => scope.var(v),
        Term::Str(s) => Value::Str(s.clone()),
        Term::Num(n) => Value::Num(*n),
        Term::ScopeFunc(f) => scope.call(f),
        Term::Regex(_, src) => Value::Str(src.clone()),
    }
}

fn run(c: &Command, piped: Option<Value>, scope: &dyn Scope) -> Result<Value, RenderError> {
    match c {
        Command::Term(t) => Ok(term_value(t, scope)),
        Command::Call(func, terms) => {
            let mut args: Vec<Value> = terms.iter().map(|t| term_value(t, scope)).collect();
            args.extend(piped);
            let regex = terms.iter().find_map(|t| match t {
                Term::Regex(re, _) => Some(re),
                _ => None,
            });
            func.call(&args, regex)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funcs::Func;

    /// A dialect with every function and `.x` / `$y` terms.
    struct Any;

    impl Dialect for Any {
        fn function(name: &str) -> Option<(Func, Option<usize>)> {
            Func::by_go_name(name)
        }
        fn scope_function(name: &str) -> bool {
            name == "__line__"
        }
        fn check_term(term: &Term) -> Result<(), String> {
            match term {
                Term::Field(f) if f == "x" => Ok(()),
                Term::Var(v) if v == "y" => Ok(()),
                other => Err(format!("{other:?} is not allowed")),
            }
        }
    }

    struct S;

    impl Scope for S {
        fn field(&self, _: &str) -> Value {
            Value::Str("ab".into())
        }
        fn var(&self, _: &str) -> Value {
            Value::Num(1234.5)
        }
        fn call(&self, _: &str) -> Value {
            Value::Str("the line".into())
        }
    }

    fn render(t: &str) -> Result<String, String> {
        Template::parse::<Any>(t)?
            .render(&S)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn pipelines_pipe_into_the_last_argument() {
        assert_eq!(render("{{ .x }}-{{ $y }}").unwrap(), "ab-1234.5");
        assert_eq!(
            render(r#"{{ .x | printf "<%s>" | toUpper }}"#).unwrap(),
            "<AB>"
        );
        assert_eq!(render("{{ $y | humanize }}").unwrap(), "1.234k");
        assert_eq!(render(r#"{{ trimPrefix "a" .x }}"#).unwrap(), "b");
        assert_eq!(render("{{ __line__ }}").unwrap(), "the line");
        assert_eq!(
            render("a  {{- .x -}}  b {{ `r\\n` }}").unwrap(),
            "aabb r\\n"
        );
        assert_eq!(render(r#"{{ "q\"\n" }}"#).unwrap(), "q\"\n");
    }

    #[test]
    fn refuses_at_parse_what_it_cannot_render() {
        for bad in [
            "{{ if .x }}y{{ end }}",
            "{{ nosuch .x }}",
            "{{ .x ",
            "{{ .z }}",
            "{{ $z }}",
            "{{ .x | .x }}",
            "{{ trimPrefix .x }}",
            "{{ toUpper }}",
            "{{ }}",
            "x }} y",
            r#"{{ regexReplaceAll "(" .x "" }}"#,
            r#"{{ "open }}"#,
        ] {
            assert!(Template::parse::<Any>(bad).is_err(), "{bad:?} parsed");
        }
    }
}
