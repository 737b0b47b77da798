//! LogQL lexer and recursive-descent parser. Errors carry the 1-based line
//! and column of the offending token, worded like Loki's
//! (`parse error at line 1, col 12: ...`).

use std::time::Duration;

use promql_parser::parser::token::{T_EQL, T_EQL_REGEX, T_NEQ, T_NEQ_REGEX};
use regex::Regex;
use strata_model::Matcher;
use strata_model::logs::LineFilter;
use strata_model::matching::Cardinality;
use strata_model::nesting::{DepthMeter, MAX_QUERY_DEPTH};

use crate::ast::*;
use crate::template::Template;

/// A query that does not parse, with where.
pub use strata_model::syntax::SyntaxError as ParseError;
use strata_model::syntax::{error_at as err_at, scan_string};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// A number, duration or byte size as written.
    Num(String),
    Punct(&'static str),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier {s:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Num(s) => format!("number {s}"),
            Tok::Punct(p) => format!("{p:?}"),
            Tok::Eof => "end of input".into(),
        }
    }
}

const PUNCTS: &[&str] = &[
    "|=", "|~", "|>", "!=", "!~", "!>", "=~", "==", ">=", "<=", "|", "=", ">", "<", "{", "}", "(",
    ")", "[", "]", ",", "+", "-", "*", "/", "%", "^",
];

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        if c == b'"' || c == b'`' {
            let (s, end) = scan_string(src, i)?;
            out.push((Tok::Str(s), start));
            i = end;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Num(src[start..i].to_string()), start));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Ident(src[start..i].to_string()), start));
            continue;
        }
        match PUNCTS.iter().find(|p| src[i..].starts_with(**p)) {
            Some(p) => {
                out.push((Tok::Punct(p), start));
                i += p.len();
            }
            None => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(err_at(src, start, &format!("unexpected character {ch:?}")));
            }
        }
    }
    out.push((Tok::Eof, src.len()));
    Ok(out)
}

/// Refuses a query whose syntax tree could be deeper than
/// [`MAX_QUERY_DEPTH`] before it is parsed (the parser, the evaluator and
/// dropping the tree all recurse). Stream selectors are flat lists; every
/// other `,` may chain label filters, so it counts as an operator.
fn check_depth(src: &str, toks: &[(Tok, usize)]) -> Result<(), ParseError> {
    let mut m = DepthMeter::new(MAX_QUERY_DEPTH);
    let mut in_selector = false;
    for (tok, pos) in toks {
        let metered = match tok {
            Tok::Punct("{") => {
                in_selector = true;
                Ok(())
            }
            Tok::Punct("}") => {
                in_selector = false;
                Ok(())
            }
            _ if in_selector => Ok(()),
            Tok::Punct("(") => m.open(),
            Tok::Punct(")") => m.close(),
            Tok::Punct(p) if binop(tok).is_some() || *p == "," => m.operator(),
            Tok::Ident(w) if matches!(w.as_str(), "and" | "or" | "unless") => m.operator(),
            _ => Ok(()),
        };
        metered.map_err(|e| err_at(src, *pos, &e.to_string()))?;
    }
    m.finish()
        .map(|_| ())
        .map_err(|e| err_at(src, src.len(), &e.to_string()))
}

/// Parses a Go/Prometheus duration: `5m`, `1h30m`, `250ms`, `1.5s`, `2d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n_end == 0 {
            return None;
        }
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 7.0 * 86400.0,
            "y" => 365.0 * 86400.0,
            _ => return None,
        };
        total += n * unit;
        rest = &rest[u_end..];
    }
    // Go's time.ParseDuration stops at an int64 of nanoseconds (~292 years).
    Duration::try_from_secs_f64(total)
        .ok()
        .filter(|d| d.as_nanos() <= i64::MAX as u128)
}

/// Parses a humanized byte size: `100`, `10KB` (1000), `1.5KiB` (1024), `2MB`.
pub fn parse_bytes(s: &str) -> Option<f64> {
    let s = s.trim();
    let n_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..n_end].parse().ok()?;
    let unit = s[n_end..].trim().to_ascii_lowercase();
    let mult = match unit.as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "pb" | "p" => 1e15,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1024.0 * 1024.0,
        "gib" | "gi" => 1024.0 * 1024.0 * 1024.0,
        "tib" | "ti" => 1024f64.powi(4),
        "pib" | "pi" => 1024f64.powi(5),
        _ => return None,
    };
    Some(n * mult)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

/// Parses a LogQL query.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    check_depth(src, &toks)?;
    let mut p = Parser { src, toks, pos: 0 };
    let e = p.expr(0)?;
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected("end of query"));
    }
    Ok(e)
}

fn binop(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::Ident(s) if s == "or" => (BinOp::Or, 1),
        Tok::Ident(s) if s == "and" => (BinOp::And, 2),
        Tok::Ident(s) if s == "unless" => (BinOp::Unless, 2),
        Tok::Punct("==") => (BinOp::Eq, 3),
        Tok::Punct("!=") => (BinOp::Ne, 3),
        Tok::Punct(">") => (BinOp::Gt, 3),
        Tok::Punct(">=") => (BinOp::Ge, 3),
        Tok::Punct("<") => (BinOp::Lt, 3),
        Tok::Punct("<=") => (BinOp::Le, 3),
        Tok::Punct("+") => (BinOp::Add, 4),
        Tok::Punct("-") => (BinOp::Sub, 4),
        Tok::Punct("*") => (BinOp::Mul, 5),
        Tok::Punct("/") => (BinOp::Div, 5),
        Tok::Punct("%") => (BinOp::Mod, 5),
        Tok::Punct("^") => (BinOp::Pow, 6),
        _ => return None,
    })
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)].0
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn err(&self, msg: &str) -> ParseError {
        err_at(self.src, self.toks[self.pos].1, msg)
    }

    fn unexpected(&self, wanted: &str) -> ParseError {
        self.err(&format!(
            "syntax error: unexpected {}, expecting {wanted}",
            self.peek().describe()
        ))
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn is_ident(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Ident(i) if i == s)
    }

    fn expect(&mut self, p: &str) -> Result<(), ParseError> {
        if self.is_punct(p) {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(&format!("{p:?}")))
        }
    }

    fn ident(&mut self) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected("a label name")),
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected("a string")),
        }
    }

    fn number(&mut self) -> Result<f64, ParseError> {
        let neg = if self.is_punct("-") {
            self.next();
            true
        } else {
            false
        };
        match self.peek().clone() {
            Tok::Num(s) => match s.parse::<f64>() {
                Ok(n) => {
                    self.next();
                    Ok(if neg { -n } else { n })
                }
                Err(_) => Err(self.err(&format!("invalid number {s:?}"))),
            },
            _ => Err(self.unexpected("a number")),
        }
    }

    fn duration(&mut self) -> Result<Duration, ParseError> {
        match self.peek().clone() {
            Tok::Num(s) => match parse_duration(&s) {
                Some(d) => {
                    self.next();
                    Ok(d)
                }
                None => Err(self.err(&format!("invalid duration {s:?}"))),
            },
            _ => Err(self.unexpected("a duration")),
        }
    }

    // ---- metric expressions ----

    fn expr(&mut self, min_prec: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        while let Some((op, prec)) = binop(self.peek()) {
            if prec < min_prec {
                break;
            }
            let op_pos = self.pos;
            self.next();
            let return_bool = if self.is_ident("bool") {
                self.next();
                true
            } else {
                false
            };
            let matching = self.vector_matching()?;
            // `^` is right-associative.
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            let (Expr::Metric(l), Expr::Metric(r)) = (lhs, rhs) else {
                return Err(err_at(
                    self.src,
                    self.toks[op_pos].1,
                    "binary operators need metric queries or numbers on both sides, not log queries",
                ));
            };
            if return_bool && !op.is_comparison() {
                return Err(err_at(
                    self.src,
                    self.toks[op_pos].1,
                    "bool modifier is only allowed on comparisons",
                ));
            }
            lhs = Expr::Metric(MetricExpr::Binary {
                op,
                return_bool,
                matching,
                lhs: Box::new(l),
                rhs: Box::new(r),
            });
        }
        Ok(lhs)
    }

    fn vector_matching(&mut self) -> Result<VectorMatching, ParseError> {
        let mut m = VectorMatching::default();
        if self.is_ident("on") || self.is_ident("ignoring") {
            let on = self.is_ident("on");
            self.next();
            m.on = Some((on, self.label_list()?));
            if self.is_ident("group_left") || self.is_ident("group_right") {
                let left = self.is_ident("group_left");
                self.next();
                let extra = if self.is_punct("(") {
                    self.label_list()?
                } else {
                    Vec::new()
                };
                m.card = if left {
                    Cardinality::ManyToOne(extra)
                } else {
                    Cardinality::OneToMany(extra)
                };
            }
        }
        Ok(m)
    }

    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect("(")?;
        let mut out = Vec::new();
        while !self.is_punct(")") {
            out.push(self.ident()?);
            if self.is_punct(",") {
                self.next();
            } else if !self.is_punct(")") {
                return Err(self.unexpected("\",\" or \")\""));
            }
        }
        self.next();
        Ok(out)
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        if self.is_ident("by") {
            self.next();
            Ok(Some(Grouping::By(self.label_list()?)))
        } else if self.is_ident("without") {
            self.next();
            Ok(Some(Grouping::Without(self.label_list()?)))
        } else {
            Ok(None)
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.is_punct("-") || self.is_punct("+") {
            let neg = self.is_punct("-");
            self.next();
            let inner = self.unary()?;
            let Expr::Metric(m) = inner else {
                return Err(self.err("unary minus needs a metric query"));
            };
            return Ok(Expr::Metric(match (neg, m) {
                (true, MetricExpr::Literal(v)) => MetricExpr::Literal(-v),
                (true, m) => MetricExpr::Binary {
                    op: BinOp::Mul,
                    return_bool: false,
                    matching: VectorMatching::default(),
                    lhs: Box::new(m),
                    rhs: Box::new(MetricExpr::Literal(-1.0)),
                },
                (false, m) => m,
            }));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek().clone() {
            Tok::Punct("(") => {
                self.next();
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("{") => Ok(Expr::Log(self.log_expr()?)),
            Tok::Num(_) => Ok(Expr::Metric(MetricExpr::Literal(self.number()?))),
            Tok::Ident(name) => {
                if name == "vector" {
                    self.next();
                    self.expect("(")?;
                    let v = self.number()?;
                    self.expect(")")?;
                    return Ok(Expr::Metric(MetricExpr::VectorLiteral(v)));
                }
                if let Some(op) = RangeOp::from_name(&name) {
                    self.next();
                    return Ok(Expr::Metric(self.range_agg(op)?));
                }
                if let Some(op) = VectorOp::from_name(&name) {
                    self.next();
                    return Ok(Expr::Metric(self.vector_agg(op)?));
                }
                Err(self.err(&format!(
                    "syntax error: unknown function or keyword {name:?}"
                )))
            }
            _ => Err(self.unexpected("a stream selector, a function or a number")),
        }
    }

    fn range_agg(&mut self, op: RangeOp) -> Result<MetricExpr, ParseError> {
        self.expect("(")?;
        let param = if op == RangeOp::QuantileOverTime {
            let q = self.number()?;
            self.expect(",")?;
            Some(q)
        } else {
            None
        };
        let start = self.pos;
        let range = self.log_range()?;
        self.expect(")")?;
        if op.needs_unwrap() && range.unwrap.is_none() {
            return Err(err_at(
                self.src,
                self.toks[start].1,
                &format!(
                    "{} needs an unwrapped range: add `| unwrap <label>`",
                    range_op_name(op)
                ),
            ));
        }
        if !op.needs_unwrap() && op != RangeOp::Rate && range.unwrap.is_some() {
            return Err(err_at(
                self.src,
                self.toks[start].1,
                &format!("{} does not take an unwrapped range", range_op_name(op)),
            ));
        }
        let grouping = self.grouping()?;
        if grouping.is_some() && range.unwrap.is_none() {
            return Err(
                self.err("grouping is only allowed on range aggregations over unwrapped ranges")
            );
        }
        Ok(MetricExpr::Range {
            op,
            param,
            range: Box::new(range),
            grouping,
        })
    }

    fn vector_agg(&mut self, op: VectorOp) -> Result<MetricExpr, ParseError> {
        let mut grouping = self.grouping()?;
        self.expect("(")?;
        let param = if matches!(op, VectorOp::Topk | VectorOp::Bottomk) {
            let k = self.number()?;
            self.expect(",")?;
            Some(k)
        } else {
            None
        };
        let inner_pos = self.pos;
        let inner = self.expr(0)?;
        self.expect(")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        let Expr::Metric(inner) = inner else {
            return Err(err_at(
                self.src,
                self.toks[inner_pos].1,
                "vector aggregations need a metric query, e.g. count_over_time({...}[5m])",
            ));
        };
        Ok(MetricExpr::Vector {
            op,
            param,
            grouping,
            expr: Box::new(inner),
        })
    }

    /// `{...} pipeline [range] [offset d]`, the range also allowed right after the selector.
    fn log_range(&mut self) -> Result<LogRange, ParseError> {
        let matchers = self.selector()?;
        let mut range = None;
        if self.is_punct("[") {
            range = Some(self.range_literal()?);
        }
        let (pipeline, unwrap) = self.pipeline(true)?;
        if range.is_none() {
            if !self.is_punct("[") {
                return Err(self.unexpected("a range like [5m]"));
            }
            range = Some(self.range_literal()?);
        }
        let offset = if self.is_ident("offset") {
            self.next();
            self.duration()?
        } else {
            Duration::ZERO
        };
        Ok(LogRange {
            log: LogExpr { matchers, pipeline },
            range: range.unwrap_or_default(),
            offset,
            unwrap,
        })
    }

    fn range_literal(&mut self) -> Result<Duration, ParseError> {
        self.expect("[")?;
        let d = self.duration()?;
        if d.is_zero() {
            return Err(self.err("range must be positive"));
        }
        self.expect("]")?;
        Ok(d)
    }

    fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        let matchers = self.selector()?;
        let (pipeline, unwrap) = self.pipeline(false)?;
        debug_assert!(unwrap.is_none());
        if self.is_punct("[") {
            return Err(self
                .err("a range can only be used inside a range aggregation like count_over_time"));
        }
        Ok(LogExpr { matchers, pipeline })
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.expect("{")?;
        let mut out = Vec::new();
        while !self.is_punct("}") {
            out.push(self.matcher()?);
            if self.is_punct(",") {
                self.next();
            } else if !self.is_punct("}") {
                return Err(self.unexpected("\",\" or \"}\""));
            }
        }
        self.next();
        if out.is_empty() {
            return Err(
                self.err("queries require at least one label matcher in the stream selector")
            );
        }
        if out.iter().all(|m| m.is_match("")) {
            return Err(self.err(
                "queries require at least one stream matcher that does not match the empty string",
            ));
        }
        Ok(out)
    }

    fn matcher(&mut self) -> Result<Matcher, ParseError> {
        let name = self.ident()?;
        let op_pos = self.pos;
        let tok = match self.next() {
            Tok::Punct("=") => T_EQL,
            Tok::Punct("!=") => T_NEQ,
            Tok::Punct("=~") => T_EQL_REGEX,
            Tok::Punct("!~") => T_NEQ_REGEX,
            _ => {
                self.pos = op_pos;
                return Err(self.unexpected("=, !=, =~ or !~"));
            }
        };
        let value = self.string()?;
        Matcher::new_matcher(tok, name, value).map_err(|e| {
            err_at(
                self.src,
                self.toks[op_pos].1,
                &format!("invalid matcher: {e}"),
            )
        })
    }

    fn line_filter_value(&mut self, op: &str) -> Result<LineFilter, ParseError> {
        let pos = self.pos;
        let s = self.string()?;
        match op {
            "|=" => Ok(LineFilter::Contains(s)),
            "!=" => Ok(LineFilter::NotContains(s)),
            "|~" | "!~" => {
                let re = Regex::new(&s).map_err(|e| {
                    err_at(
                        self.src,
                        self.toks[pos].1,
                        &format!("invalid regex {s:?}: {e}"),
                    )
                })?;
                Ok(if op == "|~" {
                    LineFilter::Regex(re)
                } else {
                    LineFilter::NotRegex(re)
                })
            }
            _ => {
                // `|> "<_> error <_>"`: a pattern match on the line.
                let pattern =
                    parse_pattern_parts(&s).map_err(|e| err_at(self.src, self.toks[pos].1, &e))?;
                let re = Regex::new(&pattern_line_regex(&pattern)).map_err(|e| {
                    err_at(self.src, self.toks[pos].1, &format!("pattern filter: {e}"))
                })?;
                Ok(if op == "|>" {
                    LineFilter::Regex(re)
                } else {
                    LineFilter::NotRegex(re)
                })
            }
        }
    }

    /// Stages after a selector. With `allow_unwrap`, `| unwrap` ends the
    /// log part and only label filters may follow it.
    fn pipeline(&mut self, allow_unwrap: bool) -> Result<(Vec<Stage>, Option<Unwrap>), ParseError> {
        let mut stages = Vec::new();
        loop {
            let op = match self.peek() {
                Tok::Punct(p @ ("|=" | "!=" | "|~" | "!~" | "|>" | "!>")) => *p,
                Tok::Punct("|") => "|",
                _ => return Ok((stages, None)),
            };
            self.next();
            if op != "|" {
                let first = self.line_filter_value(op)?;
                let mut alts = vec![first];
                while self.is_ident("or") && matches!(self.peek_at(1), Tok::Str(_)) {
                    self.next();
                    alts.push(self.line_filter_value(op)?);
                }
                if alts.len() == 1 {
                    stages.extend(alts.into_iter().map(Stage::LineFilter));
                } else if op.starts_with('!') {
                    // `!= "a" or "b"`: neither.
                    stages.extend(alts.into_iter().map(Stage::LineFilter));
                } else {
                    stages.push(Stage::LineFilter(LineFilter::Any(alts)));
                }
                continue;
            }
            if self.is_punct("(") {
                stages.push(Stage::LabelFilter(self.label_filter_or()?));
                continue;
            }
            let Tok::Ident(name) = self.peek().clone() else {
                return Err(self.unexpected("a parser, formatter or label filter after |"));
            };
            // A label filter starts with `name op`; stage keywords are followed by something else.
            let is_filter = matches!(
                self.peek_at(1),
                Tok::Punct("=" | "!=" | "=~" | "!~" | ">" | ">=" | "<" | "<=" | "==")
            );
            if is_filter {
                stages.push(Stage::LabelFilter(self.label_filter_or()?));
                continue;
            }
            self.next();
            let stage = match name.as_str() {
                "json" => Stage::Json(
                    self.extraction_params(true)?
                        .into_iter()
                        .map(|(l, p)| (l, p.1.unwrap_or_default()))
                        .collect(),
                ),
                "logfmt" => {
                    let (mut strict, mut keep_empty) = (false, false);
                    while self.is_punct("-") {
                        while self.is_punct("-") {
                            self.next();
                        }
                        let mut flag = self.ident()?;
                        // Loki's flag is `--keep-empty`: the lexer reads it in three.
                        if flag == "keep"
                            && self.is_punct("-")
                            && matches!(self.peek_at(1), Tok::Ident(s) if s == "empty")
                        {
                            self.next();
                            self.next();
                            flag = "keep-empty".into();
                        }
                        match flag.as_str() {
                            "strict" => strict = true,
                            "keep-empty" | "keep_empty" => keep_empty = true,
                            other => {
                                return Err(self.err(&format!("unknown logfmt flag --{other}")));
                            }
                        }
                    }
                    let params = self
                        .extraction_params(false)?
                        .into_iter()
                        .map(|(l, p)| (l, p.0))
                        .collect();
                    Stage::Logfmt {
                        strict,
                        keep_empty,
                        params,
                    }
                }
                "regexp" => {
                    let pos = self.pos;
                    let s = self.string()?;
                    let re = Regex::new(&s).map_err(|e| {
                        err_at(
                            self.src,
                            self.toks[pos].1,
                            &format!("invalid regexp {s:?}: {e}"),
                        )
                    })?;
                    if re.capture_names().flatten().next().is_none() {
                        return Err(err_at(
                            self.src,
                            self.toks[pos].1,
                            "regexp needs at least one named capture group (?P<name>...)",
                        ));
                    }
                    Stage::Regexp(re)
                }
                "pattern" => {
                    let pos = self.pos;
                    let s = self.string()?;
                    Stage::Pattern(
                        parse_pattern(&s).map_err(|e| err_at(self.src, self.toks[pos].1, &e))?,
                    )
                }
                "unpack" => Stage::Unpack,
                "decolorize" => Stage::Decolorize,
                "line_format" => {
                    let pos = self.pos;
                    let s = self.string()?;
                    Stage::LineFormat(
                        Template::parse(&s).map_err(|e| err_at(self.src, self.toks[pos].1, &e))?,
                    )
                }
                "label_format" => Stage::LabelFormat(self.label_formats()?),
                "drop" => Stage::Drop(self.label_sels()?),
                "keep" => Stage::Keep(self.label_sels()?),
                "unwrap" => {
                    if !allow_unwrap {
                        return Err(self.err("unwrap can only be used inside a range aggregation"));
                    }
                    let unwrap = self.unwrap_rest()?;
                    return Ok((stages, Some(unwrap)));
                }
                other => {
                    self.pos -= 1;
                    return Err(
                        self.err(&format!("syntax error: unknown pipeline stage {other:?}"))
                    );
                }
            };
            stages.push(stage);
        }
    }

    fn unwrap_rest(&mut self) -> Result<Unwrap, ParseError> {
        let (label, conv) = match self.peek().clone() {
            Tok::Ident(f) if matches!(self.peek_at(1), Tok::Punct("(")) => {
                let conv = match f.as_str() {
                    "duration" | "duration_seconds" => UnwrapConv::Duration,
                    "bytes" => UnwrapConv::Bytes,
                    other => return Err(self.err(&format!("unknown unwrap conversion {other}()"))),
                };
                self.next();
                self.expect("(")?;
                let l = self.ident()?;
                self.expect(")")?;
                (l, conv)
            }
            _ => (self.ident()?, UnwrapConv::Number),
        };
        let mut post_filters = Vec::new();
        while self.is_punct("|") {
            self.next();
            post_filters.push(self.label_filter_or()?);
        }
        Ok(Unwrap {
            label,
            conv,
            post_filters,
        })
    }

    /// `label="path", other` parameters of json/logfmt: (label, (key text, json path)).
    #[allow(clippy::type_complexity)]
    fn extraction_params(
        &mut self,
        json: bool,
    ) -> Result<Vec<(String, (String, Option<JsonPath>))>, ParseError> {
        let mut out = Vec::new();
        while let Tok::Ident(label) = self.peek().clone() {
            if matches!(self.peek_at(1), Tok::Punct("=")) {
                self.next();
                self.next();
                let pos = self.pos;
                let key = self.string()?;
                let path = if json {
                    Some(
                        parse_json_path(&key)
                            .map_err(|e| err_at(self.src, self.toks[pos].1, &e))?,
                    )
                } else {
                    None
                };
                out.push((label, (key, path)));
            } else {
                self.next();
                let path = json.then(|| vec![JsonStep::Key(label.clone())]);
                out.push((label.clone(), (label, path)));
            }
            if self.is_punct(",") {
                self.next();
            } else {
                break;
            }
        }
        Ok(out)
    }

    fn label_formats(&mut self) -> Result<Vec<LabelFormat>, ParseError> {
        let mut out = Vec::new();
        loop {
            let dst = self.ident()?;
            self.expect("=")?;
            match self.peek().clone() {
                Tok::Ident(src) => {
                    self.next();
                    out.push(LabelFormat::Rename { dst, src });
                }
                Tok::Str(s) => {
                    let pos = self.pos;
                    self.next();
                    let template =
                        Template::parse(&s).map_err(|e| err_at(self.src, self.toks[pos].1, &e))?;
                    out.push(LabelFormat::Template { dst, template });
                }
                _ => return Err(self.unexpected("a label name or a template string")),
            }
            if self.is_punct(",") {
                self.next();
            } else {
                return Ok(out);
            }
        }
    }

    fn label_sels(&mut self) -> Result<Vec<LabelSel>, ParseError> {
        let mut out = Vec::new();
        loop {
            if matches!(self.peek_at(1), Tok::Punct("=" | "!=" | "=~" | "!~")) {
                out.push(LabelSel::Matcher(self.matcher()?));
            } else {
                out.push(LabelSel::Name(self.ident()?));
            }
            if self.is_punct(",") {
                self.next();
            } else {
                return Ok(out);
            }
        }
    }

    fn label_filter_or(&mut self) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_and()?;
        while self.is_ident("or") {
            self.next();
            let rhs = self.label_filter_and()?;
            lhs = LabelFilter::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_filter_and(&mut self) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_primary()?;
        loop {
            if self.is_ident("and") || self.is_punct(",") {
                self.next();
            } else if !(matches!(self.peek(), Tok::Ident(s) if s != "or" && s != "offset")
                && matches!(
                    self.peek_at(1),
                    Tok::Punct("=" | "!=" | "=~" | "!~" | ">" | ">=" | "<" | "<=" | "==")
                ))
            {
                break;
            }
            let rhs = self.label_filter_primary()?;
            lhs = LabelFilter::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_filter_primary(&mut self) -> Result<LabelFilter, ParseError> {
        if self.is_punct("(") {
            self.next();
            let f = self.label_filter_or()?;
            self.expect(")")?;
            return Ok(f);
        }
        let name = self.ident()?;
        let op_pos = self.pos;
        let op = match self.next() {
            Tok::Punct(p) => p,
            _ => {
                self.pos = op_pos;
                return Err(self.unexpected("a comparison operator"));
            }
        };
        // A negative number (`counter>-1`), as Loki accepts.
        let negative = self.is_punct("-") && matches!(self.peek_at(1), Tok::Num(_));
        if negative {
            self.next();
        }
        match (op, self.peek().clone()) {
            ("=" | "!=" | "=~" | "!~", Tok::Str(_)) => {
                self.pos = op_pos - 1;
                Ok(LabelFilter::Matcher(self.matcher()?))
            }
            (_, Tok::Num(text)) | (_, Tok::Str(text)) if op != "=~" && op != "!~" => {
                if matches!(self.peek(), Tok::Str(_)) {
                    return Err(self.err(&format!("{op} compares numbers; quote-less values like 200, 250ms or 10KB are expected")));
                }
                let cmp = match op {
                    "=" | "==" => CmpOp::Eq,
                    "!=" => CmpOp::Ne,
                    ">" => CmpOp::Gt,
                    ">=" => CmpOp::Ge,
                    "<" => CmpOp::Lt,
                    "<=" => CmpOp::Le,
                    _ => return Err(self.unexpected("a comparison operator")),
                };
                let (kind, value) = if let Ok(n) = text.parse::<f64>() {
                    (NumKind::Number, if negative { -n } else { n })
                } else if negative {
                    return Err(self.err(&format!("only numbers may be negative, not {text:?}")));
                } else if let Some(d) = parse_duration(&text) {
                    (NumKind::Duration, d.as_secs_f64())
                } else if let Some(b) = parse_bytes(&text) {
                    (NumKind::Bytes, b)
                } else {
                    return Err(
                        self.err(&format!("invalid number, duration or byte size {text:?}"))
                    );
                };
                self.next();
                Ok(LabelFilter::Compare {
                    name,
                    op: cmp,
                    kind,
                    value,
                })
            }
            _ => Err(self.unexpected("a string, number, duration or byte size")),
        }
    }
}

fn range_op_name(op: RangeOp) -> String {
    format!("{op:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let lower = c.to_ascii_lowercase();
            if c.is_ascii_uppercase() && i > 0 {
                vec!['_', lower]
            } else {
                vec![lower]
            }
        })
        .collect()
}

/// Parses `a.b[0]["c d"]` into steps.
fn parse_json_path(s: &str) -> Result<JsonPath, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    let mut key = String::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                if !key.is_empty() {
                    out.push(JsonStep::Key(std::mem::take(&mut key)));
                }
                i += 1;
            }
            b'[' => {
                if !key.is_empty() {
                    out.push(JsonStep::Key(std::mem::take(&mut key)));
                }
                let end = s[i..]
                    .find(']')
                    .ok_or_else(|| format!("unclosed [ in JSON path {s:?}"))?
                    + i;
                let inner = s[i + 1..end].trim();
                if let Some(q) = inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
                    out.push(JsonStep::Key(q.to_string()));
                } else {
                    let n: usize = inner
                        .parse()
                        .map_err(|_| format!("bad index {inner:?} in JSON path {s:?}"))?;
                    out.push(JsonStep::Index(n));
                }
                i = end + 1;
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                key.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    if !key.is_empty() {
        out.push(JsonStep::Key(key));
    }
    if out.is_empty() {
        return Err(format!("empty JSON path {s:?}"));
    }
    Ok(out)
}

/// Parses a `pattern` expression: `<name>` captures, `<_>` skips, the rest literal.
/// A pattern's literals and captures; a `|>` line filter may have no
/// capture (the whole line must then equal it), as in Loki.
fn parse_pattern_parts(s: &str) -> Result<Pattern, String> {
    let mut parts = Vec::new();
    let mut rest = s;
    let mut lit = String::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('<')
            && let Some(end) = after.find('>')
        {
            let name = &after[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if valid {
                if !lit.is_empty() {
                    parts.push(PatternPart::Literal(std::mem::take(&mut lit)));
                }
                if matches!(parts.last(), Some(PatternPart::Capture(_))) {
                    return Err(format!(
                        "pattern {s:?}: two captures must be separated by literal text"
                    ));
                }
                parts.push(PatternPart::Capture(
                    (name != "_").then(|| name.to_string()),
                ));
                rest = &after[end + 1..];
                continue;
            }
        }
        let ch = rest.chars().next().unwrap_or('?');
        lit.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    if !lit.is_empty() {
        parts.push(PatternPart::Literal(lit));
    }
    Ok(Pattern { parts })
}

/// A `| pattern` stage's expression: at least one capture.
pub fn parse_pattern(s: &str) -> Result<Pattern, String> {
    let pattern = parse_pattern_parts(s)?;
    if !pattern
        .parts
        .iter()
        .any(|p| matches!(p, PatternPart::Capture(_)))
    {
        return Err(format!(
            "pattern {s:?} has no capture such as <name> or <_>"
        ));
    }
    Ok(pattern)
}

/// Starts the regex of a `|>` pattern filter (an empty group: it matches
/// nothing and costs nothing), so the filter prints back as a pattern.
pub(crate) const PATTERN_FILTER_MARK: &str = "(?:)";

/// A regex equivalent to a pattern line filter (`|> "<_> error <_>"`).
fn pattern_line_regex(p: &Pattern) -> String {
    let mut re = format!("{PATTERN_FILTER_MARK}^");
    for part in &p.parts {
        match part {
            PatternPart::Literal(l) => re.push_str(&regex::escape(l)),
            PatternPart::Capture(_) => re.push_str("(?s:.*?)"),
        }
    }
    if matches!(p.parts.last(), Some(PatternPart::Literal(_))) {
        re.push('$');
    }
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(q: &str) -> MetricExpr {
        match parse(q) {
            Ok(Expr::Metric(m)) => m,
            other => panic!("{q}: {other:?}"),
        }
    }

    #[test]
    fn log_queries_and_pipelines() {
        let Ok(Expr::Log(l)) = parse(
            r#"{app="api", env=~"prod|staging"} |= "error" or "fail" != "health" |~ `\d+ms` | json status="response.code", path | logfmt --strict | status >= 400 and path != "/x" or duration > 250ms | line_format "{{.path}}" | label_format dst=src, t="{{.a}}" | drop a, b="c" | keep x | decolorize | pattern "<ip> - <_>" | regexp "took (?P<ms>[0-9]+)ms" | unpack"#,
        ) else {
            panic!()
        };
        assert_eq!(l.matchers.len(), 2);
        assert_eq!(l.pipeline.len(), 14, "{:#?}", l.pipeline);
        assert_eq!(l.leading_line_filters().len(), 3);
        match &l.pipeline[3] {
            Stage::Json(p) => {
                assert_eq!(p[0].0, "status");
                assert_eq!(
                    p[0].1,
                    vec![
                        JsonStep::Key("response".into()),
                        JsonStep::Key("code".into())
                    ]
                );
                assert_eq!(p[1].1, vec![JsonStep::Key("path".into())]);
            }
            s => panic!("{s:?}"),
        }
        match &l.pipeline[5] {
            Stage::LabelFilter(LabelFilter::Or(a, b)) => {
                assert!(matches!(**a, LabelFilter::And(..)));
                assert!(
                    matches!(**b, LabelFilter::Compare { kind: NumKind::Duration, value, .. } if value == 0.25)
                );
            }
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn metric_queries() {
        match metric(
            r#"quantile_over_time(0.95, {app="api"} | regexp "took (?P<ms>[0-9]+)ms" | unwrap ms [15m]) by (endpoint)"#,
        ) {
            MetricExpr::Range {
                op: RangeOp::QuantileOverTime,
                param: Some(q),
                range,
                grouping: Some(Grouping::By(g)),
            } => {
                assert_eq!(q, 0.95);
                assert_eq!(range.range, Duration::from_secs(900));
                assert_eq!(range.unwrap.as_ref().unwrap().label, "ms");
                assert_eq!(g, vec!["endpoint".to_string()]);
            }
            m => panic!("{m:?}"),
        }
        match metric(r#"sum by (app) (rate({app=~".+"} |= "x" [5m] offset 1h)) / 2 > bool 1"#) {
            MetricExpr::Binary {
                op: BinOp::Gt,
                return_bool: true,
                lhs,
                ..
            } => {
                assert!(matches!(*lhs, MetricExpr::Binary { op: BinOp::Div, .. }));
            }
            m => panic!("{m:?}"),
        }
        match metric(r#"count_over_time({app="a"}[1m] | json)"#) {
            MetricExpr::Range { range, .. } => assert_eq!(range.log.pipeline.len(), 1),
            m => panic!("{m:?}"),
        }
        match metric(
            r#"sum_over_time({a="b"} | logfmt | unwrap duration(took) | __error__="" [1m])"#,
        ) {
            MetricExpr::Range { range, .. } => {
                let u = range.unwrap.unwrap();
                assert_eq!(u.conv, UnwrapConv::Duration);
                assert_eq!(u.post_filters.len(), 1);
            }
            m => panic!("{m:?}"),
        }
        assert!(matches!(
            metric("topk(3, count_over_time({a=\"b\"}[1m]))"),
            MetricExpr::Vector {
                op: VectorOp::Topk,
                param: Some(3.0),
                ..
            }
        ));
        assert!(matches!(metric("vector(1) + 2"), MetricExpr::Binary { .. }));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse(r#"{app="api"} | jsn"#).unwrap_err();
        assert_eq!((e.line, e.col), (1, 15), "{e}");
        assert!(e.message.contains("jsn"));
        let e = parse(r#"sum_over_time({app="api"}[5m])"#).unwrap_err();
        assert!(e.message.contains("unwrap"), "{e}");
        let e = parse(r#"{app=~".*"}"#).unwrap_err();
        assert!(e.message.contains("empty string"), "{e}");
        let e = parse("{app=\"a\"}\n  |~ \"(\"").unwrap_err();
        assert_eq!((e.line, e.col), (2, 6), "{e}");
        assert!(parse(r#"rate({a="b"})"#).is_err());
        assert!(parse(r#"{a="b"} + 1"#).is_err());
        assert!(parse(r#"{a="b"}[5m]"#).is_err());
        assert!(parse(r#"count_over_time({a="b"}[5m]"#).is_err());
    }

    #[test]
    fn deep_queries_are_refused_before_parsing() {
        let deep = |q: String| {
            let e = parse(&q).expect_err("too deep");
            assert!(e.message.contains("nested too deeply"), "{e}");
        };
        let m = r#"count_over_time({a="b"}[1m])"#;
        deep(format!("{}{m}{}", "(".repeat(50_000), ")".repeat(50_000)));
        deep(format!("{}{m}", "-".repeat(100_000)));
        deep(vec![m; 100_000].join(" + "));
        deep(format!(
            r#"{{a="b"}} | {}"#,
            vec![r#"x="1""#; 1000].join(" and ")
        ));
        deep(format!(
            r#"{{a="b"}} | {}"#,
            vec![r#"x="1""#; 1000].join(", ")
        ));
        // Wide selectors and ordinary nesting are fine.
        let wide: Vec<String> = (0..500).map(|i| format!("l{i}=\"v\"")).collect();
        parse(&format!("{{{}}}", wide.join(", "))).expect("wide selector");
        parse(&format!("{}{m}{}", "(".repeat(100), ")".repeat(100))).expect("100 parens");
        parse(&vec![m; 100].join(" + ")).expect("100 terms");
    }

    #[test]
    fn durations_and_bytes() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5x"), None);
        // Past an int64 of nanoseconds, as Go's time.ParseDuration.
        assert_eq!(parse_duration("1000000000000y"), None);
        assert_eq!(parse_duration("1e400s"), None);
        assert!(parse_duration("292y").is_some());
        assert!(parse(r#"count_over_time({a="b"}[1000000000000y])"#).is_err());
        assert_eq!(parse_bytes("10KB"), Some(10_000.0));
        assert_eq!(parse_bytes("1KiB"), Some(1024.0));
        assert_eq!(parse_bytes("42"), Some(42.0));
        assert_eq!(parse_bytes("1.5 MB"), Some(1_500_000.0));
    }
}
