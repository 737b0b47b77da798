//! String literals whose byte escapes do not form UTF-8.
//!
//! PromQL unquotes string literals as Go does: `\xHH` and `\OOO` are raw
//! bytes, so `"\xff"` is the one-byte string 0xFF, which is not UTF-8 and
//! not a valid label name. `promql-parser` decodes such an escape as the
//! character U+00FF instead. This scan over the query text finds the
//! literals Go would turn into invalid UTF-8 and returns them as the parser
//! decodes them, so the engine can refuse them where Prometheus does.

use std::collections::HashSet;
use std::iter::Peekable;
use std::str::Chars;

/// Literals of `query` (as `promql-parser` decodes them) whose Go decoding
/// is not valid UTF-8.
pub(crate) fn invalid_utf8_literals(query: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // A comment runs to the end of the line; raw strings have no escapes.
            '#' => skip_past(&mut chars, '\n'),
            '`' => skip_past(&mut chars, '`'),
            '"' | '\'' => {
                let (go_bytes, decoded) = unquote(&mut chars, c);
                if std::str::from_utf8(&go_bytes).is_err() {
                    out.insert(decoded);
                }
            }
            _ => {}
        }
    }
    out
}

fn skip_past(chars: &mut Peekable<Chars<'_>>, end: char) {
    for c in chars.by_ref() {
        if c == end {
            break;
        }
    }
}

/// Reads a literal up to its closing `quote`: its bytes as Go decodes
/// them, and its text as `promql-parser` does (a byte escape is the
/// character of that code point).
fn unquote(chars: &mut Peekable<Chars<'_>>, quote: char) -> (Vec<u8>, String) {
    let mut go_bytes: Vec<u8> = Vec::new();
    let mut decoded = String::new();
    let mut buf = [0u8; 4];
    while let Some(c) = chars.next() {
        if c == quote {
            break;
        }
        let ch = if c == '\\' {
            let Some(e) = chars.next() else { break };
            let byte = match e {
                'x' => digits(chars, 2, 16),
                '0'..='7' => digits(chars, 2, 8).map(|rest| ((e as u32 - '0' as u32) << 6) | rest),
                _ => None,
            };
            if let Some(b) = byte.and_then(|b| u8::try_from(b).ok()) {
                go_bytes.push(b);
                decoded.push(char::from(b));
                continue;
            }
            match e {
                'a' => '\u{7}',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'v' => '\u{b}',
                'u' => digits(chars, 4, 16)
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}'),
                'U' => digits(chars, 8, 16)
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}'),
                other => other,
            }
        } else {
            c
        };
        go_bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        decoded.push(ch);
    }
    (go_bytes, decoded)
}

/// The value of the next `n` digits in `radix`, if there are that many.
fn digits(chars: &mut Peekable<Chars<'_>>, n: usize, radix: u32) -> Option<u32> {
    let mut v = 0u32;
    for _ in 0..n {
        let d = chars.peek()?.to_digit(radix)?;
        chars.next();
        v = v * radix + d;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_literals_that_go_decodes_to_invalid_utf8() {
        let got = invalid_utf8_literals(
            r#"label_replace(m{a="\xff"}, "\377x", "ok", 'src', "\xc3\xbf") # "\xfe"
               + on() `\xfd` "\u00ff" 'é'"#,
        );
        let want: HashSet<String> = ["\u{ff}", "\u{ff}x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // "\xc3\xbf" is UTF-8 for U+00FF in Go; comments and raw strings are skipped.
        assert_eq!(got, want);
    }
}
