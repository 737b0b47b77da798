//! The pieces of LogQL's text syntax that more than the query language
//! needs: positioned errors worded like Loki's, string literals (`"..."`
//! with escapes, `` `...` `` raw), and the label text of a pushed log
//! stream (`{app="api", env="prod"}`), which Loki's distributor reads with
//! its query parser. The LogQL lexer uses the same string scanner, so a
//! stream's labels and a query's selector read a literal alike.

use std::fmt;

use crate::{Label, Labels};

/// Text that does not parse, with where (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parse error at line {}, col {}: {}",
            self.line, self.col, self.message
        )
    }
}

impl std::error::Error for SyntaxError {}

/// The error `msg` at byte offset `pos` of `src`.
pub fn error_at(src: &str, pos: usize, msg: &str) -> SyntaxError {
    let before = src.get(..pos.min(src.len())).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |n| before[n + 1..].chars().count())
        + 1;
    SyntaxError {
        line,
        col,
        message: msg.to_string(),
    }
}

/// Reads the string literal starting at byte `start` of `src` (a `"` or a
/// backtick): its value and the offset just past it. In `"..."`, `\n`,
/// `\t`, `\r`, `\"`, `` \` `` and `\\` are escapes and any other backslash
/// stays (so `"\d+"` is the regex `\d+`); `` `...` `` is raw.
pub fn scan_string(src: &str, start: usize) -> Result<(String, usize), SyntaxError> {
    let rest = src.get(start..).unwrap_or("");
    if let Some(raw) = rest.strip_prefix('`') {
        let Some(end) = raw.find('`') else {
            return Err(error_at(src, start, "unterminated raw string"));
        };
        return Ok((raw[..end].to_string(), start + end + 2));
    }
    let Some(body) = rest.strip_prefix('"') else {
        return Err(error_at(src, start, "expected a string"));
    };
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, ch)) = chars.next() {
        match ch {
            '"' => return Ok((out, start + 1 + i + 1)),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, c @ ('"' | '\\' | '`'))) => out.push(c),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(error_at(src, start, "unterminated string"))
}

/// Parses the labels of a pushed stream, as Loki's distributor does: a
/// selector of `name="value"` pairs (names `[a-zA-Z_][a-zA-Z0-9_]*`, `#`
/// comments and a trailing comma allowed), at least one pair, not every
/// value empty, no name twice.
pub fn parse_stream_labels(src: &str) -> Result<Labels, SyntaxError> {
    let mut p = LabelText { src, pos: 0 };
    p.expect('{')?;
    let mut labels = Vec::new();
    loop {
        p.skip_space();
        if p.eat('}') {
            break;
        }
        let name_at = p.pos;
        let name = p.name()?;
        p.skip_space();
        let op_at = p.pos;
        let op: String = p
            .rest()
            .chars()
            .take_while(|c| matches!(c, '=' | '!' | '~'))
            .collect();
        if op != "=" {
            return Err(if op.is_empty() {
                p.unexpected("=")
            } else {
                error_at(
                    src,
                    op_at,
                    &format!("stream labels must use =, not {op} for {name:?}"),
                )
            });
        }
        p.pos += 1;
        p.skip_space();
        if !p.rest().starts_with(['"', '`']) {
            return Err(p.unexpected("a string"));
        }
        let (value, end) = scan_string(src, p.pos)?;
        p.pos = end;
        labels.push((name_at, Label::new(name, value)));
        p.skip_space();
        if !p.eat(',') && !p.rest().starts_with('}') {
            return Err(p.unexpected("\",\" or \"}\""));
        }
    }
    p.skip_space();
    if !p.rest().is_empty() {
        return Err(p.unexpected("end of labels"));
    }
    if labels.is_empty() {
        return Err(error_at(
            src,
            p.pos,
            "queries require at least one label matcher in the stream selector",
        ));
    }
    if labels.iter().all(|(_, l)| l.value.is_empty()) {
        return Err(error_at(
            src,
            p.pos,
            "queries require at least one stream matcher that does not match the empty string",
        ));
    }
    let labels = Labels::new(labels.into_iter().map(|(_, l)| l).collect());
    if let Some(d) = labels.first_duplicate() {
        return Err(error_at(src, 0, &format!("duplicate label name {d:?}")));
    }
    Ok(labels)
}

/// A cursor over a stream's label text.
struct LabelText<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> LabelText<'a> {
    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    /// Skips whitespace and `#` comments (to the end of the line).
    fn skip_space(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if !trimmed.starts_with('#') {
                return;
            }
            self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), SyntaxError> {
        self.skip_space();
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("{c:?}")))
        }
    }

    fn name(&mut self) -> Result<String, SyntaxError> {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return Err(self.unexpected("a label name"));
        }
        let name = rest[..len].to_string();
        self.pos += len;
        Ok(name)
    }

    fn unexpected(&self, wanted: &str) -> SyntaxError {
        let found = match self.rest().chars().next() {
            Some(c) => format!("{c:?}"),
            None => "end of input".to_string(),
        };
        error_at(
            self.src,
            self.pos,
            &format!("unexpected {found}, expected {wanted}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_labels_as_loki_reads_them() {
        let l = parse_stream_labels("{job=\"x\", app=`api`,}").unwrap();
        assert_eq!(l, Labels::from_pairs([("app", "api"), ("job", "x")]));
        let l = parse_stream_labels("  { a = \"q\\\"\\n\\d\" # note\n , b=\"\" }  ").unwrap();
        assert_eq!(l, Labels::from_pairs([("a", "q\"\n\\d"), ("b", "")]));
        for bad in [
            "{app=~\"x\"}",
            "{app!=\"x\"}",
            "{app=\"x\", app=\"y\"}",
            "app=\"x\"",
            "{}",
            "{a=\"\"}",
            "{app=api}",
            "{app=\"x\"} junk",
            "{app=\"x\"",
            "{app=\"x",
            "{1app=\"x\"}",
            "{app=\"x\" b=\"y\"}",
            "",
        ] {
            assert!(parse_stream_labels(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse_stream_labels("{app=\"x\",\n  job=~\"y\"}").unwrap_err();
        assert_eq!((e.line, e.col), (2, 6), "{e}");
        assert!(e.message.contains("must use ="), "{e}");
    }

    #[test]
    fn label_text_of_any_size_is_answered_in_one_pass() {
        let many = format!(
            "{{{}}}",
            (0..100_000)
                .map(|i| format!("l{i}=\"v\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(parse_stream_labels(&many).map(|l| l.len()), Ok(100_000));
        let big = format!("{{a=\"{}\"}}", "x".repeat(1 << 20));
        let l = parse_stream_labels(&big).expect("one big value");
        assert_eq!(l.get("a").map(str::len), Some(1 << 20));
        for hostile in [
            format!("{{a=\"{}", "\\".repeat(1 << 19)),
            "{".repeat(100_000),
            "#".repeat(1 << 20),
            format!("{{{}", "a=\"\",".repeat(100_000)),
        ] {
            assert!(parse_stream_labels(&hostile).is_err());
        }
    }

    #[test]
    fn string_literals_and_positions() {
        assert_eq!(scan_string(r#"x "a\tb" y"#, 2).unwrap(), ("a\tb".into(), 8));
        assert_eq!(scan_string("`a\\d`", 0).unwrap(), ("a\\d".into(), 5));
        assert!(scan_string("\"abc", 0).is_err());
        assert!(scan_string("\"abc\\", 0).is_err());
        assert!(scan_string("`abc", 0).is_err());
        // Multi-byte characters: columns count characters, offsets bytes.
        let (s, end) = scan_string("\"ü\"+", 0).unwrap();
        assert_eq!((s.as_str(), end), ("ü", 4));
        assert_eq!(error_at("ab\nüc", 5, "m").col, 2);
    }
}
