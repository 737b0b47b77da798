//! Runs a log pipeline on one entry: line filters, parsers (json, logfmt,
//! regexp, pattern, unpack), label filters, formatters and drop/keep, as
//! Loki does. Parsed labels that collide with stream labels get an
//! `_extracted` suffix; parser failures set `__error__` (and
//! `__error_details__`) rather than dropping the line, so `| __error__=""`
//! filters them as in Loki.

use strata_model::logs::LogEntry;
use strata_model::{Label, Labels, Matcher};

use crate::ast::{
    JsonStep, LabelFilter, LabelFormat, LabelSel, NumKind, Pattern, PatternPart, Stage, Unwrap,
    UnwrapConv,
};
use crate::parser::{parse_bytes, parse_duration};
use crate::template::Context;

/// `__error__`: set when a stage fails on an entry.
pub const ERROR_LABEL: &str = "__error__";
/// Loki's `__error__` value for a `line_format`/`label_format` that failed.
const TEMPLATE_ERROR: &str = "TemplateFormatErr";
const ERROR_DETAILS_LABEL: &str = "__error_details__";

/// The working label set of an entry as it goes through the pipeline.
#[derive(Debug, Clone, Default)]
pub struct LabelSet {
    pairs: Vec<Label>,
    /// How many of `pairs` (the first ones) are the stream's own labels.
    stream_len: usize,
}

impl LabelSet {
    /// The stream's labels plus the entry's structured metadata.
    pub fn new(stream: &Labels, metadata: &Labels) -> Self {
        let mut pairs: Vec<Label> = stream.iter().cloned().collect();
        let stream_len = pairs.len();
        for m in metadata {
            if !pairs.iter().any(|l| l.name == m.name) {
                pairs.push(m.clone());
            }
        }
        Self { pairs, stream_len }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    pub fn set(&mut self, name: &str, value: String) {
        match self.pairs.iter_mut().find(|l| l.name == name) {
            Some(l) => l.value = value,
            None => self.pairs.push(Label {
                name: name.to_string(),
                value,
            }),
        }
    }

    pub fn remove(&mut self, name: &str) {
        if let Some(i) = self.pairs.iter().position(|l| l.name == name) {
            if i < self.stream_len {
                self.stream_len -= 1;
            }
            self.pairs.remove(i);
        }
    }

    /// Adds a parsed label: sanitized name, `_extracted` on collision with a
    /// stream label; empty values are skipped unless `keep_empty`.
    fn add_parsed(&mut self, name: &str, value: String, keep_empty: bool) {
        if value.is_empty() && !keep_empty {
            return;
        }
        let mut n = sanitize(name);
        if n.is_empty() {
            return;
        }
        if self.pairs[..self.stream_len].iter().any(|l| l.name == n) {
            n.push_str("_extracted");
        }
        self.set(&n, value);
    }

    fn set_error(&mut self, err: &str, details: String) {
        if self.get(ERROR_LABEL).is_none() {
            self.set(ERROR_LABEL, err.to_string());
            self.set(ERROR_DETAILS_LABEL, details);
        }
    }

    pub fn has_error(&self) -> bool {
        self.get(ERROR_LABEL).is_some()
    }

    /// The final label set (sorted, empty values dropped).
    pub fn into_labels(self) -> Labels {
        Labels::new(self.pairs)
    }
}

/// Replaces characters not allowed in label names with `_`.
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()) {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

/// Runs `stages` on an entry; `None` when a filter drops it.
pub fn process(stages: &[Stage], stream: &Labels, entry: &LogEntry) -> Option<(String, LabelSet)> {
    let mut line = entry.line.clone();
    let mut labels = LabelSet::new(stream, &entry.metadata);
    for stage in stages {
        match stage {
            Stage::LineFilter(f) => {
                if !f.matches(&line) {
                    return None;
                }
            }
            Stage::Json(params) => json_stage(&line, params, &mut labels),
            Stage::Logfmt {
                strict,
                keep_empty,
                params,
            } => logfmt_stage(&line, *strict, *keep_empty, params, &mut labels),
            Stage::Regexp(re) => {
                if let Some(caps) = re.captures(&line) {
                    for name in re.capture_names().flatten() {
                        if let Some(m) = caps.name(name) {
                            labels.add_parsed(name, m.as_str().to_string(), false);
                        }
                    }
                }
            }
            Stage::Pattern(p) => {
                if let Some(caps) = match_pattern(p, &line) {
                    for (name, v) in caps {
                        labels.add_parsed(name, v.to_string(), false);
                    }
                }
            }
            Stage::Unpack => unpack_stage(&mut line, &mut labels),
            Stage::LabelFilter(f) => {
                if !label_filter(f, &mut labels) {
                    return None;
                }
            }
            Stage::LineFormat(t) => {
                let lookup = |n: &str| labels.get(n).map(str::to_string);
                let rendered = t.render(&Context {
                    label: &lookup,
                    line: &line,
                    ts: entry.ts,
                });
                match rendered {
                    Ok(l) => line = l,
                    Err(e) => labels.set_error(TEMPLATE_ERROR, e.to_string()),
                }
            }
            Stage::LabelFormat(formats) => {
                let before = labels.clone();
                let lookup = |n: &str| before.get(n).map(str::to_string);
                for f in formats {
                    match f {
                        LabelFormat::Rename { dst, src } => {
                            let v = before.get(src).unwrap_or_default().to_string();
                            labels.remove(src);
                            labels.set(dst, v);
                        }
                        LabelFormat::Template { dst, template } => {
                            let v = template.render(&Context {
                                label: &lookup,
                                line: &line,
                                ts: entry.ts,
                            });
                            match v {
                                Ok(v) => labels.set(dst, v),
                                Err(e) => labels.set_error(TEMPLATE_ERROR, e.to_string()),
                            }
                        }
                    }
                }
            }
            Stage::Drop(sels) => {
                labels
                    .pairs
                    .retain(|l| !sels.iter().any(|s| sel_matches(s, l)));
                labels.stream_len = labels.stream_len.min(labels.pairs.len());
            }
            Stage::Keep(sels) => {
                labels
                    .pairs
                    .retain(|l| sels.iter().any(|s| sel_matches(s, l)));
                labels.stream_len = labels.stream_len.min(labels.pairs.len());
            }
            Stage::Decolorize => line = decolorize(&line),
        }
    }
    Some((line, labels))
}

fn sel_matches(s: &LabelSel, l: &Label) -> bool {
    match s {
        LabelSel::Name(n) => *n == l.name,
        LabelSel::Matcher(m) => m.name == l.name && m.is_match(&l.value),
    }
}

fn matcher_on(m: &Matcher, labels: &LabelSet) -> bool {
    m.is_match(labels.get(&m.name).unwrap_or(""))
}

/// Evaluates a label filter, possibly marking a conversion error.
fn label_filter(f: &LabelFilter, labels: &mut LabelSet) -> bool {
    match f {
        LabelFilter::And(a, b) => label_filter(a, labels) && label_filter(b, labels),
        LabelFilter::Or(a, b) => label_filter(a, labels) || label_filter(b, labels),
        LabelFilter::Matcher(m) => matcher_on(m, labels),
        LabelFilter::Compare {
            name,
            op,
            kind,
            value,
        } => {
            if labels.has_error() {
                // Loki keeps erroring entries visible to later `__error__` filters.
                return true;
            }
            let Some(raw) = labels.get(name) else {
                return false;
            };
            match convert(raw, *kind) {
                Some(v) => op.apply(v, *value),
                None => {
                    let details = format!("cannot convert {raw:?} of label {name}");
                    labels.set_error("LabelFilterErr", details);
                    true
                }
            }
        }
    }
}

fn convert(raw: &str, kind: NumKind) -> Option<f64> {
    match kind {
        NumKind::Number => raw.trim().parse().ok(),
        NumKind::Duration => parse_duration(raw.trim()).map(|d| d.as_secs_f64()),
        NumKind::Bytes => parse_bytes(raw),
    }
}

/// The sample value `unwrap` extracts, after its post filters; `None` drops
/// the entry. A value that does not convert marks `SampleExtractionErr`.
pub fn unwrap_value(u: &Unwrap, labels: &mut LabelSet) -> Option<f64> {
    let raw = labels.get(&u.label).unwrap_or("").to_string();
    let v = match u.conv {
        UnwrapConv::Number => convert(&raw, NumKind::Number),
        UnwrapConv::Duration => convert(&raw, NumKind::Duration),
        UnwrapConv::Bytes => convert(&raw, NumKind::Bytes),
    };
    let v = match v {
        Some(v) => v,
        None => {
            labels.set_error(
                "SampleExtractionErr",
                format!("cannot convert {raw:?} of label {} to a number", u.label),
            );
            0.0
        }
    };
    for f in &u.post_filters {
        if !label_filter(f, labels) {
            return None;
        }
    }
    labels.remove(&u.label);
    Some(v)
}

fn json_stage(line: &str, params: &[(String, Vec<JsonStep>)], labels: &mut LabelSet) {
    let doc: serde_json::Value = match serde_json::from_str(line) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            labels.set_error("JSONParserErr", "line is not a JSON object".into());
            return;
        }
        Err(e) => {
            labels.set_error("JSONParserErr", e.to_string());
            return;
        }
    };
    if params.is_empty() {
        flatten_json("", &doc, labels);
        return;
    }
    for (label, path) in params {
        let mut cur = Some(&doc);
        for step in path {
            cur = match (step, cur) {
                (JsonStep::Key(k), Some(serde_json::Value::Object(m))) => m.get(k),
                (JsonStep::Index(i), Some(serde_json::Value::Array(a))) => a.get(*i),
                _ => None,
            };
        }
        let v = match cur {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        labels.add_parsed(label, v, true);
    }
}

fn flatten_json(prefix: &str, v: &serde_json::Value, labels: &mut LabelSet) {
    let serde_json::Value::Object(m) = v else {
        return;
    };
    for (k, v) in m {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}_{k}")
        };
        match v {
            serde_json::Value::Object(_) => flatten_json(&name, v, labels),
            // Arrays are skipped, as Loki's json parser does.
            serde_json::Value::Array(_) => {}
            serde_json::Value::String(s) => labels.add_parsed(&name, s.clone(), false),
            serde_json::Value::Null => {}
            other => labels.add_parsed(&name, other.to_string(), false),
        }
    }
}

/// How a line's fields were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    Json,
    Logfmt,
}

/// One field of a line: its label name, value, and for JSON the keys
/// leading to it.
#[derive(Debug, Clone, PartialEq)]
pub struct LineField {
    pub name: String,
    pub value: String,
    pub json_path: Vec<String>,
}

/// The fields of a line as Loki's field detection reads them: a JSON
/// object (nested objects flattened with `_`, arrays and nulls skipped),
/// or else logfmt pairs with a value; `None` when it is neither.
pub fn line_fields(line: &str) -> Option<(LineFormat, Vec<LineField>)> {
    if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str::<serde_json::Value>(line) {
        let mut out = Vec::new();
        json_fields(&mut Vec::new(), &v, &mut out);
        return Some((LineFormat::Json, out));
    }
    let (pairs, _) = logfmt_pairs(line);
    let fields: Vec<LineField> = pairs
        .into_iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, value)| LineField {
            name: sanitize(&k),
            value,
            json_path: Vec::new(),
        })
        .collect();
    (!fields.is_empty()).then_some((LineFormat::Logfmt, fields))
}

fn json_fields(path: &mut Vec<String>, v: &serde_json::Value, out: &mut Vec<LineField>) {
    let serde_json::Value::Object(m) = v else {
        return;
    };
    for (k, v) in m {
        path.push(k.clone());
        let value = match v {
            serde_json::Value::Object(_) => {
                json_fields(path, v, out);
                None
            }
            serde_json::Value::Array(_) | serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        if let Some(value) = value {
            out.push(LineField {
                name: sanitize(&path.join("_")),
                value,
                json_path: path.clone(),
            });
        }
        path.pop();
    }
}

/// Splits a logfmt line into pairs, and the error at the first malformed
/// pair (the pairs before it are kept).
pub fn logfmt_pairs(line: &str) -> (Vec<(String, String)>, Option<String>) {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            if b[i] == b'"' {
                return (out, Some(format!("unexpected '\"' at position {i}")));
            }
            i += 1;
        }
        let key = line[ks..i].to_string();
        if i >= b.len() || b[i] != b'=' {
            out.push((key, String::new()));
            continue;
        }
        i += 1;
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            let mut closed = false;
            while i < b.len() {
                let ch = line[i..].chars().next().unwrap_or('\0');
                if ch == '\\' && i + 1 < b.len() {
                    let n = line[i + 1..].chars().next().unwrap_or('\0');
                    v.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        o => o,
                    });
                    i += 1 + n.len_utf8();
                    continue;
                }
                if ch == '"' {
                    closed = true;
                    i += 1;
                    break;
                }
                v.push(ch);
                i += ch.len_utf8();
            }
            if !closed {
                return (out, Some(format!("unterminated quoted value of {key}")));
            }
            out.push((key, v));
        } else {
            let vs = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push((key, line[vs..i].to_string()));
        }
    }
    (out, None)
}

fn logfmt_stage(
    line: &str,
    strict: bool,
    keep_empty: bool,
    params: &[(String, String)],
    labels: &mut LabelSet,
) {
    let (pairs, err) = logfmt_pairs(line);
    if let Some(e) = &err
        && strict
    {
        labels.set_error("LogfmtParserErr", e.clone());
        return;
    }
    if params.is_empty() {
        for (k, v) in pairs {
            labels.add_parsed(&k, v, keep_empty);
        }
    } else {
        for (label, key) in params {
            if let Some((_, v)) = pairs.iter().rev().find(|(k, _)| k == key) {
                labels.add_parsed(label, v.clone(), keep_empty);
            }
        }
    }
    if let Some(e) = err {
        labels.set_error("LogfmtParserErr", e);
    }
}

fn unpack_stage(line: &mut String, labels: &mut LabelSet) {
    let doc: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(line) {
        Ok(m) => m,
        Err(e) => {
            labels.set_error("JSONParserErr", e.to_string());
            return;
        }
    };
    let mut entry = None;
    for (k, v) in doc {
        if let serde_json::Value::String(s) = v {
            if k == "_entry" {
                entry = Some(s);
            } else {
                labels.add_parsed(&k, s, false);
            }
        }
    }
    if let Some(e) = entry {
        *line = e;
    }
}

/// Matches a pattern against a line: literals in order, captures take the
/// text between them (the last one the rest of the line).
pub fn match_pattern<'p, 'l>(p: &'p Pattern, line: &'l str) -> Option<Vec<(&'p str, &'l str)>> {
    let mut out = Vec::new();
    let mut rest = line;
    let mut pending: Option<&Option<String>> = None;
    for part in &p.parts {
        match part {
            PatternPart::Literal(lit) => match pending.take() {
                Some(cap) => {
                    let at = rest.find(lit.as_str())?;
                    if let Some(n) = cap {
                        out.push((n.as_str(), &rest[..at]));
                    }
                    rest = &rest[at + lit.len()..];
                }
                None => rest = rest.strip_prefix(lit.as_str())?,
            },
            PatternPart::Capture(c) => pending = Some(c),
        }
    }
    if let Some(Some(n)) = pending {
        out.push((n.as_str(), rest));
    }
    Some(out)
}

/// Removes ANSI color escape sequences.
fn decolorize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Whether every leading line filter is the whole pipeline, so a limit can
/// be pushed to storage.
pub fn only_line_filters(stages: &[Stage]) -> bool {
    stages.iter().all(|s| matches!(s, Stage::LineFilter(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{Expr, LogExpr};
    use crate::parser::parse;

    fn run(q: &str, line: &str) -> Option<(String, Labels)> {
        let Ok(Expr::Log(LogExpr { pipeline, .. })) = parse(q) else {
            panic!("{q}")
        };
        let stream = Labels::from_pairs([("app", "api"), ("level", "info")]);
        let e = LogEntry {
            ts: 1_000_000_000,
            line: line.into(),
            metadata: Labels::from_pairs([("trace_id", "t1")]),
        };
        process(&pipeline, &stream, &e).map(|(l, s)| (l, s.into_labels()))
    }

    fn get(l: &Labels, n: &str) -> String {
        l.get(n).unwrap_or("").to_string()
    }

    #[test]
    fn json_flattens_and_extracts() {
        let (_, l) = run(
            r#"{app="api"} | json"#,
            r#"{"level":"error","req":{"path":"/x","ms":12.5},"tags":[1],"ok":true,"n":null}"#,
        )
        .unwrap();
        assert_eq!(get(&l, "level_extracted"), "error");
        assert_eq!(get(&l, "level"), "info");
        assert_eq!(get(&l, "req_path"), "/x");
        assert_eq!(get(&l, "req_ms"), "12.5");
        assert_eq!(get(&l, "ok"), "true");
        assert_eq!(get(&l, "trace_id"), "t1");
        assert!(l.get("tags").is_none());
        let (_, l) = run(
            r#"{app="api"} | json p="req.path", first="a[0]""#,
            r#"{"req":{"path":"/y"},"a":["z"]}"#,
        )
        .unwrap();
        assert_eq!((get(&l, "p"), get(&l, "first")), ("/y".into(), "z".into()));
        let (_, l) = run(r#"{app="api"} | json"#, "not json").unwrap();
        assert_eq!(get(&l, "__error__"), "JSONParserErr");
        assert!(run(r#"{app="api"} | json | __error__="""#, "not json").is_none());
    }

    #[test]
    fn logfmt_regexp_pattern_and_filters() {
        let line = r#"method=GET path="/api/users" status=503 took=250ms size=2KB"#;
        let (_, l) = run(r#"{app="api"} | logfmt"#, line).unwrap();
        assert_eq!(get(&l, "path"), "/api/users");
        assert!(
            run(
                r#"{app="api"} | logfmt | status >= 500 and took > 200ms and size > 1KB"#,
                line
            )
            .is_some()
        );
        assert!(
            run(
                r#"{app="api"} | logfmt | status < 500 or method="POST""#,
                line
            )
            .is_none()
        );
        assert!(run(r#"{app="api"} | logfmt | status == 503"#, line).is_some());
        let (_, l) = run(r#"{app="api"} | logfmt | method > 1"#, line).unwrap();
        assert_eq!(get(&l, "__error__"), "LabelFilterErr");
        let (_, l) = run(r#"{app="api"} | regexp "took=(?P<ms>[0-9]+)ms""#, line).unwrap();
        assert_eq!(get(&l, "ms"), "250");
        let (_, l) = run(
            r#"{app="api"} | pattern "method=<m> path=<_> status=<s> <_>""#,
            line,
        )
        .unwrap();
        assert_eq!((get(&l, "m"), get(&l, "s")), ("GET".into(), "503".into()));
        let (out, l) = run(
            r#"{app="api"} | logfmt | line_format "{{.method}} {{.path}}" | label_format code=status, svc="{{.app}}-x" | drop took, size | keep code, svc, method"#,
            line,
        )
        .unwrap();
        assert_eq!(out, "GET /api/users");
        assert_eq!(
            l,
            Labels::from_pairs([("code", "503"), ("method", "GET"), ("svc", "api-x")])
        );
        assert!(
            run(
                r#"{app="api"} |= "GET" | logfmt | line_format "{{.path}}" |= "users""#,
                line
            )
            .is_some()
        );
        assert!(
            run(
                r#"{app="api"} | logfmt | line_format "{{.path}}" |= "GET""#,
                line
            )
            .is_none()
        );
    }

    #[test]
    fn unpack_and_decolorize() {
        let (line, l) = run(
            r#"{app="api"} | unpack"#,
            r#"{"container":"c1","_entry":"raw line"}"#,
        )
        .unwrap();
        assert_eq!(line, "raw line");
        assert_eq!(get(&l, "container"), "c1");
        let (line, _) = run(r#"{app="api"} | decolorize"#, "\u{1b}[31mred\u{1b}[0m text").unwrap();
        assert_eq!(line, "red text");
    }
}
