//! Log lines split into a template and its variables, the way CLP and
//! Loki's pattern detection see them: a variable is a run of ASCII letters
//! and digits that holds a digit (numbers, addresses, ids, versions), the
//! template is the line with each variable replaced by [`VAR`]. Lines of one
//! service share a few templates, so a block stores each template once (a
//! Parquet dictionary) and the variables in columns of their own, where
//! like values (status codes, latencies, the octets of addresses) sit next
//! to each other and compress far better than inside whole lines.
//!
//! A timestamp in the line (`2026-12-07T08:00:01.123Z`, with `T` or a space,
//! `.` or `,` before 0 to 9 fraction digits, an optional `Z`, standing alone
//! between non-alphanumeric characters) is most often the entry's own time
//! at the line's precision: the template then holds [`TIME`] and a format
//! character, and the line's time is the entry's, truncated; when it is not,
//! one variable holds the difference (a sign character, then the number of
//! the line's units).
//!
//! The split is lossless for every string: a line that already contains
//! [`VAR`] or [`TIME`] is kept whole as the one variable of the template
//! `VAR`.

use std::ops::Range;

/// The template's stand-in for one variable (DC1, a control character
/// that text logs do not carry).
pub const VAR: char = '\u{11}';
const VAR_BYTE: u8 = 0x11;

/// The template's stand-in for a timestamp; the character after it says
/// how it is written (`TimeFormat`).
pub const TIME: char = '\u{12}';
const TIME_BYTE: u8 = 0x12;

/// A line's variables are at most this many; the rest of a longer line's
/// variables stay in its template, so one line cannot widen a block's
/// variable columns without bound.
pub const MAX_VARS: usize = 255;

/// Splits `line` into `template` (cleared first) and `vars`, the byte
/// ranges of its variables in order (cleared first).
/// in order (cleared first). `ts` is the entry's time (ns); a timestamp
/// written in the line is stored as its difference to it, and the
/// variable ranges of such differences index `deltas` (cleared first),
/// as `line.len() + i..line.len() + i + len`.
pub fn split(
    line: &str,
    ts: i64,
    template: &mut String,
    vars: &mut Vec<Range<usize>>,
    deltas: &mut String,
) {
    template.clear();
    vars.clear();
    deltas.clear();
    let bytes = line.as_bytes();
    if bytes.iter().any(|&b| b == VAR_BYTE || b == TIME_BYTE) {
        template.push(VAR);
        vars.push(0..line.len());
        return;
    }
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() && vars.len() < MAX_VARS {
        if !bytes[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        if let Some((end, format, line_ns)) = TimeFormat::parse(bytes, start)
            && bytes.get(end).is_none_or(|b| !b.is_ascii_alphanumeric())
            && let Some(delta) = format.delta(line_ns, ts)
        {
            template.push_str(&line[copied..start]);
            template.push(TIME);
            template.push(format.with_delta(delta != 0).code());
            if delta != 0 {
                let from = deltas.len();
                deltas.push(if delta < 0 { BEFORE } else { AFTER });
                deltas.push_str(&delta.unsigned_abs().to_string());
                vars.push(line.len() + from..line.len() + deltas.len());
            }
            copied = end;
            i = end;
            continue;
        }
        let mut digit = false;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            digit |= bytes[i].is_ascii_digit();
            i += 1;
        }
        if digit {
            // Token bounds are ASCII, so these are char boundaries.
            template.push_str(&line[copied..start]);
            template.push(VAR);
            vars.push(start..i);
            copied = i;
        }
    }
    template.push_str(&line[copied..]);
}

/// The text of variable `range` from `split`: in the line, or a time
/// difference in `deltas`.
pub fn var<'a>(line: &'a str, deltas: &'a str, range: &Range<usize>) -> &'a str {
    // A variable of the line starts inside it (a line without any is empty
    // of variables); differences are numbered past its end.
    if range.start >= line.len() {
        deltas
            .get(range.start - line.len()..range.end - line.len())
            .unwrap_or_default()
    } else {
        line.get(range.clone()).unwrap_or_default()
    }
}

/// A stored template and its variables do not make a line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoinError {
    #[error("log line template holds more variables than were stored")]
    VarsMissing,
    #[error("log line template holds fewer variables than were stored")]
    VarsLeft,
    #[error("log line template holds a malformed timestamp")]
    BadTime,
}

/// A template read once, to put many lines of it back together (rows of a
/// stream mostly repeat the previous row's template).
#[derive(Debug, Default)]
pub struct Template<'t> {
    parts: Vec<Part<'t>>,
    text: &'t str,
}

#[derive(Debug)]
enum Part<'t> {
    Text(&'t str),
    Var,
    Time(TimeFormat),
}

impl<'t> Template<'t> {
    /// Reads `template` in place of what was read before.
    pub fn parse(&mut self, template: &'t str) -> Result<(), JoinError> {
        self.parts.clear();
        self.text = template;
        let mut rest = template;
        while let Some(at) = memchr::memchr2(VAR_BYTE, TIME_BYTE, rest.as_bytes()) {
            if at > 0 {
                self.parts.push(Part::Text(&rest[..at]));
            }
            let stand_in = rest.as_bytes()[at];
            rest = &rest[at + 1..];
            if stand_in == VAR_BYTE {
                self.parts.push(Part::Var);
                continue;
            }
            let mut chars = rest.chars();
            let format = chars
                .next()
                .and_then(TimeFormat::from_code)
                .ok_or(JoinError::BadTime)?;
            rest = chars.as_str();
            self.parts.push(Part::Time(format));
        }
        if !rest.is_empty() {
            self.parts.push(Part::Text(rest));
        }
        Ok(())
    }

    /// The template last read.
    pub fn text(&self) -> &'t str {
        self.text
    }

    /// Appends the line with `vars` in its places to `out`; `ts` is the
    /// entry's time (ns).
    pub fn join<'v>(
        &self,
        ts: i64,
        mut vars: impl Iterator<Item = &'v str>,
        out: &mut impl std::fmt::Write,
    ) -> Result<(), JoinError> {
        for part in &self.parts {
            match part {
                Part::Text(t) => {
                    let _ = out.write_str(t);
                }
                Part::Var => {
                    let _ = out.write_str(vars.next().ok_or(JoinError::VarsMissing)?);
                }
                Part::Time(format) => {
                    let delta = if format.has_delta {
                        parse_delta(vars.next().ok_or(JoinError::VarsMissing)?)?
                    } else {
                        0
                    };
                    format.render(ts, delta, out)?;
                }
            }
        }
        if vars.next().is_some() {
            return Err(JoinError::VarsLeft);
        }
        Ok(())
    }
}

/// A stored time difference: a sign character, then digits.
fn parse_delta(v: &str) -> Result<i64, JoinError> {
    let sign_len = v.chars().next().map_or(0, char::len_utf8);
    let (sign, digits) = v.split_at_checked(sign_len).ok_or(JoinError::BadTime)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(JoinError::BadTime);
    }
    let n: i64 = digits.parse().map_err(|_| JoinError::BadTime)?;
    match sign.chars().next() {
        Some(AFTER) => Ok(n),
        Some(BEFORE) => n.checked_neg().ok_or(JoinError::BadTime),
        _ => Err(JoinError::BadTime),
    }
}

/// How a timestamp is written in a line: `YYYY-MM-DD`, `T` or a space,
/// `HH:MM:SS`, then `.` or `,` and `digits` fraction digits (none when
/// `fraction` is `None`), then `Z` when `zulu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TimeFormat {
    space: bool,
    fraction: Option<u8>,
    digits: u8,
    zulu: bool,
    has_delta: bool,
}

/// The signs of a time difference: private-use code points, so that a
/// filter's text of letters cannot match a stored difference (its other
/// characters are digits).
const AFTER: char = '\u{E100}';
const BEFORE: char = '\u{E101}';

/// Format characters are private-use code points, so they never match a
/// line filter's ASCII text in a template.
const FORMAT_BASE: u32 = 0xE000;

impl TimeFormat {
    fn code(self) -> char {
        let fraction = match self.fraction {
            None => 0,
            Some(b'.') => 1,
            Some(_) => 2,
        };
        let n = ((((u32::from(self.space) * 3 + fraction) * 10 + u32::from(self.digits)) * 2
            + u32::from(self.zulu))
            * 2)
            + u32::from(self.has_delta);
        char::from_u32(FORMAT_BASE + n).unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    fn from_code(c: char) -> Option<Self> {
        let n = u32::from(c).checked_sub(FORMAT_BASE)?;
        if n >= 2 * 3 * 10 * 2 * 2 {
            return None;
        }
        let has_delta = n % 2 == 1;
        let zulu = (n / 2) % 2 == 1;
        let digits = ((n / 4) % 10) as u8;
        let fraction = match (n / 40) % 3 {
            0 => None,
            1 => Some(b'.'),
            _ => Some(b','),
        };
        let space = n / 120 == 1;
        if (fraction.is_none()) != (digits == 0) {
            return None;
        }
        Some(Self {
            space,
            fraction,
            digits,
            zulu,
            has_delta,
        })
    }

    fn with_delta(self, has_delta: bool) -> Self {
        Self { has_delta, ..self }
    }

    /// Nanoseconds per unit of the last digit written.
    fn unit(self) -> i64 {
        10i64.pow(9 - u32::from(self.digits))
    }

    /// The difference of the line's time to the entry's, truncated to the
    /// line's unit, in that unit.
    fn delta(self, line_ns: i64, entry_ns: i64) -> Option<i64> {
        let unit = self.unit();
        line_ns
            .div_euclid(unit)
            .checked_sub(entry_ns.div_euclid(unit))
    }

    /// A timestamp written at `bytes[start..]`: its end, format and time.
    /// Only times that write back byte for byte are taken.
    fn parse(bytes: &[u8], start: usize) -> Option<(usize, Self, i64)> {
        let b = bytes.get(start..start + 19)?;
        let num = |r: Range<usize>| -> Option<i64> {
            b[r].iter().try_fold(0i64, |n, &d| {
                d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
            })
        };
        if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let space = match b[10] {
            b'T' => false,
            b' ' => true,
            _ => return None,
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut end = start + 19;
        let (mut fraction, mut digits, mut nanos) = (None, 0u8, 0i64);
        if let Some(&sep @ (b'.' | b',')) = bytes.get(end)
            && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
        {
            fraction = Some(sep);
            end += 1;
            while digits < 9 && bytes.get(end).is_some_and(u8::is_ascii_digit) {
                nanos = nanos * 10 + i64::from(bytes[end] - b'0');
                digits += 1;
                end += 1;
            }
            nanos *= 10i64.pow(9 - u32::from(digits));
        }
        let zulu = bytes.get(end) == Some(&b'Z');
        if zulu {
            end += 1;
        }
        if !(1970..=2200).contains(&year) || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let days = days_from_civil(year, month, day)?;
        let ns = ((days * 86_400 + hour * 3600 + minute * 60 + second) * 1_000_000_000) + nanos;
        let format = Self {
            space,
            fraction,
            digits,
            zulu,
            has_delta: false,
        };
        // Writing it back must give the same bytes (no 30 February).
        let (back, n) = format.text(ns).ok()?;
        (back[..n] == bytes[start..end]).then_some((end, format, ns))
    }

    /// Writes the time `delta` units after the entry's (`entry_ns`,
    /// truncated to the unit).
    fn render(
        self,
        entry_ns: i64,
        delta: i64,
        out: &mut impl std::fmt::Write,
    ) -> Result<(), JoinError> {
        let unit = self.unit();
        let ns = entry_ns
            .div_euclid(unit)
            .checked_add(delta)
            .and_then(|u| u.checked_mul(unit))
            .ok_or(JoinError::BadTime)?;
        let (buf, n) = self.text(ns)?;
        let text = std::str::from_utf8(&buf[..n]).map_err(|_| JoinError::BadTime)?;
        let _ = out.write_str(text);
        Ok(())
    }

    /// The time `ns` written in this format (ASCII, in a buffer on the
    /// stack: no allocation per timestamp) and its length.
    fn text(self, ns: i64) -> Result<([u8; 32], usize), JoinError> {
        let unit = self.unit();
        let secs = ns.div_euclid(1_000_000_000);
        let nanos = ns.rem_euclid(1_000_000_000);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        if !(0..=9999).contains(&year) {
            return Err(JoinError::BadTime);
        }
        // Digits by hand: `write!` with widths costs more than the rest of
        // a line's join.
        let mut buf = [0u8; 32];
        let mut n = 0;
        let mut put = |value: i64, width: u32, sep: Option<u8>| {
            // Right to left, dividing by the constant 10 (a multiplication).
            let mut v = value;
            let width = width as usize;
            for slot in buf[n..n + width].iter_mut().rev() {
                *slot = b'0' + (v % 10) as u8;
                v /= 10;
            }
            n += width;
            if let Some(sep) = sep {
                buf[n] = sep;
                n += 1;
            }
        };
        put(year, 4, Some(b'-'));
        put(month, 2, Some(b'-'));
        put(day, 2, Some(if self.space { b' ' } else { b'T' }));
        put(sod / 3600, 2, Some(b':'));
        put(sod / 60 % 60, 2, Some(b':'));
        put(sod % 60, 2, self.fraction);
        if self.fraction.is_some() {
            put(nanos / unit, u32::from(self.digits), None);
        }
        if self.zulu {
            buf[n] = b'Z';
            n += 1;
        }
        Ok((buf, n))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date; `None` when the
/// month or day does not exist.
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The date of a day since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line of `template` with `vars` in its places, appended to `out`.
    fn join<'v>(
        template: &str,
        ts: i64,
        vars: impl Iterator<Item = &'v str>,
        out: &mut String,
    ) -> Result<(), JoinError> {
        let mut parsed = Template::default();
        parsed.parse(template)?;
        parsed.join(ts, vars, out)
    }

    /// 2026-12-07T08:00:01.123456789Z.
    const TS: i64 = 1_796_630_401_123_456_789;

    fn round_trip(line: &str) -> (String, Vec<String>) {
        round_trip_at(line, TS)
    }

    fn round_trip_at(line: &str, ts: i64) -> (String, Vec<String>) {
        let (mut t, mut v, mut d) = (String::new(), Vec::new(), String::new());
        split(line, ts, &mut t, &mut v, &mut d);
        let v: Vec<&str> = v.iter().map(|r| var(line, &d, r)).collect();
        let mut back = String::new();
        join(&t, ts, v.iter().copied(), &mut back).expect("join");
        assert_eq!(back, line, "template {t:?} vars {v:?}");
        (t, v.into_iter().map(str::to_string).collect())
    }

    #[test]
    fn numbers_and_ids_are_variables() {
        let (t, v) = round_trip(
            r#"{"time":"2026-12-07 08:00:01,123+00:00","remote_addr":"10.2.3.4","status":200,"ua":"curl/8.5.0","id":"4f3ab2"}"#,
        );
        assert_eq!(
            v,
            [
                "00", "00", "10", "2", "3", "4", "200", "8", "5", "0", "4f3ab2"
            ]
        );
        assert!(t.starts_with("{\"time\":\"\u{12}"), "{t:?}");
        assert!(t.contains("\"ua\":\"curl/\u{11}.\u{11}.\u{11}\""), "{t:?}");
        let (t, v) = round_trip("level=info msg=\"cache lookup\" hit=true");
        assert!(v.is_empty());
        assert_eq!(t, "level=info msg=\"cache lookup\" hit=true");
    }

    #[test]
    fn every_string_round_trips() {
        for line in [
            "",
            "7",
            "a1",
            "ünïcödé 42 ✓ x9y",
            "tab\there\n\tat Foo.java:12",
            "\u{11}",
            "holds \u{11} and 12",
            "trailing 1",
            "1 leading",
            "äöü1äöü",
            "\u{12}",
            "\u{e000}\u{12}1",
        ] {
            round_trip(line);
        }
        // Pseudo-random bytes as UTF-8 (lossy), many lengths.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 128) as u8
                })
                .collect();
            round_trip(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn a_line_with_the_stand_in_is_one_variable() {
        let (t, v) = round_trip("x\u{11}1");
        assert_eq!(t, "\u{11}");
        assert_eq!(v, ["x\u{11}1"]);
        let (t, v) = round_trip("2026-12-07T08:00:01Z \u{12}\u{e000}");
        assert_eq!(t, "\u{11}");
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn variables_are_bounded() {
        let line = (0..1000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let (t, v) = round_trip(&line);
        assert_eq!(v.len(), MAX_VARS);
        assert!(t.ends_with(" 999"));
    }

    #[test]
    fn mismatched_counts_are_errors() {
        let mut out = String::new();
        assert_eq!(
            join("a\u{11}b\u{11}", 0, ["1"].into_iter(), &mut out),
            Err(JoinError::VarsMissing)
        );
        assert_eq!(
            join("a\u{11}", 0, ["1", "2", "3"].into_iter(), &mut out),
            Err(JoinError::VarsLeft)
        );
        for bad in ["\u{12}", "\u{12}x", "\u{12}\u{e0f0}", "\u{12}\u{e004}"] {
            assert!(
                join(bad, 0, ["\u{e100}1"].into_iter(), &mut out).is_err(),
                "{bad:?}"
            );
        }
        // A difference that leaves the calendar is an error, not a panic.
        let far = TimeFormat::parse(b"2026-12-07T08:00:01Z", 0)
            .expect("time")
            .1;
        let t = format!("\u{12}{}", far.with_delta(true).code());
        for d in [
            "\u{e100}9223372036854775807",
            "\u{e101}9223372036854775807",
            "\u{e100}999999999999",
            "p1",
            "\u{e100}",
            "\u{e100}-1",
        ] {
            assert!(join(&t, TS, [d].into_iter(), &mut out).is_err(), "{d}");
        }
        // The earliest entry time still writes a (1677) date.
        out.clear();
        join(&t, i64::MIN, ["\u{e100}1"].into_iter(), &mut out).expect("join");
        assert!(out.starts_with("1677-09-21T00:12:4"), "{out}");
    }

    #[test]
    fn timestamps_are_the_entry_time() {
        // Written at the entry's time, to the line's precision: nothing stored.
        for line in [
            "ts=2026-12-07T08:00:01.123456Z level=info",
            "2026-12-07T08:00:01.123Z  INFO 1 --- [main]",
            "{\"time\":\"2026-12-07T08:00:01.123+00:00\"}",
            "2026-12-07 08:00:01,123 WARN x",
            "at 2026-12-07T08:00:01Z",
            "2026-12-07T08:00:01.123456789Z",
            "2026-12-07T08:00:01.1Z",
        ] {
            let (t, v) = round_trip(line);
            assert!(v.iter().all(|v| !v.contains("2026")), "{line}: {v:?}");
            assert!(t.contains(TIME), "{line}: {t:?}");
            assert!(v.len() <= 2, "{line}: {v:?}");
        }
        // Another time: one difference, in the line's unit.
        let (_, v) = round_trip("ts=2026-12-07T08:00:00.999Z");
        assert_eq!(v, ["\u{e101}124"]);
        let (_, v) = round_trip("ts=2026-12-07T09:00:01Z");
        assert_eq!(v, ["\u{e100}3600"]);
        let (_, v) = round_trip_at("ts=1970-01-01T00:00:00Z", -1);
        assert_eq!(v, ["\u{e100}1"]);
        // Not timestamps: kept as variables, still lossless.
        for line in [
            "2026-02-30T08:00:01Z",
            "2026-12-07T24:00:01Z",
            "2026-12-07T08:00:01Zulu",
            "x2026-12-07T08:00:01Z",
            "2026-12-07T08:00:01.1234567890Z",
            "1969-12-31T23:59:59Z",
            "2026-12-07X08:00:01",
            "2026-12-07T08:00",
            "9999-12-31T23:59:59Z",
        ] {
            let (t, _) = round_trip(line);
            assert!(!t.contains(TIME), "{line}: {t:?}");
        }
        // Far from the entry's time, both ways.
        round_trip_at("2026-12-07T08:00:01Z", 0);
        round_trip_at("2026-12-07T08:00:01.5Z", i64::MAX);
        round_trip_at("1970-01-01T00:00:00.000000001Z", i64::MIN);
        // Every calendar day of four years writes back.
        for day in 0..(4 * 366) {
            let ns = 1_767_225_600_000_000_000 + day * 86_400_000_000_000 + 3_723_000_000_000;
            let mut line = String::new();
            TimeFormat::parse(b"2026-12-07T08:00:01Z", 0)
                .expect("time")
                .1
                .render(ns, 0, &mut line)
                .expect("render");
            let (t, v) = round_trip_at(&line, ns);
            assert!(v.is_empty() && t.starts_with(TIME), "{line}: {t:?} {v:?}");
        }
    }
}
