//! Lines into tokens and templates back into pattern text, as Loki's
//! pattern ingester does it: the line's format, guessed from a stream's
//! first line, picks a tokenizer (plain text split at punctuation and
//! spaces, logfmt keys and values, or the message field of a JSON line).

use std::sync::LazyLock;

use regex::Regex;

/// The placeholder of a token that varies.
pub const PARAM: &str = "<_>";
/// Longer lines are not clustered.
pub const MAX_LINE_BYTES: usize = 3000;
/// Past this many tokens the rest of a plain line is one token.
const MAX_PLAIN_TOKENS: usize = 127;
/// JSON fields holding the message, the first present is clustered.
const JSON_MESSAGE_FIELDS: [&str; 6] = ["log", "message", "msg", "msg_", "_msg", "content"];
/// logfmt keys whose values always vary (times, trace ids).
fn is_variable_field(key: &str) -> bool {
    key == "ts"
        || key == "t"
        || key == "traceID"
        || key.eq_ignore_ascii_case("time")
        || key.eq_ignore_ascii_case("timestamp")
}

/// How a stream's lines are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Logfmt,
    Json,
}

static LOGFMT_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(\w+?=([^"]\S*?|".+?") )*?(\w+?=([^"]\S*?|".+?"))+$"#).expect("valid regex")
});

impl Format {
    /// The format of a stream, from its first line (as Loki decides it).
    pub fn detect(line: &str) -> Format {
        if line.starts_with('{') && line.ends_with('}') {
            Format::Json
        } else if line.len() <= MAX_LINE_BYTES && LOGFMT_LINE.is_match(line) {
            Format::Logfmt
        } else {
            Format::Plain
        }
    }
}

/// A line's tokens and what printing them back needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    pub tokens: Vec<String>,
    /// Plain text: the token index each space follows (-1: before the first).
    pub spaces_after: Vec<i32>,
}

/// `line` split by `format`'s tokenizer; `None` when the line is not
/// clustered (too long, not valid logfmt, JSON without a message field).
pub fn tokenize(format: Format, line: &str) -> Option<Tokens> {
    if line.len() > MAX_LINE_BYTES {
        return None;
    }
    match format {
        Format::Plain => Some(plain(line)),
        Format::Logfmt => logfmt(line),
        Format::Json => json(line),
    }
}

/// Characters that end a token and are a token of their own (Unicode
/// punctuation as Go's `unicode.IsPunct` for ASCII, the common blocks
/// beyond it, and `=`), except those that continue a token.
fn is_punct(c: char) -> bool {
    if c.is_ascii() {
        return c == '=' || (c.is_ascii_punctuation() && !"$+<>^`|~".contains(c));
    }
    matches!(
        c,
        '\u{a1}' | '\u{a7}' | '\u{ab}' | '\u{b6}' | '\u{b7}' | '\u{bb}' | '\u{bf}'
    ) || ('\u{2010}'..='\u{2027}').contains(&c)
        || ('\u{2030}'..='\u{205e}').contains(&c)
        || ('\u{3001}'..='\u{3003}').contains(&c)
        || ('\u{3008}'..='\u{3011}').contains(&c)
}

fn plain(line: &str) -> Tokens {
    let mut tokens: Vec<String> = Vec::new();
    let mut spaces_after = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in line.char_indices() {
        if tokens.len() >= MAX_PLAIN_TOKENS {
            let from = start.unwrap_or(i);
            tokens.push(line[from..].to_string());
            return Tokens {
                tokens,
                spaces_after,
            };
        }
        if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/') {
            start.get_or_insert(i);
        } else if c == ' ' {
            if let Some(s) = start.take() {
                tokens.push(line[s..i].to_string());
            }
            spaces_after.push(tokens.len() as i32 - 1);
        } else if is_punct(c) {
            if let Some(s) = start.take() {
                tokens.push(line[s..i].to_string());
            }
            tokens.push(c.to_string());
        } else {
            // Symbols, tabs and control characters stay inside tokens.
            start.get_or_insert(i);
        }
    }
    if let Some(s) = start {
        tokens.push(line[s..].to_string());
    }
    Tokens {
        tokens,
        spaces_after,
    }
}

fn logfmt(line: &str) -> Option<Tokens> {
    let (pairs, error) = strata_logql::logfmt_pairs(line);
    if error.is_some() {
        return None;
    }
    let mut tokens = Vec::with_capacity(pairs.len() * 2);
    for (k, v) in pairs {
        let v = if is_variable_field(&k) {
            PARAM.to_string()
        } else {
            v
        };
        tokens.push(k);
        tokens.push(v);
    }
    Some(Tokens {
        tokens,
        spaces_after: Vec::new(),
    })
}

fn json(line: &str) -> Option<Tokens> {
    let doc: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).ok()?;
    let message = JSON_MESSAGE_FIELDS
        .iter()
        .find_map(|f| doc.get(*f).and_then(|v| v.as_str()))?;
    if message.len() > MAX_LINE_BYTES {
        return None;
    }
    Some(plain(message))
}

/// The pattern text of a template: the tokens printed back in the
/// stream's format, each run of adjacent placeholders as one.
pub fn render(format: Format, t: &Tokens) -> String {
    let text = match format {
        Format::Plain => join_plain(t),
        Format::Logfmt => join_logfmt(&t.tokens),
        Format::Json => format!("{PARAM}{}{PARAM}", join_plain(t)),
    };
    let doubled = format!("{PARAM}{PARAM}");
    let mut out = text;
    while out.contains(&doubled) {
        out = out.replace(&doubled, PARAM);
    }
    out
}

fn join_plain(t: &Tokens) -> String {
    let mut out = String::new();
    let mut spaces = t.spaces_after.iter().peekable();
    while spaces.next_if(|s| **s < 0).is_some() {
        out.push(' ');
    }
    for (i, token) in t.tokens.iter().enumerate() {
        out.push_str(token);
        while spaces.next_if(|s| **s == i as i32).is_some() {
            out.push(' ');
        }
    }
    out
}

fn join_logfmt(tokens: &[String]) -> String {
    let mut out = String::new();
    for (i, pair) in tokens.chunks(2).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&pair[0]);
        out.push('=');
        let value = pair.get(1).map(String::as_str).unwrap_or("");
        let quote = value != PARAM
            && value
                .chars()
                .any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
        if quote {
            out.push('"');
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        } else {
            out.push_str(value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(t: &Tokens) -> Vec<&str> {
        t.tokens.iter().map(String::as_str).collect()
    }

    #[test]
    fn plain_lines_split_at_spaces_and_punctuation_as_loki_does() {
        let t = plain("key1=value1 key2=value2");
        assert_eq!(words(&t), ["key1", "=", "value1", "key2", "=", "value2"]);
        assert_eq!(render(Format::Plain, &t), "key1=value1 key2=value2");
        assert_eq!(words(&plain("key1:value1")), ["key1:value1"]);
        let t = plain(r#"{"key1":"value1"}"#);
        assert_eq!(
            words(&t),
            ["{", "\"", "key1", "\"", ":", "\"", "value1", "\"", "}"]
        );
        assert_eq!(render(Format::Plain, &t), r#"{"key1":"value1"}"#);
        // Symbols stay in tokens; spaces print back as they were.
        let t = plain("a+b  c|d (x)");
        assert_eq!(words(&t), ["a+b", "c|d", "(", "x", ")"]);
        assert_eq!(render(Format::Plain, &t), "a+b  c|d (x)");
        assert_eq!(render(Format::Plain, &plain(" lead")), " lead");
    }

    #[test]
    fn formats_are_detected_from_a_line() {
        assert_eq!(Format::detect(r#"{"msg":"hi"}"#), Format::Json);
        assert_eq!(
            Format::detect(r#"level=info msg="hello world" took=5ms"#),
            Format::Logfmt
        );
        assert_eq!(Format::detect("GET /index.html 200"), Format::Plain);
    }

    #[test]
    fn logfmt_values_are_tokens_and_times_always_vary() {
        let t = tokenize(
            Format::Logfmt,
            r#"ts=2024-01-01T00:00:00Z level=info msg="a b""#,
        )
        .expect("logfmt");
        assert_eq!(words(&t), ["ts", PARAM, "level", "info", "msg", "a b"]);
        assert_eq!(render(Format::Logfmt, &t), r#"ts=<_> level=info msg="a b""#);
        assert!(tokenize(Format::Logfmt, r#"a="unterminated"#).is_none());
    }

    #[test]
    fn json_lines_cluster_their_message_field() {
        let t = tokenize(
            Format::Json,
            r#"{"level":"info","msg":"successfully discovered 15 agent IP addresses"}"#,
        )
        .expect("json");
        assert_eq!(
            render(Format::Json, &t),
            "<_>successfully discovered 15 agent IP addresses<_>"
        );
        assert!(tokenize(Format::Json, r#"{"level":"info"}"#).is_none());
    }

    #[test]
    fn adjacent_placeholders_print_as_one() {
        let t = Tokens {
            tokens: vec!["a".into(), PARAM.into(), PARAM.into(), "b".into()],
            spaces_after: vec![],
        };
        assert_eq!(render(Format::Plain, &t), "a<_>b");
    }
}
